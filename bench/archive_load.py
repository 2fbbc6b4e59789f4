"""Archive under load: N concurrent clients for S seconds, a mix of GET, PUT, PROPFIND, stage and
stage status against ``archive serve``, and the same GET/PUT/PROPFIND part against wsgidav
(cheroot) on the same machine, both over TLS, one after the other in this one process.

Goal (issue 12): 0 errors, p95 under 250 ms, and at least wsgidav's throughput. Run:

    .venv/bin/python bench/archive_load.py [--seconds 60] [--clients 50] [--only ours|wsgidav]

Each client is a thread with its own ``requests`` session (a keep-alive connection pool, TLS
verified against a private test CA): the archive is addressed with a bearer token (RS256, as a
WLCG token issuer signs it), wsgidav with HTTP Basic (its own authenticator: it has no bearer
tokens). Both serve the same data set: ``--dirs`` collections of ``--files`` files of
``--size-kib`` KiB. The archive is run exactly as deployed (``archive serve --config``, access
log on, to a file); wsgidav with its command line and its default 50 cheroot threads.

The mix (weights): ours GET 40, PUT 20, PROPFIND (Depth 1) 20, stage 10, stage status 10;
wsgidav GET 50, PUT 25, PROPFIND 25 (the same proportions without the tape part). A PUT writes a
new file; an answer outside 2xx/207, a wrong body size or an exception is an error.

Prints req/s, p50, p95, p99 and errors per server and per operation, the throughput ratio, and
the load average (the machine may be shared: figures are then measured under contention).
Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import urllib3
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pki import make_pki  # noqa: E402

PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?>'
                 b'<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>')
ISSUER = "https://tokens.bench"
OURS_MIX = {"GET": 40, "PUT": 20, "PROPFIND": 20, "STAGE": 10, "STATUS": 10}
DAV_MIX = {"GET": 50, "PUT": 25, "PROPFIND": 25}


class Target:
    """One server under test: base URL, how a session authenticates, the mix it gets."""

    def __init__(self, name: str, url: str, ca: str, auth: dict, mix: dict[str, int],
                 stage: bool):
        self.name, self.url, self.ca, self.auth, self.mix, self.stage = name, url, ca, auth, mix, stage

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca
        if "token" in self.auth:
            s.headers["Authorization"] = f"Bearer {self.auth['token']}"
        else:
            s.auth = self.auth["basic"]
        a = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
        s.mount("https://", a)
        return s


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.samples: list[str] = []

    def add(self, op: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.lat.setdefault(op, []).append(seconds)
            if error:
                self.errors[op] = self.errors.get(op, 0) + 1
                if len(self.samples) < 10:
                    self.samples.append(f"{op}: {error}")


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def client(t: Target, cid: int, files: list[str], dirs: list[str], payload: bytes, size: int,
           stop: float, st: Stats, seed: int) -> None:
    rnd = random.Random(seed)
    ops, weights = list(t.mix), list(t.mix.values())
    s = t.session()
    n = 0
    stage_ids: list[str] = []
    while time.monotonic() < stop:
        op = rnd.choices(ops, weights)[0]
        if op == "STATUS" and not stage_ids:
            op = "STAGE"
        t0 = time.perf_counter()
        err = None
        try:
            if op == "GET":
                r = s.get(t.url + rnd.choice(files), timeout=60)
                if r.status_code != 200 or len(r.content) != size:
                    err = f"GET {r.status_code} {len(r.content)} bytes"
            elif op == "PUT":
                n += 1
                r = s.put(f"{t.url}/load/put/c{cid}/f{n}.bin", data=payload, timeout=60)
                if r.status_code not in (201, 204):
                    err = f"PUT {r.status_code} {r.text[:200]}"
            elif op == "PROPFIND":
                r = s.request("PROPFIND", t.url + rnd.choice(dirs) + "/", data=PROPFIND_BODY,
                              headers={"Depth": "1", "Content-Type": "application/xml"},
                              timeout=60)
                if r.status_code != 207 or b"multistatus" not in r.content:
                    err = f"PROPFIND {r.status_code} {r.text[:200]}"
            elif op == "STAGE":
                r = s.post(t.url + "/api/v1/stage", timeout=60,
                           json={"files": [{"path": p} for p in rnd.sample(files, 3)]})
                if r.status_code != 201:
                    err = f"STAGE {r.status_code} {r.text[:200]}"
                else:
                    stage_ids.append(r.json()["requestId"])
                    del stage_ids[:-20]
            else:
                r = s.get(f"{t.url}/api/v1/stage/{rnd.choice(stage_ids)}", timeout=60)
                if r.status_code != 200 or "files" not in r.json():
                    err = f"STATUS {r.status_code} {r.text[:200]}"
        except Exception as e:  # noqa: BLE001 - every failure is counted as an error
            err = f"{type(e).__name__}: {e}"[:300]
        st.add(op, time.perf_counter() - t0, err)
    s.close()


def run_load(t: Target, clients: int, seconds: float, files: list[str], dirs: list[str],
             size: int) -> dict:
    payload = os.urandom(size)
    st = Stats()
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=client, args=(t, i, files, dirs, payload, size, stop, st,
                                                     1000 + i), daemon=True)
               for i in range(clients)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t0
    every = [x for xs in st.lat.values() for x in xs]
    out = {"server": t.name, "requests": len(every), "seconds": round(wall, 1),
           "req_per_s": round(len(every) / wall, 1), "errors": sum(st.errors.values()),
           "p50_ms": round(1000 * pct(every, 0.50), 1), "p95_ms": round(1000 * pct(every, 0.95), 1),
           "p99_ms": round(1000 * pct(every, 0.99), 1), "ops": {}, "error_samples": st.samples}
    for op, xs in sorted(st.lat.items()):
        out["ops"][op] = {"n": len(xs), "errors": st.errors.get(op, 0),
                          "p50_ms": round(1000 * statistics.median(xs), 1),
                          "p95_ms": round(1000 * pct(xs, 0.95), 1)}
    return out


# -- the servers -------------------------------------------------------------------------------
def wait_port(proc: subprocess.Popen, log: Path, pattern: str, timeout: float = 60) -> int:
    """The port from the server's first line matching ``pattern`` (stdout/stderr in ``log``)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {log.read_text()[-2000:]}")
        for line in log.read_text(errors="replace").splitlines():
            if pattern in line:
                import re

                m = re.search(r":(\d+)", line[line.index(pattern):])
                if m:
                    return int(m.group(1))
        time.sleep(0.1)
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


