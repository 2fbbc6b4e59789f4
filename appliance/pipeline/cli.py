"""``appliance pipeline ...``: the radio image pipeline's command line (the functions live beside it)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from appliance.exitcodes import Exit

FLOW = """\
Typical flow (a work area holds state, flags, products.xml, catalogs):
  appliance pipeline generate --out alma/ --observations 300 --seed 1   # synthetic archive + truth.json
  appliance pipeline generate --out alma/ --ingest https://127.0.0.1:8443 --prefix alma
  appliance pipeline match    --url https://127.0.0.1:8443 --prefix alma --root got/ --work work/ \
                              [--cone RA,DEC,RADIUS] [--project P] [--band 6] [--start D] [--end D]
  appliance pipeline products --root alma/ --work work/ [--truth]        # XML + confusion table
  appliance pipeline image    --root alma/ --work work/ [--detectors sextractor,aegean,emcee]
  appliance pipeline flag     --work work/ ITEM --note "side lobes"     # persists across re-runs
  appliance pipeline status   --work work/
Re-running a stage resumes: items already done or flagged are skipped, failed ones are retried.
"""


@dataclass(frozen=True)
class StageOptions:
    """The options every stage takes, typed once at the CLI edge."""

    root: Path
    work: Path
    parallel: int
    resume: bool
    progress: bool
    json: bool

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> StageOptions:
        return cls(Path(a.root), Path(a.work), a.parallel, not a.restart, not a.no_progress, a.json)


def _emit(as_json: bool, obj: object, **extra: object) -> None:
    """One result: with ``--json`` ONE JSON document on stdout (``extra`` results as its keys, e.g.
    ``quality``), else each result's report."""
    if as_json:
        doc = obj.to_json()  # type: ignore[attr-defined]
        doc.update({k: v.to_json() for k, v in extra.items() if v is not None})  # type: ignore[attr-defined]
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        for x in (obj, *extra.values()):
            if x is not None:
                print(x.report())  # type: ignore[attr-defined]


def _generate(a: argparse.Namespace) -> int:
    from appliance.pipeline.synth import generate

    summary = generate(Path(a.out), observations=a.observations, seed=a.seed, size=a.size)
    _emit(a.json, summary)
    if a.ingest:
        from appliance.pipeline.ingest import ingest

        res = ingest(Path(a.out), a.ingest, a.prefix, progress=not a.no_progress)
        print(res.report(), file=sys.stderr)
        return 0 if res.ok else res.exit_code
    return 0


def _match(a: argparse.Namespace) -> int:
    from appliance.pipeline.errors import UsageProblem
    from appliance.pipeline.match import Selection, exit_code, run_match

    o = StageOptions.from_args(a)
    sel = Selection(Selection.parse_cone(a.cone) if a.cone else None, a.project, a.band, a.start, a.end)
    if not a.alma and not a.url:
        raise UsageProblem("--url", "the archive server's URL is required (or --alma)")
    if a.alma:
        from appliance.pipeline.alma import alma_search

        rows = alma_search(sel, archive_url=a.alma_url)
        _emit(o.json, rows)
        return 0
    summary, plan = run_match(a.url, o.root, o.work, a.prefix, sel, parallel=o.parallel,
                              resume=o.resume, progress=o.progress)
    _emit(o.json, summary)
    print(f"match: {len(plan.folders)} observation(s) ({plan.matched_files} file(s) matched) -> {o.root}; "
          f"run record {summary.run_id}", file=sys.stderr)
    return exit_code(summary)


def _products(a: argparse.Namespace) -> int:
    from appliance.pipeline.container import runtime_of
    from appliance.pipeline.stages import run_products

    o = StageOptions.from_args(a)
    summary, xml = run_products(o.root, o.work, parallel=o.parallel, resume=o.resume, progress=o.progress,
                                runtime=runtime_of(a))
    conf = None
    if a.truth:
        from appliance.pipeline.products import confusion, read_xml
        from appliance.pipeline.synth import load_truth

        conf = confusion(read_xml(xml), load_truth(o.root))
    _emit(o.json, summary, confusion=conf)
    print(f"products: {xml}", file=sys.stderr)
    return 0 if summary.ok else Exit.ANALYSIS


def _image(a: argparse.Namespace) -> int:
    from appliance.pipeline.container import runtime_of
    from appliance.pipeline.stages import run_image

    o = StageOptions.from_args(a)
    detectors = tuple(d for d in a.detectors.split(",") if d)
    summary, quality = run_image(o.root, o.work, detectors=detectors, parallel=o.parallel,
                                 resume=o.resume, progress=o.progress, runtime=runtime_of(a))
    _emit(o.json, summary, quality=quality)
    return 0 if summary.ok else Exit.ANALYSIS


