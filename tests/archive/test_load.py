"""The archive under load: 20 clients for 10 s, the mix of bench/archive_load.py (GET, PUT,
PROPFIND, stage, stage status) over TLS with a bearer token, against a real server whose tape
engine migrates and recalls meanwhile. Asserts 0 errors and that the server's state afterwards is
what the clients were told (not a timing assertion: figures belong to the bench)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.archive.conftest import server_config

BENCH = Path(__file__).resolve().parents[2] / "bench" / "archive_load.py"


@pytest.fixture(scope="module")
def load_bench():
    spec = importlib.util.spec_from_file_location("archive_load_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_twenty_clients_ten_seconds_no_error(tmp_path, pki, token_key, mint, load_bench):
    from archive.server import serve_in_thread

    cfg = server_config(tmp_path / "root", pki, token_key[1])
    srv = serve_in_thread(cfg)
    try:
        t = load_bench.Target("archive", srv.url, str(pki.ca_cert), {"token": mint()},
                              load_bench.OURS_MIX, True)
        dirs = [f"/load/d{i}" for i in range(2)]
        files = [f"{d}/f{j}.bin" for d in dirs for j in range(20)]
        size = 16 << 10
        load_bench.populate(t, dirs, files, size, clients=20)
        res = load_bench.run_load(t, clients=20, seconds=10, files=files, dirs=dirs, size=size)

        assert res["errors"] == 0, res["error_samples"]
        assert set(res["ops"]) == {"GET", "PUT", "PROPFIND", "STAGE", "STATUS"}, res["ops"]
        assert all(o["n"] >= 5 for o in res["ops"].values()), res["ops"]
        a = srv.archive
        # every acknowledged PUT is in the catalog, at its size, and nothing else is
        stored = [f for i in range(20) for f in a.catalog.list_dir(f"/load/put/c{i}")[1]]
        assert len(stored) == res["ops"]["PUT"]["n"]
        assert {f.size for f in stored} == {size}
        # the engine's cached migration candidates are what a fresh catalog scan finds
        with a.lock:
            cached = [(f.file_id, held) for f, held in a._migration_candidates()]
            fresh = [(f.file_id, held) for f, held in
                     a.catalog.migration_candidates(cfg.tape.copies)]
        assert cached == fresh
    finally:
        srv.stop()
