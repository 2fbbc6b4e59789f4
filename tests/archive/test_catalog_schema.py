"""The catalog's versioned schema: a new catalog is at the current version, an older one is
upgraded step by step with its data kept, a newer one is refused in one line, and two processes
opening a new catalog at once apply each step exactly once. Both backends."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys

import pytest
import yaml

from archive.catalog_sql import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew
from archive.catalog_sqlite import SqliteCatalog
from tests.archive.test_catalog import fe, open_store, pg_schema_dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    yield from open_store(request, tmp_path)


def _tables(cat) -> set[str]:
    if cat.dialect.name == "sqlite":
        q = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        q = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    return {r[0] for r in cat._x(q).fetchall()}


def test_a_new_catalog_is_at_the_current_version(store):
    assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    assert {"files", "dirs", "dead_props", "schema_version"} <= _tables(store)
    assert store.get_dir("/") is not None
    assert store._x("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_a_version_1_catalog_is_upgraded_with_its_data(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)  # a catalog as the first release wrote it: no version table
    for stmt in MIGRATIONS[0](SqliteCatalog.dialect):
        conn.execute(stmt)
    conn.execute("INSERT INTO files VALUES ('f1', '/a', '/', 3, '00000001', ?, 'me', 1, 1, 1)",
                 ("ab" * 32,))
    conn.commit()
    conn.close()
    cat = SqliteCatalog(str(path))
    try:
        assert cat.schema_version() == SCHEMA_VERSION
        assert cat.get_file("/a").size == 3  # the data survived the upgrade
        assert "dead_props" in _tables(cat)
        cat.commit_file(fe("/b"), disk=True, product=None)
    finally:
        cat.close()
    again = SqliteCatalog(str(path))  # opening again changes nothing
    try:
        assert again.schema_version() == SCHEMA_VERSION and again.get_file("/b") is not None
    finally:
        again.close()


def test_a_catalog_from_a_newer_release_is_refused(store, tmp_path):
    store._x("DELETE FROM schema_version")
    store._x("INSERT INTO schema_version(version) VALUES (?)", (SCHEMA_VERSION + 1,))
    if store.dialect.name == "sqlite":
        with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}"):
            SqliteCatalog(store.path)
        # and from the command line: one line, exit 2, no traceback
        cfg = tmp_path / "lta.yaml"
        root = tmp_path / "lta"
        root.mkdir()
        SqliteCatalog(str(root / "catalog.db")).close()
        with sqlite3.connect(root / "catalog.db") as conn:
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
        conn.close()
        cfg.write_text(yaml.safe_dump({"root": str(root), "catalog": {"path": str(root / "catalog.db")}}))
        r = subprocess.run([sys.executable, "-m", "archive.cli", "catalog", "backup", "--config",
                            str(cfg), str(tmp_path / "b.db")], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r
        assert "upgrade the archive software" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    else:
        from archive.catalog_postgres import PostgresCatalog

        with pytest.raises(SchemaTooNew):
            PostgresCatalog(store.dsn)


def _open(backend: str, target: str, q) -> None:
    """One process opening the catalog (a file path or a DSN); reports "ok" or the error."""
    try:
        if backend == "sqlite":
            SqliteCatalog(target).close()
        else:
            from archive.catalog_postgres import PostgresCatalog

            PostgresCatalog(target).close()
        q.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the parent
        q.put(repr(err))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_openers_apply_each_step_once(backend, tmp_path, request):
    if backend == "sqlite":
        target = str(tmp_path / "race.db")
    else:
        target = pg_schema_dsn(request.getfixturevalue("pg_dsn"))
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_open, args=(backend, target, q), daemon=True) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == ["ok"] * 4, results
    cat = SqliteCatalog(target) if backend == "sqlite" else None
    if cat is None:
        from archive.catalog_postgres import PostgresCatalog

        cat = PostgresCatalog(target)
    try:
        assert cat.schema_version() == SCHEMA_VERSION
        assert cat._x("SELECT count(*) FROM dirs WHERE path = '/'").fetchone()[0] == 1
    finally:
        cat.close()


def _open_at_barrier(target: str, barrier, q) -> None:
    try:
        barrier.wait(60)  # every process converts the fresh file at the same moment
        SqliteCatalog(target).close()
        q.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the parent
        q.put(repr(err))


def test_simultaneous_first_opens_of_a_new_sqlite_file(tmp_path):
    """8 processes open one new file at the same instant, 40 times: every open succeeds.

    `PRAGMA journal_mode=WAL` needs exclusive access and SQLite runs no busy handler for it: before
    the retry in catalog_sqlite._use_wal about 5 % of such opens failed with "database is locked"
    (one failed a fresh-machine CI run, in test_concurrent_openers_apply_each_step_once).

    The processes come from a fork server (one clean single-threaded process with this module
    loaded), not a fork of pytest: a fork of a process with threads (the suite's servers, pools and
    monitors) can inherit a lock another thread held, and a child hung that way failed a fresh run
    (a queue read timed out after 120 s)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    failures = []
    for i in range(40):
        target = str(tmp_path / f"new{i}.db")
        q, barrier = ctx.Queue(), ctx.Barrier(8)
        procs = [ctx.Process(target=_open_at_barrier, args=(target, barrier, q), daemon=True) for _ in range(8)]
        for p in procs:
            p.start()
        failures += [r for r in (q.get(timeout=120) for _ in procs) if r != "ok"]
        for p in procs:
            p.join(timeout=60)
    assert not failures, failures[:3]
