"""The engine's one concurrency rule (``archive.engine``), checked where it is checkable.

Request threads (put, stat, read, delete, stage, cancel, release) run against an in-process
archive while an engine thread steps a simulated clock: nothing raises, and afterwards the catalog
and the disk cache agree. The two races the rule closes (a DELETE while the engine recalls or
migrates the file) are forced deterministically; and request methods do not wait for the engine's
lock while engine work does.
"""

from __future__ import annotations

import io
import os
import random
import threading

from archive.errors import AlreadyExists, Conflict, NearlineOnly, NotFound

OPEN = ("SUBMITTED", "STARTED")


def put(a, path: str, data: bytes):
    return a.put_stream(path, io.BytesIO(data), len(data), "tester")


def disk_files(a) -> set[str]:
    return {p.name for sub in a.disk_dir.iterdir() if sub.is_dir() and sub.name != ".tmp"
            for p in sub.iterdir()}


def assert_consistent(a) -> None:
    """Every disk replica row is a catalog file with its disk copy, and no disk copy is unknown."""
    rows = {r.file_id for r in a.catalog.disk_replicas()}
    for fid in rows:
        assert a.catalog.get_file_by_id(fid) is not None, f"disk replica of a deleted file {fid}"
    assert disk_files(a) == rows, "disk cache and catalog disagree"
    assert not list(a.tmp_dir.iterdir()), "temp files left behind"


def test_request_threads_against_a_stepping_engine(make_archive):
    a = make_archive(migration={"max_age_seconds": 60, "batch_files": 5},
                     cache={"capacity_bytes": 400_000})
    errors: list[BaseException] = []
    stop = threading.Event()
    puts = [0]
    puts_lock = threading.Lock()

    def guard(fn):
        def run(*args):
            try:
                fn(*args)
            except BaseException as err:  # noqa: BLE001 - reported by the test
                errors.append(err)
        return run

    @guard
    def engine():
        while not stop.is_set():
            a.step()
            a.clock.set(a.clock.now() + 7.0)

    @guard
    def writer(t: int):
        rnd = random.Random(t)
        for _ in range(40):
            path = f"/c/w{t}/{rnd.randrange(12)}.dat"  # reuses paths: replaces files
            put(a, path, os.urandom(rnd.randrange(1, 20_000)))
            with puts_lock:
                puts[0] += 1
            if rnd.random() < 0.3:
                try:
                    a.delete(f"/c/w{t}/{rnd.randrange(12)}.dat")
                except NotFound:
                    pass
            try:
                a.open_for_read(path)
            except (NearlineOnly, NotFound):  # evicted, or deleted by another thread
                pass

    @guard
    def stager(t: int):
        rnd = random.Random(100 + t)
        for _ in range(25):
            paths = [f"/c/w{rnd.randrange(3)}/{rnd.randrange(12)}.dat" for _ in range(4)]
            rid = a.stage([(p, None) for p in paths], "tester")
            req = a.stage_status(rid)
            assert {f.path for f in req.files} == set(paths)
            choice = rnd.random()
            if choice < 0.3:
                a.cancel(rid, [f.path for f in req.files])
            elif choice < 0.6:
                a.release(rid, None)
            else:
                a.delete_request(rid)
            for p in paths:
                try:
                    a.evict_path(p)
                except NotFound:
                    pass

    threads = [threading.Thread(target=engine)]
    threads += [threading.Thread(target=writer, args=(t,)) for t in range(3)]
    threads += [threading.Thread(target=stager, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads[1:]:
        th.join(timeout=300)
    stop.set()
    threads[0].join(timeout=60)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors
    a.run_until_idle()
    assert a.metrics.ingested_files == puts[0]  # Metrics.add: no addition lost
    assert_consistent(a)
    assert not a.catalog.recalls(("queued", "active"))
    with a.catalog.tx():
        pass  # the catalog still takes a transaction (no thread left one open)


def test_delete_during_a_recall_leaves_no_disk_copy(make_archive):
    a = make_archive()
    e = put(a, "/r/x.dat", os.urandom(5000))
    a.run_for(400)
    assert a.evict_path("/r/x.dat")
    rid = a.stage([("/r/x.dat", None)], "tester")
    real = a.library.read_into

    def read_then_delete(*args, **kw):  # a request thread's DELETE while the drive reads
        out = real(*args, **kw)
        a.delete("/r/x.dat")
        return out

    a.library.read_into = read_then_delete
    a.run_until_idle()
    assert a.catalog.disk_replica(e.file_id) is None
    assert e.file_id not in disk_files(a)
    assert a.catalog.get_recall(e.file_id) is None
    assert all(f.state not in OPEN for f in a.stage_status(rid).files)
    assert_consistent(a)


def test_delete_during_a_migration_skips_only_that_file(make_archive):
    a = make_archive()
    gone = put(a, "/m/gone.dat", os.urandom(3000))
    put(a, "/m/kept.dat", os.urandom(3000))
    real = a.library.append

    def delete_then_append(tape, header, source):  # the DELETE lands between check and copy
        if header.get("file_id") == gone.file_id:
            a.delete("/m/gone.dat")
        return real(tape, header, source)

    a.library.append = delete_then_append
    a.run_for(400)  # the step must not raise: the rest of the batch is written
    assert a.locality("/m/kept.dat") == "DISK_AND_TAPE"
    assert not a.catalog.tape_replicas(gone.file_id)
    assert_consistent(a)


def test_request_methods_do_not_wait_for_the_engine_lock(make_archive):
    a = make_archive()
    put(a, "/l/on-tape.dat", b"x" * 1000)
    a.run_for(400)
    held, release = threading.Event(), threading.Event()

    def hold():  # the engine thread in the middle of a long tape operation
        with a.lock:
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    done: list[str] = []

    def requests():
        put(a, "/l/new.dat", b"y" * 100)
        a.stat("/l/new.dat")
        a.open_for_read("/l/new.dat")
        rid = a.stage([("/l/on-tape.dat", None), ("/l/new.dat", None)], "tester")
        a.stage_status(rid)
        a.release(rid, None)
        try:
            a.mkdir("/l/sub", "tester")
        except (AlreadyExists, Conflict):
            pass
        a.move("/l/new.dat", "/l/sub/new.dat")
        a.delete("/l/sub/new.dat")
        done.append("requests")

    def engine_work():  # eviction is engine work: it waits for the lock
        a.evict_path("/l/on-tape.dat")
        done.append("evict")

    r = threading.Thread(target=requests)
    r.start()
    r.join(timeout=30)
    ev = threading.Thread(target=engine_work)
    ev.start()
    ev.join(timeout=0.5)
    assert done == ["requests"], done  # requests finished, eviction still waits
    release.set()
    holder.join(timeout=10)
    ev.join(timeout=10)
    assert done == ["requests", "evict"]
    assert a.locality("/l/on-tape.dat") == "TAPE"
