"""The demo path: a real clock sped up 600x; upload, migrate, evict under cache pressure, stage
over the Tape REST API, download again; all within seconds."""

from __future__ import annotations

import os
import time

from archive.server import serve_in_thread
from tests.archive.conftest import server_config, tls_session, wait_for


def test_migrate_evict_stage_cycle_in_seconds(tmp_path, pki, token_key, mint):
    cfg = server_config(tmp_path / "demo", pki, token_key[1],
                        cache={"capacity_bytes": 1_000_000, "high_watermark": 0.9,
                               "low_watermark": 0.5})
    srv = serve_in_thread(cfg)
    s = tls_session(pki, mint())
    t0 = time.monotonic()
    try:
        blobs = {f"/demo/f{i}": os.urandom(300_000) for i in range(4)}  # 1.2 MB > 0.9 MB
        for path, data in blobs.items():
            assert s.put(srv.url + path, data=data).status_code == 201
        a = srv.archive
        # every file reaches tape; then the cache drops LRU files down to the low watermark
        wait_for(lambda: all(a.catalog.tape_replicas(a.catalog.get_file(p).file_id)
                             for p in blobs), what="migration")
        wait_for(lambda: a.catalog.disk_usage() <= 500_000, what="eviction")
        nearline = [p for p in blobs if a.locality(p) == "TAPE"]
        assert nearline and a.metrics.mounts >= 1
        assert s.get(srv.url + nearline[0]).status_code == 423
        api = s.get(srv.url + "/.well-known/wlcg-tape-rest-api").json()["endpoints"][0]["uri"]
        rid = s.post(api + "/stage", json={"files": [{"path": nearline[0],
                                                      "diskLifetime": "PT10M"}]}).json()["requestId"]
        wait_for(lambda: "completedAt" in s.get(f"{api}/stage/{rid}").json(), what="recall")
        assert s.get(srv.url + nearline[0]).content == blobs[nearline[0]]
        assert time.monotonic() - t0 < 60  # usually 1-3 s; a budget, not a benchmark
    finally:
        srv.stop()
