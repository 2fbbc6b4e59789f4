"""The ``match`` stage: select observations in our archive's catalog, stage them, fetch them.

1. Search ``/api/catalog/search`` (keyset paged) below ``--prefix`` with the user's selection: a
   cone (``RA,DEC,RADIUS`` in degrees, ICRS), a project, a band and a date range. The catalog
   keeps what the server read from the FITS headers at ingest; the band is the ``INSTRUME``
   keyword (``ALMA Band N``, as the generator writes it).
2. An observation (the folder holding a file) matches when any of its files matches: headers are
   incomplete (a file may lack ``PROJECT`` or ``DATE-OBS``), so every file of a matching folder is
   then listed (a second search on the folder's prefix, no other filter) and fetched.
3. Files only on tape are staged through the WLCG Tape REST API and each one is copied the moment
   it is online (``appliance.staging.bulk``), through the transfer layer, with the catalog's
   adler32 as the expected checksum: a copy whose bytes differ fails.

Each observation folder is an item with a verdict in ``<work>/state/match/``: done (every file
fetched and verified), failed (the error of the first file that failed). A re-run skips folders
already done (resume), manual flags are honoured as in the other stages.

An execution is a run with a run record (``appliance.pipeline.stagerun``): every fetched file is an
input by URL with the sha256 of its bytes, the fetched files and the verdicts are its outputs. Exit
code: 0; 4 when every failed observation failed on a checksum; 9 when any failed on a transfer,
tape or service error. ``appliance replay RUN`` fetches the same observations again and compares.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.exitcodes import Exit
from appliance.fsutil import atomic_write_json
from appliance.pipeline import runner, stagerun
from appliance.pipeline.errors import UsageProblem
from appliance.pipeline.runner import ItemState, RunSummary, item_id
from appliance.staging.catalog import https_base, search
from appliance.transfer.credentials import Credentials


def band_instrument(band: int) -> str:
    """The catalog ``instrument`` value of an ALMA band (the generator's INSTRUME keyword)."""
    return f"ALMA Band {int(band)}"


@dataclass(frozen=True)
class Selection:
    cone: tuple[float, float, float] | None = None
    project: str | None = None
    band: int | None = None
    start: str | None = None
    end: str | None = None

    @staticmethod
    def parse_cone(text: str) -> tuple[float, float, float]:
        parts = text.split(",")
        try:
            ra, dec, radius = (float(p) for p in parts)
        except ValueError:
            raise UsageProblem("--cone", f"expected RA,DEC,RADIUS in degrees, got {text!r}") from None
        if not (-90 <= dec <= 90 and radius > 0):
            raise UsageProblem("--cone", f"expected -90 <= DEC <= 90 and RADIUS > 0, got {text!r}")
        return ra, dec, radius

    def params(self) -> dict[str, str]:
        p: dict[str, str] = {}
        if self.cone:
            p["cone"] = ",".join(repr(v) for v in self.cone)
        if self.project:
            p["project"] = self.project
        if self.band is not None:
            p["instrument"] = band_instrument(self.band)
        if self.start:
            p["start"] = self.start
        if self.end:
            p["end"] = self.end
        return p


@dataclass
class MatchPlan:
    """What a selection found: observation folder (relative to the prefix) -> its catalog items."""

    folders: dict[str, list[dict[str, Any]]]
    matched_files: int

    def to_json(self) -> dict:
        return {"observations": len(self.folders), "matched_files": self.matched_files,
                "files": sum(len(v) for v in self.folders.values()),
                "folders": {k: [i["path"] for i in v] for k, v in sorted(self.folders.items())}}


def plan(url: str, prefix: str, selection: Selection, credentials: Credentials | None = None) -> MatchPlan:
    """Search, then widen every hit to all files of its observation folder."""
    base = "/" + prefix.strip("/")
    hits = search(url, base, selection.params(), credentials)
    rel_folders = sorted({str(Path(h["path"]).parent.relative_to(base)) for h in hits})
    folders: dict[str, list[dict[str, Any]]] = {}
    for rel in rel_folders:
        items = search(url, f"{base}/{rel}", {}, credentials)
        folders[rel] = [i for i in items if str(Path(i["path"]).parent.relative_to(base)) == rel]
    return MatchPlan(folders, len(hits))


def failure_exit(st: ItemState) -> int:
    """The exit code of a failed item: 4 when its copies failed on a checksum only, else 9."""
    return int(st.result.get("exit_code", Exit.REMOTE))


def exit_code(summary: RunSummary) -> int:
    """0 when no item failed; 4 when every failed item failed on a checksum (the bytes on the
    server differ from the catalog's adler32, or there was none to verify with); 9 when any
    failed on a transfer, tape or service error."""
    bad = [st for st in summary.items if st.status == "failed"]
    if not bad:
        return Exit.OK
    return Exit.CHECKSUM if all(failure_exit(st) == Exit.CHECKSUM for st in bad) else Exit.REMOTE


def _is_checksum(r: Any) -> bool:
    return (r.ok and not r.verified) or int(r.exit_code) == Exit.CHECKSUM


def command_line(url: str, prefix: str, selection: Selection) -> list[str]:
    cmd = ["appliance", "pipeline", "match", "--url", url, "--prefix", prefix, "--root", "ROOT", "--work", "WORK"]
    if selection.cone:
        cmd += ["--cone", ",".join(repr(v) for v in selection.cone)]
    for opt, value in (("--project", selection.project), ("--band", selection.band),
                       ("--start", selection.start), ("--end", selection.end)):
        if value is not None:
            cmd += [opt, str(value)]
    return cmd


def run_match(url: str, dest: Path, work: Path, prefix: str = "alma", selection: Selection | None = None,
              credentials: Credentials | None = None, parallel: int = 4, resume: bool = True,
              progress: bool = True, folders: list[str] | None = None, home: Path | None = None,
              replay_of: str | None = None, label: str | None = None) -> tuple[RunSummary, MatchPlan]:
    """Fetch every matching observation into ``dest/<folder>/`` (staging from tape as needed).

    The execution is a run with a record in the run store (``stagerun``): params the URL, prefix,
    selection and the folders fetched; inputs every fetched file by URL with the sha256 of its
    bytes; outputs the fetched files (``root/FOLDER/NAME``, by sha256) and the verdicts; exit code
    ``exit_code(summary)``. ``folders`` restricts the run to those observations of the selection
    (a replay fetches what the original fetched)."""
    sel = selection or Selection()
    dest, work = Path(dest).resolve(), Path(work).resolve()
    params: dict[str, Any] = {"url": url, "prefix": prefix,
                              "selection": {k: (list(v) if k == "cone" and v else v)
                                            for k, v in dataclasses.asdict(sel).items()}}
    run = stagerun.StageRun("match", dest, work, command_line(url, prefix, sel), params, parallel, home,
                            replay_of, label or str(dest))
    return stagerun.recorded(run, lambda run: _match_body(run, url, dest, work, prefix, sel, credentials,
                                                          parallel, resume, progress, folders))


def _match_body(run: stagerun.StageRun, url: str, dest: Path, work: Path, prefix: str, selection: Selection,
                credentials: Credentials | None, parallel: int, resume: bool, progress: bool,
                only: list[str] | None) -> tuple[RunSummary, MatchPlan]:
    from appliance.staging.bulk import StagingCopier
    from appliance.transfer.engine import Copier, CopyJob, CopyOptions

    t0 = time.perf_counter()
    run.begin()  # before the search: a refused search is a failed run too
    creds = credentials or Credentials.discover()
    the_plan = plan(url, prefix, selection, creds)
    if only is not None:
        keep = set(only)
        the_plan.folders = {f: v for f, v in the_plan.folders.items() if f in keep}
    flags = runner.load_flags(work)
    sdir = runner.state_dir(work, "match")
    sdir.mkdir(parents=True, exist_ok=True)
    states: dict[str, ItemState] = {}
    jobs: list[CopyJob] = []
    owner: list[str] = []
    server = https_base(url)
    for folder, items in sorted(the_plan.folders.items()):
        if folder in flags:
            states[folder] = ItemState(folder, "match", "flagged", f"manual: {flags[folder]['note']}", manual=True)
            continue
        old = runner.load_state(work, "match", folder) if resume else None
        if old is not None and old.status == "done" and all((dest / folder / Path(i["path"]).name).is_file()
                                                             for i in items):
            states[folder] = old
            continue
        for i in items:
            jobs.append(CopyJob(server + i["path"], str(dest / folder / Path(i["path"]).name),
                                expected=f"adler32:{i['adler32']}" if i.get("adler32") else None))
            owner.append(folder)
    run.params["folders"] = sorted(dict.fromkeys(owner))
    copier = Copier(creds, CopyOptions(parallel=parallel, progress=progress, checksum="adler32"))
    result = StagingCopier(copier, creds).copy(jobs) if jobs else None
    per: dict[str, list] = {}
    if result is not None:
        for folder, res in zip(owner, result.results, strict=True):
            per.setdefault(folder, []).append(res)
    outputs: dict[str, tuple[Path, str]] = {}
    for folder, results in per.items():
        for r in results:
            if r.ok and r.verified and Path(r.dst).is_file():
                dst = Path(r.dst)
                # the archive's file by URL, with the sha256 of the bytes fetched from it
                run.add_stored(f"archive{urlsplit(r.src).path}", dst, r.src)
                outputs[f"root/{folder}/{dst.name}"] = (dst, "sha256")  # a copy is byte-identical
        bad = [r for r in results if not r.ok or not r.verified]
        if bad:
            r = bad[0]
            reason = f"{r.src}: {r.error or 'copied but not verified (no checksum)'}"
            code = Exit.CHECKSUM if all(_is_checksum(b) for b in bad) else Exit.REMOTE
            st = ItemState(folder, "match", "failed", reason, {"exit_code": int(code)})
        else:
            st = ItemState(folder, "match", "done", "", {
                "files": {Path(r.dst).name: f"{r.checksum_type}:{r.dest_checksum}" for r in results},
                "bytes": sum(r.size for r in results)})
        atomic_write_json(sdir / f"{item_id(folder)}.json", st.to_json())
        states[folder] = st
    summary = RunSummary("match", [states[f] for f in sorted(states)], len(per),
                         round(time.perf_counter() - t0, 3), frozenset(per))
    if result is not None:
        atomic_write_json(work / "match-transfers.json", result.to_json())
    run.inputs.sort(key=lambda e: e.name)
    summary.run_id = run.finish(outputs, run.verdicts(summary.items, summary.ran), exit_code(summary),
                                stagerun.first_failure(summary)).run_id
    return summary, the_plan