def start_ours(work: Path, pki, pub: Path, threads_env: dict | None = None
               ) -> tuple[subprocess.Popen, int, Path]:
    cfg = {
        "root": str(work / "lta"),
        "server": {"host": "127.0.0.1", "port": 0, "tls_cert": str(pki.host_cert),
                   "tls_key": str(pki.host_key), "ca_dir": str(pki.cert_dir)},
        "clock": {"mode": "real", "speed": 1.0},
        "tape": {"cartridges": 4, "capacity_bytes": 10**11, "drives": 2},
        "migration": {"max_age_seconds": 10**9, "batch_files": 10**9, "batch_bytes": 10**15},
        "cache": {"capacity_bytes": 10**12},
        "auth": {"token_keys": [{"issuer": ISSUER, "algorithm": "RS256",
                                 "public_key_file": str(pub)}]},
    }
    conf = work / "lta.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    log = work / "ours.log"
    env = {**os.environ, **(threads_env or {})}
    proc = subprocess.Popen([str(ROOT / ".venv/bin/archive"), "serve", "--config", str(conf)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    return proc, wait_port(proc, log, "archive serving https://"), log


def start_wsgidav(work: Path, pki, data: Path) -> tuple[subprocess.Popen, int, Path]:
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    conf = {
        "host": "127.0.0.1", "port": port, "server": "cheroot",
        "ssl_certificate": str(pki.host_cert), "ssl_private_key": str(pki.host_key),
        "provider_mapping": {"/": str(data)},
        "http_authenticator": {"accept_basic": True, "accept_digest": False,
                               "default_to_digest": False},
        "simple_dc": {"user_mapping": {"*": {"bench": {"password": "bench-pw"}}}},
        "verbose": 1, "logging": {"enable_loggers": []},
        "property_manager": True, "lock_storage": True,
    }
    cf = work / "wsgidav.yaml"
    cf.write_text(yaml.safe_dump(conf))
    log = work / "wsgidav.log"
    proc = subprocess.Popen([str(ROOT / ".venv/bin/wsgidav"), "--config", str(cf)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"wsgidav exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port, log
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("wsgidav did not start: " + log.read_text()[-2000:])


def stop(proc: subprocess.Popen) -> None:
    with_pg = proc.pid
    try:
        os.killpg(with_pg, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with_pg and os.killpg(with_pg, signal.SIGKILL)
        proc.wait()


def populate(t: Target, dirs: list[str], files: list[str], size: int, clients: int) -> None:
    """Create the data set over the target's own WebDAV (MKCOL, PUT), a few sessions at once."""
    s = t.session()
    for d in ["/load", "/load/put", *dirs] + [f"/load/put/c{i}" for i in range(clients)]:
        r = s.request("MKCOL", t.url + d + "/")
        if r.status_code not in (201, 405):
            raise RuntimeError(f"MKCOL {d}: {r.status_code} {r.text[:200]}")
    body = os.urandom(size)
    chunks = [files[i::8] for i in range(8)]

    def put(paths: list[str]) -> None:
        ss = t.session()
        for p in paths:
            r = ss.put(t.url + p, data=body)
            if r.status_code not in (201, 204):
                raise RuntimeError(f"PUT {p}: {r.status_code} {r.text[:200]}")

    ths = [threading.Thread(target=put, args=(c,)) for c in chunks]
    for th in ths:
        th.start()
    for th in ths:
        th.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--dirs", type=int, default=4)
    ap.add_argument("--files", type=int, default=50, help="files per collection")
    ap.add_argument("--size-kib", type=int, default=64)
    ap.add_argument("--only", choices=("ours", "wsgidav"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args()
    if args.only != "ours":
        import importlib.util

        if importlib.util.find_spec("cheroot") is None or not (ROOT / ".venv/bin/wsgidav").exists():
            print("archive_load: wsgidav and cheroot must be installed in .venv (the test extra); "
                  "or run with --only ours", file=sys.stderr)
            return 2
    urllib3.disable_warnings()
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    work = Path(tempfile.mkdtemp(prefix="lta-bench-load-"))
    pki = make_pki(work / "pki")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = work / "issuer.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    now = int(time.time())
    token = jwt.encode({"iss": ISSUER, "sub": "bench", "iat": now, "nbf": now - 5,
                        "exp": now + 86400, "wlcg.ver": "1.0",
                        "scope": "storage.read:/ storage.create:/ storage.modify:/ "
                                 "storage.stage:/"}, key, algorithm="RS256")
    size = args.size_kib << 10
    dirs = [f"/load/d{i}" for i in range(args.dirs)]
    files = [f"{d}/f{j}.bin" for d in dirs for j in range(args.files)]
    results = []
    try:
        if args.only in (None, "ours"):
            proc, port, log = start_ours(work, pki, pub)
            try:
                t = Target("archive", f"https://localhost:{port}", str(pki.ca_cert),
                           {"token": token}, OURS_MIX, True)
                populate(t, dirs, files, size, args.clients)
                results.append(run_load(t, args.clients, args.seconds, files, dirs, size))
            finally:
                stop(proc)
        if args.only in (None, "wsgidav"):
            data = work / "davroot"
            data.mkdir()
            proc, port, log = start_wsgidav(work, pki, data)
            try:
                t = Target("wsgidav", f"https://localhost:{port}", str(pki.ca_cert),
                           {"basic": ("bench", "bench-pw")}, DAV_MIX, False)
                populate(t, dirs, files, size, args.clients)
                results.append(run_load(t, args.clients, args.seconds, files, dirs, size))
            finally:
                stop(proc)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)
    load = os.getloadavg()
    summary = {"clients": args.clients, "seconds": args.seconds, "size_kib": args.size_kib,
               "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in load],
               "results": results}
    if len(results) == 2:
        summary["throughput_ratio_ours_over_wsgidav"] = round(
            results[0]["req_per_s"] / results[1]["req_per_s"], 3)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"{args.clients} clients, {args.seconds:g} s, {args.size_kib} KiB files, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for r in results:
        print(f"{r['server']:8s} {r['req_per_s']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
              f"p95 {r['p95_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}"
              f"  ({r['requests']} requests)")
        for op, o in r["ops"].items():
            print(f"    {op:9s} n={o['n']:6d}  p50 {o['p50_ms']:7.1f} ms  p95 {o['p95_ms']:7.1f} ms"
                  f"  errors {o['errors']}")
        for e in r["error_samples"]:
            print(f"    error: {e}")
    if "throughput_ratio_ours_over_wsgidav" in summary:
        print(f"throughput ratio archive / wsgidav: {summary['throughput_ratio_ours_over_wsgidav']}")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
