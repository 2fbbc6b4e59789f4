"""Garbage collection of the run store: keep the last N runs, keep pinned ones, drop the rest
with the store objects only they used. Pure planning (``plan_gc``) apart from the deletion, so a
dry run shows exactly what a real one does."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from typing import Any

from appliance.runs.record import RunRecord, RunStore
from appliance.store import ContentStore

PIN_FILE = "pinned"


def objects_of(r: RunRecord) -> set[str]:
    out = {o.sha256 for o in r.outputs} | {i.sha256 for i in r.inputs}
    if r.recipe.get("code_sha256"):
        out.add(r.recipe["code_sha256"])
    return out


@dataclass
class GcPlan:
    keep: list[str]
    remove: list[str]
    objects: list[str]  # store objects only removed runs referenced
    bytes_freed: int = 0
    dry_run: bool = True
    reasons: dict[str, str] = field(default_factory=dict)  # kept run -> why

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "keep": self.keep, "remove": self.remove,
                "objects": len(self.objects), "bytes_freed": self.bytes_freed, "reasons": self.reasons}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def report(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"  remove {r}" for r in self.remove]
        lines.append(f"{verb} {len(self.remove)} run(s) and {len(self.objects)} store object(s) "
                     f"({self.bytes_freed} bytes); kept {len(self.keep)}")
        return "\n".join(lines)


def is_pinned(runs: RunStore, run_id: str) -> bool:
    return (runs.run_dir(run_id) / PIN_FILE).is_file()


def pin(runs: RunStore, run_id: str, pinned: bool = True) -> str:
    run_id = runs.load(run_id).run_id
    f = runs.run_dir(run_id) / PIN_FILE
    if pinned:
        f.write_text("pinned\n")
    else:
        f.unlink(missing_ok=True)
    return run_id


def plan_gc(records: list[RunRecord], pinned: set[str], keep_last: int, store: ContentStore,
            running_ok: bool = False) -> GcPlan:
    order = sorted(records, key=lambda r: (r.started_at, r.run_id), reverse=True)
    reasons: dict[str, str] = {}
    for i, r in enumerate(order):
        if r.run_id in pinned:
            reasons[r.run_id] = "pinned"
        elif i < keep_last:
            reasons[r.run_id] = f"among the last {keep_last}"
        elif r.state == "running" and not running_ok:
            reasons[r.run_id] = "still running"
    # a kept replay keeps its original (the verdict refers to it)
    by_id = {r.run_id: r for r in records}
    for rid in list(reasons):
        orig = by_id[rid].replay_of
        if orig in by_id and orig not in reasons:
            reasons[orig] = f"original of kept replay {rid}"
    keep = [r for r in order if r.run_id in reasons]
    remove = [r for r in order if r.run_id not in reasons]
    kept_objects = set().union(*(objects_of(r) for r in keep)) if keep else set()
    gone = sorted(set().union(*(objects_of(r) for r in remove)) - kept_objects) if remove else []
    gone = [o for o in gone if store.has(o)]
    freed = sum(store.path_of(o).stat().st_size for o in gone)
    return GcPlan([r.run_id for r in keep], [r.run_id for r in remove], gone, freed, True, reasons)


def collect(runs: RunStore, store: ContentStore, keep_last: int, dry_run: bool = True) -> GcPlan:
    records = runs.list()
    pinned = {r.run_id for r in records if is_pinned(runs, r.run_id)}
    plan = plan_gc(records, pinned, keep_last, store)
    plan.dry_run = dry_run
    if dry_run:
        return plan
    removed = set(plan.remove)
    for f in runs.cache.iterdir():  # cache entries first: never a key pointing at a missing run
        try:
            if json.loads(f.read_text()).get("run_id") in removed:
                f.unlink()
        except (OSError, ValueError):
            continue
    for rid in plan.remove:
        shutil.rmtree(runs.run_dir(rid), ignore_errors=True)
    for o in plan.objects:
        store.path_of(o).unlink(missing_ok=True)
    return plan
