"""One stage over many items: in parallel, resumable after a kill, every item with a verdict.

Each finished item writes ``<work>/state/<stage>/<item>.json`` atomically (temp file, rename), so a
run killed at any moment loses at most the items in flight; a re-run skips items that ended
``done`` or ``flagged`` and tries ``failed`` ones again. The record is not fsync'd: it is written
after the item's own outputs are (the stage functions write those with fsync), and a record lost
or left empty by a crash of the machine only means that item runs again (a damaged record reads as
"not done"); two fsyncs per item in the parent were a fifth of ``products``' time. Manual flags live in
``<work>/flags.json`` (item -> note): a flagged item is not processed and stays flagged across
re-runs until it is unflagged. Items run in worker processes (the work is numpy/FFT and external
programs; 2 cores here), with a tqdm bar on stderr.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.fsutil import atomic_write_json
from appliance.pipeline.errors import PipelineError

STATUSES = ("done", "flagged", "failed")


@dataclass
class Outcome:
    """What a stage function returns for one item."""

    status: str  # done | flagged (failed comes from an exception)
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class ItemState:
    id: str
    stage: str
    status: str
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    manual: bool = False

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RunSummary:
    stage: str
    items: list[ItemState]
    processed: int  # items worked on in this run (the rest were resumed or manually flagged)
    seconds: float
    ran: frozenset[str] = frozenset()  # which items those were
    run_id: str | None = None  # the run record of this execution (appliance runs show RUN)

    def count(self, status: str) -> int:
        return sum(1 for i in self.items if i.status == status)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    def to_json(self) -> dict:
        return {"ok": self.ok, "stage": self.stage, "run_id": self.run_id, "processed": self.processed,
                "seconds": self.seconds,
                **{s: self.count(s) for s in STATUSES}, "items": [i.to_json() for i in self.items]}

    def report(self) -> str:
        lines = [f"{self.stage}: {len(self.items)} items, {self.count('done')} done, "
                 f"{self.count('flagged')} flagged, {self.count('failed')} failed "
                 f"({self.processed} processed in {self.seconds:.1f} s)"
                 + (f"; run record {self.run_id}" if self.run_id else "")]
        for i in self.items:
            if i.status != "done":
                lines.append(f"  {i.status:<7} {i.id}: {i.reason}")
        return "\n".join(lines)


def item_id(item: str) -> str:
    """A file-name-safe id for an item (an observation folder ``proj/obs`` -> ``proj__obs``)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", item.strip("/").replace("/", "__"))


# -- manual flags ---------------------------------------------------------------------------------

def flags_path(work: Path) -> Path:
    return Path(work) / "flags.json"


def load_flags(work: Path) -> dict[str, dict[str, str]]:
    p = flags_path(work)
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise PipelineError(p, f"not valid JSON: {e}") from e


def set_flag(work: Path, item: str, note: str) -> None:
    flags = load_flags(work)
    flags[item] = {"note": note, "when": datetime.now(UTC).isoformat(timespec="seconds")}
    atomic_write_json(flags_path(work), flags)


def clear_flag(work: Path, item: str) -> bool:
    flags = load_flags(work)
    if item not in flags:
        return False
    del flags[item]
    atomic_write_json(flags_path(work), flags)
    return True


# -- state ----------------------------------------------------------------------------------------

def state_dir(work: Path, stage: str) -> Path:
    return Path(work) / "state" / stage


def load_state(work: Path, stage: str, item: str) -> ItemState | None:
    p = state_dir(work, stage) / f"{item_id(item)}.json"
    try:
        return ItemState(**json.loads(p.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None  # a missing or damaged record means: not done yet


def _call(fn: Callable[[str], Outcome], item: str) -> tuple[str, str, dict, float]:
    t0 = time.perf_counter()
    try:
        o = fn(item)
        return o.status, o.reason, o.result, time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - any error fails this item only; the run goes on
        return "failed", f"{type(e).__name__}: {e}", {}, time.perf_counter() - t0


def write_state(work: Path, stage: str, it: str, res: tuple[str, str, dict, float]) -> ItemState:
    """Record one item's verdict (atomically; not fsync'd, see the module docstring)."""
    st = ItemState(it, stage, res[0], res[1], res[2], round(res[3], 4))
    atomic_write_json(state_dir(work, stage) / f"{item_id(it)}.json", st.to_json(), durable=False)
    return st


def process(todo: list[str], fn: Callable[[str], Outcome], parallel: int,
            on_result: Callable[[str, tuple[str, str, dict, float]], None]) -> None:
    """Run ``fn`` on every item of ``todo``, ``parallel`` at a time in worker processes, and pass
    each result to ``on_result`` (in this process) as it arrives. Used on the host and, for a stage
    run in a container, inside it (``appliance.pipeline.inside``)."""
    if parallel <= 1 or len(todo) <= 1:
        for it in todo:
            on_result(it, _call(fn, it))
        return
    with ProcessPoolExecutor(max_workers=parallel) as pool:
        pending: dict[Future, str] = {}
        queue = iter(todo)
        for it in queue:
            pending[pool.submit(_call, fn, it)] = it
            if len(pending) >= parallel * 4:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                on_result(pending.pop(f), f.result())
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(_call, fn, nxt)] = nxt


# where a stage's items run: on this host (``process``) or elsewhere (a container) that writes each
# item's state and reports each item as it ends; it returns a reason when it ended early (else None)
Executor = Callable[[list[str], Callable[[str], None]], "str | None"]


def run_stage(stage: str, items: Iterable[str], fn: Callable[[str], Outcome], work: Path,
              parallel: int = 2, resume: bool = True, progress: bool = True,
              on_plan: Callable[[list[str]], None] | None = None,
              executor: Executor | None = None) -> RunSummary:
    """Run ``fn`` (picklable) on every item not already done; return every item's verdict.

    ``on_plan`` hears which items will be processed before the first one starts (the run record
    hashes their inputs then). ``executor`` runs the planned items elsewhere (a container): each
    item's verdict is then read back from its state record, and an item it left without one
    failed with the executor's reason."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    items = list(dict.fromkeys(items))
    flags = load_flags(work)
    sdir = state_dir(work, stage)
    sdir.mkdir(parents=True, exist_ok=True)
    states: dict[str, ItemState] = {}
    todo = []
    for it in items:
        if it in flags:
            states[it] = ItemState(it, stage, "flagged", f"manual: {flags[it]['note']}", manual=True)
            continue
        old = load_state(work, stage, it) if resume else None
        if old is not None and old.status in ("done", "flagged"):
            states[it] = old
        else:
            todo.append(it)
    if on_plan is not None:
        on_plan(todo)

    bar = tqdm(total=len(todo), desc=stage, unit="item", disable=not progress or not todo)

    def finish(it: str, res: tuple[str, str, dict, float]) -> None:
        states[it] = write_state(work, stage, it, res)
        bar.update(1)

    if executor is None:
        process(todo, fn, parallel, finish)
    else:
        for it in todo:  # a verdict left from an earlier run must not pass for this run's
            (sdir / f"{item_id(it)}.json").unlink(missing_ok=True)
        why = executor(todo, lambda it: bar.update(1))
        for it in todo:
            st = load_state(work, stage, it)
            states[it] = st if st is not None else write_state(
                work, stage, it, ("failed", f"not processed: {why or 'the executor gave it no verdict'}", {}, 0.0))
    bar.close()
    return RunSummary(stage, [states[i] for i in items], len(todo), round(time.perf_counter() - t0, 3),
                      frozenset(todo))
