"""The archive engine on a simulated clock: ingest, migrate, evict, stage, recall, failures."""

from __future__ import annotations

import io
import os

import pytest

from archive.errors import BadPath, BadRequest, DigestMismatch, NearlineOnly


def put(a, path, data: bytes, **kw):
    return a.put_stream(path, io.BytesIO(data), len(data), "tester", **kw)


def test_ingest_checksums_and_migration_by_age(make_archive):
    a = make_archive()
    e = put(a, "/obs/a.dat", b"hello world")
    assert e.adler32 == "1a0b045d"
    assert a.locality("/obs/a.dat") == "DISK"
    a.run_for(100)
    assert a.locality("/obs/a.dat") == "DISK"  # younger than max_age: not yet
    a.run_for(400)
    assert a.locality("/obs/a.dat") == "DISK_AND_TAPE"
    reps = a.catalog.tape_replicas(e.file_id)
    assert len(reps) == 1 and reps[0].fseq >= 0
    assert a.metrics.mounts == 1


def test_a_file_listed_by_a_scan_after_its_commit_is_not_listed_twice(make_archive):
    """The engine thread may rescan the migration candidates between a PUT's catalog commit and
    the PUT's own insert into the cached list: the file is then in the list already, and is not
    added a second time (it would have gone to tape twice)."""
    a = make_archive()
    put(a, "/obs/first.dat", b"one")
    loop = a.tapeloop
    assert [f.path for f, _ in loop._migration_candidates()] == ["/obs/first.dat"]
    ingested = loop._ingested

    def scan_then_insert(entry, replaced):  # the engine's rescan falls just before the insert
        loop._invalidate_candidates()
        loop._migration_candidates()
        ingested(entry, replaced)

    loop._ingested = scan_then_insert
    put(a, "/obs/second.dat", b"two")
    cached = [f.file_id for f, _ in loop._migration_candidates()]
    assert cached == [f.file_id for f, _ in a.catalog.migration_candidates(a.cfg.tape.copies)]
    assert len(cached) == len(set(cached)) == 2


def test_migration_by_batch_size_is_immediate(make_archive):
    a = make_archive(migration={"batch_files": 3})
    for i in range(3):
        put(a, f"/b/{i}", os.urandom(1000))
    a.run_for(61 + 10)  # one mount + tiny writes
    assert all(a.locality(f"/b/{i}") == "DISK_AND_TAPE" for i in range(3))


def test_two_copies_on_distinct_tapes(make_archive):
    a = make_archive(tape={"copies": 2})
    e = put(a, "/x", b"x" * 5000)
    a.run_for(1000)
    reps = a.catalog.tape_replicas(e.file_id)
    assert len({r.tape for r in reps}) == 2 and {r.pool for r in reps} == {"pool0", "pool1"}


def test_digest_mismatch_rejected_and_nothing_committed(make_archive):
    a = make_archive()
    with pytest.raises(DigestMismatch):
        put(a, "/bad", b"abc", digests={"adler32": "00000000"})
    assert a.catalog.get_file("/bad") is None
    assert not list(a.tmp_dir.iterdir())


def test_traversal_refused(make_archive):
    a = make_archive()
    for bad in ("/a/../b", "/a/./b", "/a\x00b", "relative"):
        with pytest.raises(BadPath):
            put(a, bad, b"x")


def _evicted_file(a, size=4_000_000):
    e = put(a, "/big/one", os.urandom(size))
    a.run_for(1000)
    assert a.locality("/big/one") == "DISK_AND_TAPE"
    # pressure: fill the cache above the high watermark (capacity 10 MB, high 90 %)
    for i in range(3):
        put(a, f"/big/fill{i}", os.urandom(2_500_000))
    a.run_for(1000)  # fills go to tape, then eviction may drop the LRU (one)
    return e


def test_eviction_under_pressure_then_recall(make_archive):
    a = make_archive()
    e = _evicted_file(a)
    assert a.locality("/big/one") == "TAPE"
    assert a.metrics.evicted_files >= 1
    used = sum(r.size for r in a.catalog.disk_replicas())
    assert used <= 0.75 * 10_000_000
    with pytest.raises(NearlineOnly):
        a.open_for_read("/big/one")
    rid = a.stage([("/big/one", "PT1H")], "tester")
    assert a.stage_status(rid).files[0].state == "SUBMITTED"
    a.run_for(200)
    req = a.stage_status(rid)
    assert req.files[0].state == "COMPLETED" and req.completed is not None
    assert a.locality("/big/one") == "DISK_AND_TAPE"
    f, p = a.open_for_read("/big/one")
    assert f.file_id == e.file_id and p.stat().st_size == e.size
    assert a.catalog.pins(a.clock.now())  # pinned for an hour
    a.release(rid, None)
    assert not a.catalog.pins(a.clock.now())


def test_stage_on_disk_completes_at_once_and_missing_fails(make_archive):
    a = make_archive()
    put(a, "/d/a", b"aaa")
    rid = a.stage([("/d/a", None), ("/d/missing", None)], "t")
    req = a.stage_status(rid)
    states = {f.path: (f.state, f.error) for f in req.files}
    assert states["/d/a"] == ("COMPLETED", None)
    assert states["/d/missing"][0] == "FAILED" and states["/d/missing"][1]
    assert req.completed is not None


