"""The catalog-store contract, run on both backends: SQLite and a private PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from archive.catalog import FileEntry, Product, SearchQuery, StageFile, StageRequest, TapeReplica
from archive.errors import AlreadyExists, Conflict, NotFound


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    yield from open_store(request, tmp_path)


def open_store(request, tmp_path, name: str = "c"):
    """A fresh catalog on the backend named by the test parameter (PostgreSQL: its own schema)."""
    if request.param == "sqlite":
        from archive.catalog_sqlite import SqliteCatalog

        cat = SqliteCatalog(str(tmp_path / f"{name}.db"))
    else:
        from archive.catalog_postgres import PostgresCatalog

        cat = PostgresCatalog(pg_schema_dsn(request.getfixturevalue("pg_dsn")))
    yield cat
    cat.close()


def pg_schema_dsn(dsn: str) -> str:
    """A DSN on a new, empty schema of the private server."""
    import psycopg

    schema = "t" + uuid.uuid4().hex[:8]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    return f"{dsn} options=-csearch_path={schema}"


def fe(path, size=10, t=1.0):
    return FileEntry(uuid.uuid4().hex, path, size, "00000001", "ab" * 32, "me", t, t)


def test_namespace(store):
    a = fe("/x/y/a")
    assert store.commit_file(a, disk=True, product=None) is None
    assert store.get_dir("/x/y") and store.get_dir("/x")
    assert store.get_file("/x/y/a").file_id == a.file_id
    b = fe("/x/y/a")
    assert store.commit_file(b, disk=True, product=None) == a.file_id  # replaced
    assert store.disk_replica(a.file_id) is None
    with pytest.raises(AlreadyExists):
        store.commit_file(fe("/x/y"), disk=False, product=None)
    with pytest.raises(Conflict):
        store.make_dirs("/x/y/a/sub", "me", 1)
    dirs, files = store.list_dir("/x/y")
    assert [f.path for f in files] == ["/x/y/a"] and dirs == []
    store.move("/x", "/z", 2)
    assert store.get_file("/z/y/a") and not store.get_dir("/x") and store.get_dir("/z/y")
    with pytest.raises(Conflict):
        store.remove_dir("/z/y", 3)
    assert store.delete_file("/z/y/a", 3)
    store.remove_dir("/z/y", 3)
    with pytest.raises(NotFound):
        store.remove_dir("/z/y", 3)
    kinds = [r.kind for r in store.pending_log()]
    assert kinds.count("mkdir") >= 2 and "move" in kinds and "delete" in kinds


def test_replicas_and_migration(store):
    a, b = fe("/m/a", t=1), fe("/m/b", t=2)
    store.commit_file(a, disk=True, product=None)
    store.commit_file(b, disk=True, product=None)
    assert [f.path for f, _ in store.migration_candidates(2)] == ["/m/a", "/m/b"]
    store.add_tape_replica(TapeReplica(a.file_id, 0, "pool0", "A1", 0, 0, 0, 100))
    assert [(f.path, held) for f, held in store.migration_candidates(2)] == \
        [("/m/a", [0]), ("/m/b", [])]
    store.add_tape_replica(TapeReplica(a.file_id, 1, "pool1", "B1", 0, 0, 0, 100))
    assert [f.path for f, _ in store.migration_candidates(2)] == ["/m/b"]
    assert store.tape_copy_counts() == {a.file_id: 2}


def test_stage_recall_pins(store):
    a = fe("/s/a")
    store.commit_file(a, disk=False, product=None)
    req = StageRequest("r1", "me", 10, 10, None,
                       [StageFile("r1", "/s/a", a.file_id, "SUBMITTED", None, 60)])
    store.create_stage_request(req)
    store.enqueue_recall(a.file_id, 10)
    store.enqueue_recall(a.file_id, 11)  # idempotent
    assert [r.file_id for r in store.recalls()] == [a.file_id]
    store.recall_started([a.file_id], 12)
    assert store.get_stage_request("r1").files[0].state == "STARTED"
    rows = store.update_stage_files(None, a.file_id, "COMPLETED", None, 20,
                                    only_states=("SUBMITTED", "STARTED"))
    assert [r.request_id for r in rows] == ["r1"]
    store.finish_requests({"r1"}, 20)
    assert store.get_stage_request("r1").completed == 20
    store.add_pin(a.file_id, "r1", 100)
    assert store.pins(50) == {a.file_id: 100}
    assert store.expire_pins(150) == 1 and store.pins(50) == {}
    store.delete_stage_request("r1")
    assert store.get_stage_request("r1") is None


def test_search(store):
    rows = []
    for i in range(300):
        f = fe(f"/obs/{i:04d}.fits", t=i)
        p = Product(f.file_id, telescope="LOFAR", instrument="HBA" if i % 2 else "LBA",
                    ra=(i * 1.2) % 360, dec=-60 + i * 0.4, t_obs=1e9 + i * 100,
                    project="LC9" if i < 150 else "LC10", observation=f"L{i // 10}",
                    product_type="image")
        rows.append((f, p))
    assert store.bulk_insert(rows) == 300
    got = store.search(SearchQuery(path_prefix="/obs", project="LC9", instrument="HBA", limit=500))
    assert len(got) == 75 and all(p.instrument == "HBA" for _, p in got)
    page1 = store.search(SearchQuery(limit=100))
    page2 = store.search(SearchQuery(limit=100, after=page1[-1][0].path))
    assert len(page1) == 100 and page2[0][0].path > page1[-1][0].path
    # cone: centre on object 100 (ra 120, dec -20), radius 1 deg: itself and neighbours within 1 deg
    cone = store.search(SearchQuery(ra=120.0, dec=-20.0, radius=1.0))
    assert "/obs/0100.fits" in [f.path for f, _ in cone]
    assert all(abs(p.dec + 20) <= 1 for _, p in cone)
    t = store.search(SearchQuery(time_min=1e9 + 100 * 10, time_max=1e9 + 100 * 19))
    assert len(t) == 10
    assert store.search(SearchQuery(path_prefix="/ob")) == []  # segment-wise prefix


def test_engine_cycle_on_postgresql(pg_dsn, tmp_path):
    """Ingest, migrate, evict, stage and recall with the PostgreSQL backend."""
    import io

    import psycopg

    from archive.clock import SimClock
    from archive.engine import Archive
    from tests.archive.conftest import sim_config

    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("CREATE SCHEMA engine")
    cfg = sim_config(tmp_path / "lta", catalog={"backend": "postgresql",
                                                 "dsn": f"{pg_dsn} options=-csearch_path=engine"})
    a = Archive(cfg, clock=SimClock())
    try:
        a.put_stream("/pg/a", io.BytesIO(b"x" * 1000), 1000, "me")
        a.run_for(1000)
        assert a.locality("/pg/a") == "DISK_AND_TAPE"
        assert a.evict_path("/pg/a")
        rid = a.stage([("/pg/a", "PT1H")], "me")
        a.run_for(300)
        assert a.stage_status(rid).files[0].state == "COMPLETED"
        assert a.open_for_read("/pg/a")[1].read_bytes() == b"x" * 1000
    finally:
        a.close()


def test_a_forked_child_never_touches_the_parents_connections_or_locks(store):
    """fork() while another thread holds the catalog's connection lock (as any thread opening or
    ending a connection does for a moment): in the child, finalising a parent's connection returns
    at once, and the catalog works on a connection of the child's own while the parent's stays
    usable. Before, a forked child waited for good on the lock (seen in a fresh-clone test run)."""
    from tests.forking import fork_while_held

    store.commit_file(fe("/fork/a"), disk=True, product=None)
    parent_conn = store._conn()

    def child() -> int:  # 0 only if both work
        store._release(parent_conn)  # what a garbage collection right after fork did
        store.commit_file(fe("/fork/b"), disk=True, product=None)
        code = 0 if store._conn() is not parent_conn and store.get_file("/fork/b") else 3
        store.close()
        return code

    assert fork_while_held(store._conns_lock, child, 60,
                           "the forked child hung on a lock the parent's thread held at fork time") == 0
    assert store._conn() is parent_conn  # the parent's connection was left alone
    assert store.get_file("/fork/a") and store.get_file("/fork/b")  # the child's write is in the catalog
