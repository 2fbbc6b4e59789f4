"""The pure recall scheduler: batching, order, drives, fairness, copies."""

from __future__ import annotations

from archive.scheduler import CopyLoc, DriveState, QueuedRecall, Read, order_reads, plan_recalls


def q(fid, t, tape, off, bad=(), more=()):
    copies = (CopyLoc(tape, off, 10),) + tuple(CopyLoc(tp, o, 10) for tp, o in more)
    return QueuedRecall(fid, t, copies, frozenset(bad))


def idle(d, mounted=None, head=0):
    return DriveState(d, mounted, head, True)


def test_one_batch_per_tape_in_position_order():
    queue = [q("a", 1, "T1", 300), q("b", 2, "T1", 100), q("c", 3, "T2", 50), q("d", 4, "T1", 200)]
    plan = plan_recalls(queue, [idle("d0"), idle("d1")], 10)
    by_tape = {reads[0].tape: [r.file_id for r in reads] for reads in plan.assignments.values()}
    assert by_tape == {"T1": ["b", "d", "a"], "T2": ["c"]}


def test_bounded_drives_and_fairness_by_age():
    queue = [q("new", 5000, "T1", 0), q("old", 1, "T2", 0), q("mid", 1000, "T3", 0)]
    plan = plan_recalls(queue, [idle("d0")], 100)
    assert [r.file_id for r in plan.assignments["d0"]] == ["old"]
    plan = plan_recalls(queue, [idle("d0"), idle("d1"), idle("d2")], 100, max_drives=2)
    assert len(plan.assignments) == 2 and plan.tapes == {"T2", "T3"}


def test_mounted_tape_keeps_its_drive_no_ping_pong():
    queue = [q("x", 1, "T9", 0), q("y", 5, "T1", 40)]
    plan = plan_recalls(queue, [idle("d0", mounted="T1", head=100), idle("d1")], 10)
    assert [r.file_id for r in plan.assignments["d0"]] == ["y"]  # no remount of d0
    assert [r.file_id for r in plan.assignments["d1"]] == ["x"]
    # a tape mounted in a busy drive is never scheduled on a second drive
    busy = DriveState("d0", "T1", 0, idle=False)
    plan = plan_recalls([q("z", 1, "T1", 0)], [busy, idle("d1")], 10)
    assert plan.assignments == {}


def test_failed_drives_get_nothing():
    plan = plan_recalls([q("a", 1, "T1", 0)], [DriveState("d0", None, 0, True, failed=True)], 0)
    assert plan.assignments == {}


def test_copies_bad_tapes_and_lost():
    # prefer the copy whose tape is mounted
    rec = q("a", 1, "T1", 0, more=[("T2", 0)])
    plan = plan_recalls([rec], [idle("d0", mounted="T2")], 0)
    assert plan.assignments["d0"][0].tape == "T2"
    rec = q("a", 1, "T1", 0, bad=["T1"], more=[("T2", 0)])
    plan = plan_recalls([rec], [idle("d0")], 0)
    assert plan.assignments["d0"][0].tape == "T2"
    rec = q("a", 1, "T1", 0, bad=["T1", "T2"], more=[("T2", 0)])
    assert plan_recalls([rec], [idle("d0")], 0).lost == ["a"]


def test_order_wraps_once_from_head():
    reads = [Read(str(o), "T", o, 1) for o in (10, 50, 30, 70)]
    assert [r.offset for r in order_reads(reads, 40)] == [50, 70, 10, 30]


def test_equally_old_requests_biggest_cartridge_first():
    queue = [q("a", 1, "T1", 0), q("b", 2, "T2", 0), q("c", 3, "T2", 100)]
    plan = plan_recalls(queue, [idle("d0")], 10)  # same age quantum: T2 has more to read
    assert plan.assignments["d0"][0].tape == "T2"
    plan = plan_recalls(queue, [idle("d0")], 10, age_quantum=1.0)  # strict age order
    assert plan.assignments["d0"][0].tape == "T1"