def test_cancel(make_archive):
    a = make_archive()
    _evicted_file(a)
    rid = a.stage([("/big/one", None)], "t")
    a.cancel(rid, ["/big/one"])
    assert a.stage_status(rid).files[0].state == "CANCELLED"
    assert not a.catalog.recalls()
    with pytest.raises(BadRequest):
        a.cancel(rid, ["/not/in/request"])


def test_drive_failure_during_recall_retries_on_other_drive(make_archive):
    a = make_archive()
    _evicted_file(a)
    rid = a.stage([("/big/one", None)], "t")
    a.step()
    busy = [d for d in a.library.drives if d.op]
    assert len(busy) == 1
    a.fail_drive(busy[0].drive_id)
    a.run_for(600)
    assert a.stage_status(rid).files[0].state == "COMPLETED"
    assert a.metrics.recall_failures == 1


def test_bad_copy_then_lost(make_archive):
    a = make_archive(tape={"copies": 2})
    e = _evicted_file(a)
    reps = a.catalog.tape_replicas(e.file_id)
    assert len(reps) == 2
    # damage the first copy: the recall must use the second one
    cart = a.library.tapes[reps[0].tape]
    with open(cart.path, "r+b") as f:
        f.seek(reps[0].offset + reps[0].record_size - 100)
        f.write(b"\xff" * 50)
    rid = a.stage([("/big/one", None)], "t")
    a.run_for(2000)
    assert a.stage_status(rid).files[0].state == "COMPLETED"
    # now damage both and evict again: LOST after both copies failed
    for r in reps[1:]:
        with open(a.library.tapes[r.tape].path, "r+b") as f:
            f.seek(r.offset + r.record_size - 100)
            f.write(b"\xff" * 50)
    a.release(rid, None)
    a.catalog.remove_disk_replica(e.file_id)
    a.disk_path(e.file_id).unlink()
    rid2 = a.stage([("/big/one", None)], "t")
    a.run_for(2000)
    f = a.stage_status(rid2).files[0]
    assert f.state == "FAILED" and "LOST" in f.error
    assert a.locality("/big/one") == "LOST"


def test_rebuild_from_tapes(make_archive, tmp_path):
    from archive.catalog_sqlite import SqliteCatalog
    from archive.rebuild import rebuild

    a = make_archive()
    put(a, "/r/a", b"a" * 100)
    put(a, "/r/b", b"b" * 100)
    put(a, "/r/c", b"c" * 100)
    a.mkdir("/r/empty", "t")
    a.run_for(1000)
    a.delete("/r/b")
    a.move("/r/c", "/r/c2")
    put(a, "/r/d", b"d" * 10)
    a.run_for(1000)
    fresh = SqliteCatalog(str(tmp_path / "rebuilt.db"))
    res = rebuild(a.library, fresh, a.disk_path)
    assert res.ok, res.report()
    got = {f.path: (f.sha256, f.size) for f in fresh.iter_files()}
    want = {f.path: (f.sha256, f.size) for f in a.catalog.iter_files()}
    assert got == want and set(got) == {"/r/a", "/r/c2", "/r/d"}
    assert fresh.get_dir("/r/empty")
    assert res.disk_copies == 3
    fresh.close()


def test_recovery_removes_orphans(make_archive):
    a = make_archive()
    put(a, "/keep", b"k")
    orphan = a.disk_path("ff" + "0" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")
    (a.tmp_dir / "partial").write_bytes(b"half")
    got = a.recover()
    assert got["orphans"] == 1 and got["tmp"] == 1
    assert not orphan.exists()
    assert a.open_for_read("/keep")


def test_eviction_goes_on_to_the_low_watermark_as_files_reach_tape(make_archive):
    """Above the high watermark with only one file on tape, the first pass can evict only that
    one, which leaves usage between the watermarks; the next passes go on down to the low one
    as the other files migrate (hysteresis), instead of stopping until usage is high again."""
    a = make_archive(cache={"capacity_bytes": 1_000_000, "high_watermark": 0.9, "low_watermark": 0.5},
                     migration={"max_age_seconds": 300})
    put(a, "/h/first", os.urandom(300_000))
    a.run_for(1000)  # first reaches tape
    assert a.locality("/h/first") == "DISK_AND_TAPE"
    for i in range(3):  # 1.2 MB on disk, above 0.9 MB; the three new files are not on tape yet
        put(a, f"/h/f{i}", os.urandom(300_000))
    a.run_for(1)
    assert a.locality("/h/first") == "TAPE"  # the only evictable file went at once
    assert 500_000 < a.catalog.disk_usage() <= 900_000  # between the watermarks
    a.run_for(2000)  # the others migrate: eviction goes on to the low watermark
    assert a.catalog.disk_usage() <= 500_000
    a.run_for(2000)
    assert a.catalog.disk_usage() > 0  # and stops there: not everything is dropped
