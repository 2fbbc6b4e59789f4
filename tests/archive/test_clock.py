"""Archive time is monotonic across restarts, also when it runs faster than the wall clock."""

from __future__ import annotations

import io
import time

from archive.clock import RealClock, read_mark
from archive.engine import Archive
from tests.archive.conftest import sim_config


def _wait(pred, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_a_killed_clock_never_hands_out_a_time_again(tmp_path):
    state = tmp_path / "clock.json"
    c1 = RealClock(3600, state=state)
    time.sleep(0.1)
    t1 = c1.now()
    assert t1 > time.time() + 300  # 0.1 s at 3600x is 6 archive minutes ahead
    # no save(): as after kill -9; the lease on disk is ahead of everything handed out
    assert read_mark(state) >= t1
    c2 = RealClock(3600, state=state)
    w0 = time.monotonic()
    t2 = c2.now()
    assert t2 >= t1
    c2.save()  # clean shutdown: the exact time, no jump at the next start
    elapsed = time.monotonic() - w0  # now() writes its lease (an fsync): slow on a busy disk
    mark = read_mark(state)
    assert t2 <= mark < t2 + 3600 * (elapsed + 0.1)
    c3 = RealClock(3600, state=state, persist=False)  # a reader: continues, never writes
    assert c3.resumed_from == mark and c3.now() >= mark
    assert read_mark(state) == mark


def test_a_recall_finishes_after_its_request_across_a_restart(tmp_path):
    cfg = sim_config(tmp_path / "lta", clock={"mode": "real", "speed": 3600},
                     migration={"max_age_seconds": 60})
    a = Archive(cfg)
    a.start()
    data = b"x" * 5000
    a.put_stream("/obs/f", io.BytesIO(data), len(data), "t")
    _wait(lambda: a.locality("/obs/f") == "DISK_AND_TAPE")
    assert a.evict_path("/obs/f")
    a.stop()
    rid = a.stage([("/obs/f", None)], "t")  # requested, not yet recalled, then a restart
    created = a.stage_status(rid).created
    a.close()
    b = Archive(cfg)
    try:
        assert b.clock.now() >= created
        b.start()
        _wait(lambda: b.stage_status(rid).completed is not None)
        req = b.stage_status(rid)
        assert req.files[0].state == "COMPLETED"
        assert req.completed >= req.created and req.files[0].finished >= req.created
    finally:
        b.close()