def _flag(a: argparse.Namespace) -> int:
    from appliance.pipeline.runner import clear_flag, set_flag

    if a.unflag:
        if not clear_flag(Path(a.work), a.item):
            print(f"{a.item}: was not flagged", file=sys.stderr)
            return Exit.NOT_FOUND
    else:
        set_flag(Path(a.work), a.item, a.note)
    return 0


def _status(a: argparse.Namespace) -> int:
    from appliance.pipeline.runner import load_flags
    from appliance.pipeline.stages import status_table

    table = status_table(Path(a.work))
    if a.json:
        json.dump({"items": table, "flags": load_flags(Path(a.work))}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for item, stages in sorted(table.items()):
            print(item, " ".join(f"{s}={v['status']}" for s, v in sorted(stages.items())))
    return 0


def _stage_parser(sub: argparse._SubParsersAction, name: str, help_: str,
                  contained: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_)
    if contained:
        from appliance.pipeline.container import add_runtime_option

        add_runtime_option(p)
    p.add_argument("--root", required=True, help="archive root (folders of observations)")
    p.add_argument("--work", required=True, help="work area: state, flags, products.xml, catalogs")
    p.add_argument("--parallel", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--restart", action="store_true", help="ignore earlier results (default: resume)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    return p


def register(subparsers: argparse._SubParsersAction) -> None:
    top = subparsers.add_parser("pipeline", help="radio image pipeline (generate, products, image, ...)",
                                description="Radio image pipeline over an ALMA-like archive.", epilog=FLOW)
    sub = top.add_subparsers(dest="pipeline_command", metavar="STAGE")
    sub.required = True

    g = sub.add_parser("generate", help="write a synthetic ALMA-like archive with a truth file")
    g.add_argument("--out", required=True, help="directory to create")
    g.add_argument("--observations", type=int, default=300, help="how many observations (default 300)")
    g.add_argument("--seed", type=int, default=1, help="random seed (default 1): same seed, same archive")
    g.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    g.add_argument("--ingest", metavar="URL", help="then upload every FITS file to this archive server")
    g.add_argument("--prefix", default="alma", help="path prefix on the archive (default alma)")
    g.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    g.add_argument("--json", action="store_true", help="machine-readable summary")
    g.set_defaults(func=_generate)

    m = _stage_parser(sub, "match", "select observations in the archive's catalog, stage and fetch them",
                      contained=False)
    m.add_argument("--url", help="the archive server, https://HOST:PORT (token: $BEARER_TOKEN)")
    m.add_argument("--prefix", default="alma", help="path prefix on the archive (default alma)")
    m.add_argument("--cone", metavar="RA,DEC,RADIUS", help="degrees, ICRS")
    m.add_argument("--project", help="project code, e.g. 2023.1.00123.S")
    m.add_argument("--band", type=int, help="ALMA band number")
    m.add_argument("--start", help="observed on or after (ISO 8601)")
    m.add_argument("--end", help="observed before (ISO 8601)")
    m.add_argument("--alma", action="store_true", help="search ALMA's own archive (astroquery, network) instead")
    m.add_argument("--alma-url", help="ALMA archive mirror for --alma (default: astroquery's)")
    m.set_defaults(func=_match)

    p = _stage_parser(sub, "products", "group files into observations and product types (XML + XSD)")
    p.add_argument("--truth", action="store_true", help="score against ROOT/truth.json: confusion table")
    p.set_defaults(func=_products)

    i = _stage_parser(sub, "image", "detect sources, measure fluxes, cross-match, write catalogs")
    i.add_argument("--detectors", default="sextractor,aegean,emcee",
                   help="comma-separated subset of sextractor,aegean,emcee (default all)")
    i.set_defaults(func=_image)

    f = sub.add_parser("flag", help="flag an item by hand (or --unflag); survives re-runs")
    f.add_argument("--work", required=True)
    f.add_argument("item", help="observation folder relative to the root, as in `status`")
    f.add_argument("--note", default="flagged by hand", help="why")
    f.add_argument("--unflag", action="store_true", help="remove the flag instead")
    f.set_defaults(func=_flag)

    s = sub.add_parser("status", help="every item's verdict per stage")
    s.add_argument("--work", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)

    from appliance.pipeline.web import register as register_serve  # fastapi/uvicorn load in serve

    register_serve(sub)
