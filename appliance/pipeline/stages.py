"""Stages over a whole archive (or a selection): what the CLI and the web interface both call.

Each ``run_*`` function takes plain paths and options and returns a ``RunSummary``; the per-item
function is module-level so worker processes can run it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from appliance.exitcodes import Exit
from appliance.pipeline import products as prod
from appliance.pipeline import stagerun
from appliance.pipeline.errors import BadInput
from appliance.pipeline.runner import Outcome, RunSummary, item_id, load_state, run_stage


def list_observations(root: Path) -> list[str]:
    """Observation folders: every leaf directory under ``root`` (relative, sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise BadInput(root, "archive root is not a directory")
    out = []
    for dirpath, dirnames, _files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if not dirnames and Path(dirpath) != root:
            out.append(Path(dirpath).relative_to(root).as_posix())
    return sorted(out)


def products_one(root: str, work: str, folder: str, label: str | None = None) -> Outcome:
    obs = prod.classify_folder(Path(root), folder, Path(work))
    xml = Path(work) / "products" / f"{item_id(folder)}.xml"
    prod.write_xml(xml, [obs], label or str(root))
    return Outcome(obs.status, "; ".join(obs.reasons), {"xml": str(xml.relative_to(work)),
                                                        "files": {f.name: f.type for f in obs.files}})


def item_function(stage: str, root: str, work: str, options: dict) -> Callable[[str], Outcome]:
    """The per-item function of ``stage`` over ``root``/``work`` with the stage's ``options`` (the
    job options a container gets too: ``label``; ``detectors``, ``truth_file``), picklable for the
    worker processes. For ``products`` this process is warmed first: the workers forked from it
    start with astropy and the schema loaded (else each spends about 1.5 s of CPU on them)."""
    if stage == "products":
        prod.warm()
        return partial(products_one, root, work, label=options.get("label"))
    if stage == "image":
        return partial(image_one, root, work, tuple(options["detectors"]), options.get("truth_file"))
    raise ValueError(f"no per-item function for stage {stage!r}")


def _work_files(work: Path, sub: str, iid: str) -> dict[str, tuple[Path, str]]:
    """``work/SUB/ITEM/*`` (or ``work/SUB/ITEM.xml``) as run outputs with their policies."""
    out = {}
    one = work / sub / f"{iid}.xml"
    if one.is_file():
        out[f"work/{sub}/{iid}.xml"] = (one, stagerun.policy(one.name))
    d = work / sub / iid
    if d.is_dir():
        for p in sorted(d.iterdir()):
            if p.is_file():
                out[f"work/{sub}/{iid}/{p.name}"] = (p, stagerun.policy(p.name))
    return out


def run_products(root: Path, work: Path, folders: list[str] | None = None, parallel: int = 2,
                 resume: bool = True, progress: bool = True, home: Path | None = None,
                 replay_of: str | None = None, label: str | None = None, runtime: str = "host",
                 replay_image: tuple[str, dict[str, str]] | None = None) -> tuple[RunSummary, Path]:
    """Classify every observation folder, then write the archive's ``products.xml`` (validated).

    The execution is a run with a record in the run store (``stagerun``): inputs the files of the
    folders processed, outputs their XML parts, rebuilt images, ``products.xml`` and the verdicts.
    ``runtime``: ``host`` (this process) or a container runtime that runs the items in the locked
    ``stages`` image (``appliance.pipeline.container``)."""
    root, work = Path(root).resolve(), Path(work).resolve()
    folders = list_observations(root) if folders is None else folders
    label = label or str(root)
    work.mkdir(parents=True, exist_ok=True)
    run = stagerun.StageRun("products", root, work, ["appliance", "pipeline", "products", "--root", "ROOT",
                                                     "--work", "WORK"], {}, parallel, home, replay_of, label,
                            runtime=runtime, job={"label": label}, replay_image=replay_image)

    def plan(todo: list[str]) -> None:
        run.params["folders"] = list(todo)
        for f in todo:
            run.add_tree("root", root, f)
        run.begin()

    def body(run: stagerun.StageRun) -> tuple[RunSummary, Path]:
        fn = item_function("products", str(root), str(work), run.job)  # warms this process for products.xml too
        summary = run_stage("products", folders, fn, work,
                            parallel=parallel, resume=resume, progress=progress, on_plan=plan,
                            executor=run.executor())
        out, assembled = _assemble_products(root, work, folders, summary, label)
        outputs: dict[str, tuple[Path, str]] = {}
        for f in summary.ran:
            outputs.update(_work_files(work, "products", item_id(f)))
            outputs.update(_work_files(work, "rebuilt", item_id(f)))
        # products.xml holds every observation of the work area; when some came from earlier runs
        # a replay of this run's items alone cannot rebuild it, so it is recorded, not compared
        outputs["work/products.xml"] = (out, "sha256" if set(assembled) <= summary.ran else "ignore")
        summary.run_id = run.finish(outputs, run.verdicts(summary.items, summary.ran),
                                    0 if summary.ok else Exit.ANALYSIS, stagerun.first_failure(summary)).run_id
        return summary, out

    return stagerun.recorded(run, body)


def _assemble_products(root: Path, work: Path, folders: list[str], summary: RunSummary,
                       label: str) -> tuple[Path, list[str]]:
    # products.xml always describes the whole work area: a run over a subset (one observation
    # re-run from the web page) keeps the other observations' parts from their earlier runs
    states = {st.id: st for st in summary.items}
    everything = list(dict.fromkeys([*list_observations(root), *folders]))
    observations, assembled = [], []
    for oid in everything:
        st = states.get(oid) or load_state(work, "products", oid)
        part = Path(work) / "products" / f"{item_id(oid)}.xml"
        if st is not None and st.status != "failed" and part.exists() and not st.manual:
            # a part written in this run was validated before it was written; the whole document
            # is validated again below
            observations.extend(prod.read_xml(part, check=oid not in summary.ran))
            assembled.append(oid)
    out = Path(work) / "products.xml"
    prod.write_xml(out, observations, label)
    return out, assembled


def status_table(work: Path) -> dict[str, dict[str, dict]]:
    """item -> stage -> its recorded state (from ``<work>/state``)."""
    import json

    out: dict[str, dict[str, dict]] = {}
    base = Path(work) / "state"
    if not base.is_dir():
        return out
    for sdir in sorted(p for p in base.iterdir() if p.is_dir()):
        for f in sorted(sdir.glob("*.json")):
            try:
                st = json.loads(f.read_text())
            except json.JSONDecodeError:
                continue
            out.setdefault(st["id"], {})[sdir.name] = st
    return out


def image_one(root: str, work: str, detectors: tuple[str, ...], truth_file: str | None, folder: str) -> Outcome:
    import json

    from appliance.pipeline.image import image_observation

    iid = item_id(folder)
    xml = Path(work) / "products" / f"{iid}.xml"
    if not xml.exists():
        return Outcome("flagged", "no products record: run the products stage first")
    obs = prod.read_xml(xml)[0]
    if obs.status != "done":
        return Outcome("flagged", f"products flagged: {'; '.join(obs.reasons)}")
    truth = None
    if truth_file:
        truth = json.loads(Path(truth_file).read_text()).get(folder)
    res = image_observation(Path(root), Path(work), obs, Path(work) / "image" / iid, detectors, truth)
    counts = {d: sum(1 for x in res.detections if x.detector == d) for d in detectors}
    return Outcome("done", result={"detections": counts, "catalogs": list(res.catalogs), "matches": res.matches})


def run_image(root: Path, work: Path, detectors: tuple[str, ...] = ("sextractor", "aegean", "emcee"),
              folders: list[str] | None = None, parallel: int = 2, resume: bool = True,
              progress: bool = True, home: Path | None = None, replay_of: str | None = None,
              label: str | None = None, runtime: str = "host",
              replay_image: tuple[str, dict[str, str]] | None = None):  # noqa: ANN201 - (RunSummary, Quality | None)
    """Detect and measure on every observation ``products`` marked done; score against the truth.

    A run with a record (``stagerun``): inputs each processed item's products part, its folder's
    files, its rebuilt images and ``truth.json``; outputs the catalogs, the quality and verdicts.
    ``runtime`` as for ``run_products``."""
    from appliance.pipeline.detect import DETECTORS
    from appliance.pipeline.errors import UsageProblem

    bad = set(detectors) - set(DETECTORS)
    if bad or not detectors:
        raise UsageProblem("--detectors", f"choose from {', '.join(DETECTORS)} (got {', '.join(detectors) or 'none'})")
    root, work = Path(root).resolve(), Path(work).resolve()
    folders = list_observations(root) if folders is None else folders
    work.mkdir(parents=True, exist_ok=True)
    run = stagerun.StageRun("image", root, work, ["appliance", "pipeline", "image", "--root", "ROOT", "--work",
                                                  "WORK", "--detectors", ",".join(detectors)],
                            {"detectors": list(detectors)}, parallel, home, replay_of, label,
                            runtime=runtime, job={"detectors": list(detectors)}, replay_image=replay_image)

    def plan(todo: list[str]) -> None:
        run.params["folders"] = list(todo)
        if (root / "truth.json").exists():
            run.add_input("root/truth.json", root / "truth.json")
        for f in todo:
            part = work / "products" / f"{item_id(f)}.xml"
            if part.is_file():
                run.add_input(f"work/products/{part.name}", part)
            run.add_tree("root", root, f)
            run.add_tree("work/rebuilt", work / "rebuilt", item_id(f))
        run.begin()

    return stagerun.recorded(run, lambda run: _image_body(run, root, work, detectors, folders, parallel,
                                                          resume, progress, plan))


def _image_body(run: stagerun.StageRun, root: Path, work: Path, detectors: tuple[str, ...], folders: list[str],
                parallel: int, resume: bool, progress: bool, plan):  # noqa: ANN001, ANN202
    from appliance.fsutil import atomic_write_json
    from appliance.pipeline.image import Quality

    truth_file = None
    if (root / "truth.json").exists():  # a generated archive: keyed once, read per item
        from appliance.pipeline.synth import load_truth

        truth_file = str(work / "truth-by-folder.json")
        atomic_write_json(truth_file, load_truth(root))
        run.job["truth_file"] = truth_file
    summary = run_stage("image", folders, item_function("image", str(root), str(work), run.job),
                        work, parallel=parallel, resume=resume, progress=progress, on_plan=plan,
                        executor=run.executor())
    outputs: dict[str, tuple[Path, str]] = {}
    for f in summary.ran:
        outputs.update(_work_files(work, "image", item_id(f)))
    quality = None
    if truth_file is not None:
        rows = [m for st in summary.items if st.status == "done" for m in st.result.get("matches", [])
                if m["detector"] in detectors]
        quality = Quality(rows)
        atomic_write_json(work / "image-quality.json", quality.to_json())
        done = {st.id for st in summary.items if st.status == "done"}
        outputs["work/image-quality.json"] = (work / "image-quality.json",
                                              "sha256" if done <= summary.ran else "ignore")
    summary.run_id = run.finish(outputs, run.verdicts(summary.items, summary.ran),
                                0 if summary.ok else Exit.ANALYSIS, stagerun.first_failure(summary)).run_id
    return summary, quality
