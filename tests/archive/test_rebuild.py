"""The catalog rebuilt from tapes alone equals the catalog it replaces, after any history.

A seeded random history of namespace operations (put, overwrite, mkcol, move of a file, move of
a collection, delete of a file, delete of a collection) interleaved with migrations and
evictions; then the catalog is thrown away, rebuilt from the cartridges, and compared entry by
entry: every path, size, checksum, empty collection and locality (cached or tape only).
"""

from __future__ import annotations

import io
import random

import pytest

from archive.catalog_sqlite import SqliteCatalog
from archive.errors import ArchiveError
from archive.rebuild import rebuild


def _tree(cat) -> tuple[dict[str, tuple], set[str]]:
    """Every file (path -> size, sha256, adler32, on disk, tape copies) and collection."""
    files: dict[str, tuple] = {}
    dirs: set[str] = set()
    todo = ["/"]
    while todo:
        d = todo.pop()
        subdirs, entries = cat.list_dir(d)
        for s in subdirs:
            dirs.add(s.path)
            todo.append(s.path)
        for f in entries:
            files[f.path] = (f.size, f.sha256, f.adler32, cat.disk_replica(f.file_id) is not None,
                             len(cat.tape_replicas(f.file_id)))
    return files, dirs


def _history(a, rng: random.Random, steps: int) -> dict[str, int]:
    """Apply ``steps`` random operations to archive ``a``; returns how many of each succeeded."""
    done: dict[str, int] = {}

    def ok(kind: str) -> None:
        done[kind] = done.get(kind, 0) + 1

    for i in range(steps):
        files, dirs = _tree(a.catalog)
        dirs_l, files_l = sorted(dirs), sorted(files)
        r = rng.random()
        try:
            if r < 0.30 or not files_l:
                parent = rng.choice(["", *dirs_l])
                path = (rng.choice(files_l) if files_l and rng.random() < 0.15
                        else f"{parent}/f{i}")
                data = rng.randbytes(rng.randint(0, 3000))
                a.put_stream(path, io.BytesIO(data), len(data), "tester")
                ok("put")
            elif r < 0.42:
                a.mkdir(f"{rng.choice(['', *dirs_l])}/d{i}", "tester")
                ok("mkcol")
            elif r < 0.55:
                src = rng.choice(files_l)
                a.move(src, f"{rng.choice(['', *dirs_l])}/m{i}")
                ok("move file")
            elif r < 0.67 and dirs_l:
                src = rng.choice(dirs_l)
                a.move(src, f"{rng.choice(['', *dirs_l])}/c{i}")
                ok("move collection")
            elif r < 0.77:
                a.delete(rng.choice(files_l))
                ok("delete file")
            elif r < 0.79 and dirs_l:
                a.delete(rng.choice(dirs_l))  # recursive: rare, or little would be left
                ok("delete collection")
            elif r < 0.90:
                on_disk = [p for p, v in files.items() if v[3] and v[4]]
                if on_disk and a.evict_path(rng.choice(on_disk)):
                    ok("evict")
            else:
                a.run_for(rng.choice([10, 100, 400]))  # migrations start by age
                ok("run")
        except ArchiveError:
            done["refused"] = done.get("refused", 0) + 1
        if rng.random() < 0.08:
            a.run_for(rng.choice([30, 200, 600]))
    return done


@pytest.mark.parametrize("seed,copies", [(1, 1), (2, 2), (3, 1), (4, 2)])
def test_rebuild_after_a_random_history_gives_back_everything(make_archive, tmp_path, seed,
                                                               copies):
    a = make_archive(f"lta{seed}", tape={"copies": copies}, migration={"max_age_seconds": 120})
    rng = random.Random(seed)
    done = _history(a, rng, 300)
    a.run_for(2000)
    a.run_until_idle()
    assert not a.catalog.pending_log() and not a.catalog.migration_candidates(copies)
    want_files, want_dirs = _tree(a.catalog)
    # the history did exercise what can go wrong: renamed collections before their files
    # reached tape, and files that live only on tape
    assert done.get("move collection", 0) >= 10 and done.get("move file", 0) >= 10, done
    assert done.get("delete file", 0) >= 10 and done.get("evict", 0) >= 3, done
    assert sum(1 for v in want_files.values() if not v[3]) >= 3

    fresh = SqliteCatalog(str(tmp_path / f"rebuilt{seed}.db"))
    try:
        res = rebuild(a.library, fresh, a.disk_path)
        got_files, got_dirs = _tree(fresh)
    finally:
        fresh.close()
    assert res.ok, res.report()
    missing = sorted(set(want_files) - set(got_files))
    extra = sorted(set(got_files) - set(want_files))
    wrong = sorted(p for p in set(want_files) & set(got_files) if want_files[p] != got_files[p])
    assert not missing and not extra and not wrong, (
        f"{len(want_files) - len(missing) - len(wrong)}/{len(want_files)} files right; "
        f"missing {missing[:5]}, resurrected {extra[:5]}, wrong {wrong[:5]}")
    assert got_dirs == want_dirs
    print(f"seed {seed}: {len(got_files)}/{len(want_files)} files and {len(got_dirs)}/"
          f"{len(want_dirs)} collections restored from {res.records} records; {done}")


@pytest.mark.parametrize("drives", [1, 2])
def test_each_pool_alone_rebuilds_the_namespace(make_archive, tmp_path, drives):
    """With two copies, the cartridges of either pool are enough: namespace records are
    written to every pool, not only to the pool that happened to finish last (with one drive
    the pools write one after the other, and the second one's batch held newer records)."""
    from archive.tape import TapeLibrary

    a = make_archive(f"lta-pools{drives}", tape={"copies": 2, "drives": drives},
                     migration={"max_age_seconds": 120})
    _history(a, random.Random(5), 300)
    a.run_for(2000)
    a.run_until_idle()
    want_files, want_dirs = _tree(a.catalog)
    for pool in a.library.pools:
        lib = TapeLibrary(a.library.root, a.cfg.tape)
        lib.tapes = {t: c for t, c in lib.tapes.items() if c.pool == pool}
        fresh = SqliteCatalog(str(tmp_path / f"rebuilt-{pool}.db"))
        try:
            res = rebuild(lib, fresh, a.disk_path)
            got_files, got_dirs = _tree(fresh)
        finally:
            fresh.close()
        assert res.ok, res.report()
        assert set(got_files) == set(want_files), pool
        assert {p: v[:4] for p, v in got_files.items()} == {p: v[:4] for p, v in
                                                            want_files.items()}
        assert got_dirs == want_dirs, pool
