"""The runner: every item ends with a verdict, a kill loses nothing, manual flags survive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial

from appliance.pipeline.runner import (
    Outcome,
    clear_flag,
    load_flags,
    run_stage,
    set_flag,
    state_dir,
)
from appliance.pipeline.stages import list_observations


def _work(item: str, mark: str = "") -> Outcome:
    if item.startswith("bad"):
        raise ValueError(f"cannot handle {item}")
    if item.startswith("odd"):
        return Outcome("flagged", "odd one")
    return Outcome("done", result={"n": len(item), "mark": mark})


def test_every_item_gets_a_verdict_in_parallel(tmp_path):
    items = ["a", "bad1", "odd/x", "b", "c"]
    s = run_stage("t", items, partial(_work, mark="1"), tmp_path, parallel=2, progress=False)
    st = {i.id: i for i in s.items}
    assert [i.id for i in s.items] == items
    assert st["bad1"].status == "failed" and "ValueError: cannot handle bad1" in st["bad1"].reason
    assert st["odd/x"].status == "flagged" and st["a"].status == "done" and not s.ok
    # re-run: done and flagged are kept, the failed one is tried again
    s2 = run_stage("t", items, partial(_work, mark="2"), tmp_path, parallel=1, progress=False)
    assert s2.processed == 1
    assert {i.id: i.result.get("mark") for i in s2.items}["a"] == "1"


def test_manual_flags_persist_across_reruns(tmp_path):
    set_flag(tmp_path, "b", "side lobes")
    s = run_stage("t", ["a", "b"], _work, tmp_path, parallel=1, progress=False)
    b = s.items[1]
    assert b.status == "flagged" and b.manual and "side lobes" in b.reason
    s = run_stage("t", ["a", "b"], _work, tmp_path, parallel=1, progress=False, resume=False)
    assert s.items[1].status == "flagged" and "b" in load_flags(tmp_path)
    assert clear_flag(tmp_path, "b") and not clear_flag(tmp_path, "b")
    s = run_stage("t", ["a", "b"], _work, tmp_path, parallel=1, progress=False)
    assert s.items[1].status == "done"


def test_resumes_after_sigkill(archive_root, tmp_path):
    """Killed with SIGKILL part-way, a host run is resumed: the re-run does exactly the rest.

    The items take milliseconds each, so the run is frozen (SIGSTOP to its process group) as soon
    as a few verdicts exist and counted frozen, then killed: a test process the machine's load
    delays cannot let the run finish in between. (The container runtime's kill is
    test_container's.)"""
    work = tmp_path / "w"
    cmd = [sys.executable, "-m", "appliance.cli", "pipeline", "products", "--root", str(archive_root),
           "--work", str(work), "--parallel", "1", "--no-progress", "--json", "--runtime", "host"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sdir = state_dir(work, "products")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not sdir.is_dir() or len(list(sdir.glob("*.json"))) < 3):
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGSTOP)
    before = len(list(sdir.glob("*.json")))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list(sdir.glob("*.json"))) == before
    total = len(list_observations(archive_root))
    assert 3 <= before < total
    # a record being written at the kill is a .tmp-* file (never *.json): that item is simply redone
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    import json

    out = json.loads(r.stdout)
    assert out["processed"] == total - before
    assert out["done"] + out["flagged"] == total and out["failed"] == 0
