"""Tape REST at scale: a stage request of 10,000 tape-resident files, then polls.

Goals (issue 4): the stage POST is accepted in < 1 s; a poll answers in < 100 ms. The baseline
printed next to it is a GET of /.well-known/wlcg-tape-rest-api (the cheapest round trip of the
same server), so the ratio shows what the request size costs. Run:
    .venv/bin/python bench/archive_taperest.py [--files 10000] [--polls 20]
The catalog is filled directly (bulk insert with synthetic tape copies); the clock is simulated,
so no recall starts and the request stays open while it is polled.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jwt  # noqa: E402
import requests  # noqa: E402

from archive.catalog import FileEntry, TapeReplica  # noqa: E402
from archive.config import load_config  # noqa: E402
from archive.server import serve_in_thread  # noqa: E402

SECRET = "bench-secret-" * 4


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--polls", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lta-bench-rest-"))
    cfg = load_config(None, env={}, root=str(work), server={"port": 0},
                      clock={"mode": "simulated"},
                      auth={"token_keys": [{"issuer": "bench", "algorithm": "HS256",
                                            "secret": SECRET}]})
    srv = serve_in_thread(cfg)
    try:
        cat = srv.archive.catalog
        entries = [FileEntry(uuid.uuid4().hex, f"/tape/run/f{i:06d}", 10**9, "0a0b0c0d",
                             "ab" * 32, "bench", 1.0, 1.0, i + 1) for i in range(args.files)]
        cat.bulk_insert((e, None) for e in entries)
        with cat.tx():
            for i, e in enumerate(entries):
                cat.add_tape_replica(TapeReplica(e.file_id, 0, "pool0", f"A{i % 40:05d}L9",
                                                 i // 40, i, i * 10**9, 10**9))
        tok = jwt.encode({"iss": "bench", "sub": "b", "exp": int(time.time()) + 3600,
                          "scope": "storage.stage:/ storage.read:/"}, SECRET, algorithm="HS256")
        s = requests.Session()
        s.trust_env = False
        s.headers["Authorization"] = f"Bearer {tok}"
        api = s.get(srv.url + "/.well-known/wlcg-tape-rest-api").json()["endpoints"][0]["uri"]
        base = []
        for _ in range(args.polls):
            t = time.perf_counter()
            s.get(srv.url + "/.well-known/wlcg-tape-rest-api").raise_for_status()
            base.append(time.perf_counter() - t)
        body = {"files": [{"path": e.path, "diskLifetime": "PT1H"} for e in entries]}
        t = time.perf_counter()
        r = s.post(api + "/stage", json=body)
        stage_s = time.perf_counter() - t
        assert r.status_code == 201, r.text
        rid = r.json()["requestId"]
        polls = []
        for _ in range(args.polls):
            t = time.perf_counter()
            st = s.get(f"{api}/stage/{rid}")
            polls.append(time.perf_counter() - t)
            assert len(st.json()["files"]) == args.files
        t = time.perf_counter()
        info = s.post(api + "/archiveinfo", json={"paths": [e.path for e in entries[:1000]]})
        info_s = time.perf_counter() - t
        assert len(info.json()) == 1000
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    b = statistics.median(base) * 1000
    p = statistics.median(polls) * 1000
    print(f"stage request of {args.files:,} files accepted in {stage_s * 1000:.0f} ms (goal < 1000 ms)")
    print(f"poll of that request: median {p:.1f} ms, max {max(polls) * 1000:.1f} ms (goal < 100 ms); "
          f"baseline discovery GET {b:.1f} ms ({p / b:.0f}x)")
    print(f"archiveinfo of 1,000 paths: {info_s * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
