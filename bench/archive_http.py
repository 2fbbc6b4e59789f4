"""Archive HTTP throughput: GET of a 1 GiB file vs nginx (both sendfile, both fetched by curl),
and PUT with on-the-fly checksums vs cp.

Goals (issue 4): download >= 0.9x nginx, upload >= 0.8x cp. The archive answers a PUT only once
the file is durable (fsync before rename and catalog commit), so the like-for-like baseline is
cp followed by an fsync of the copy; plain cp (page cache only) is printed too. Every timed run
starts after a global sync. Run:

    .venv/bin/python bench/archive_http.py [--size-mib 1024] [--runs 3]

Everything on 127.0.0.1; nginx is a private instance (own conf, pid, temp dir, free port).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jwt  # noqa: E402
from transfer_common import disk_floor  # noqa: E402

from archive.config import load_config  # noqa: E402
from archive.server import serve_in_thread  # noqa: E402

SECRET = "bench-secret-" * 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settle() -> None:
    """Write out what the previous run left dirty (a global sync) so no run pays for another."""
    os.sync()
    time.sleep(0.5)


def curl_time(args: list[str]) -> float:
    settle()
    out = subprocess.run(["curl", "-s", "-f", "-o", "/dev/null", "-w", "%{time_total}", *args],
                         check=True, capture_output=True, text=True)
    return float(out.stdout)


def start_nginx(root: Path, work: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(f"""
user root;
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    p = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("nginx did not start: " + (work / "error.log").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir in /tmp)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lta-bench-http-", dir=args.dir))
    src = work / "src.bin"
    with open(src, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1 << 20))
    size = src.stat().st_size
    tok = jwt.encode({"iss": "bench", "sub": "bench", "exp": int(time.time()) + 7200,
                      "scope": "storage.read:/ storage.create:/ storage.modify:/"}, SECRET,
                     algorithm="HS256")
    auth = ["-H", f"Authorization: Bearer {tok}"]
    cfg = load_config(None, env={}, root=str(work / "lta"), server={"port": 0},
                      migration={"max_age_seconds": 1e9, "batch_files": 10**9,
                                 "batch_bytes": 10**15},
                      cache={"capacity_bytes": 10**13},
                      auth={"token_keys": [{"issuer": "bench", "algorithm": "HS256",
                                            "secret": SECRET}]})
    srv = serve_in_thread(cfg)
    nginx_root = work / "www"
    nginx_root.mkdir()
    nginx, nport = start_nginx(nginx_root, work)
    results = {}
    try:
        # upload: ours (curl -T, checksums on the fly, fsync, catalog commit) vs cp (+ fsync)
        up, cp, cps, floor = [], [], [], []
        for i in range(args.runs):
            up.append(curl_time([*auth, "-T", str(src), f"{srv.url}/bench/up{i}.bin"]))
            dst = work / f"cp{i}.bin"
            settle()
            t = time.perf_counter()
            shutil.copyfile(src, dst)
            cp.append(time.perf_counter() - t)
            dst2 = work / f"cps{i}.bin"
            settle()
            t = time.perf_counter()
            subprocess.run(["cp", str(src), str(dst2)], check=True)
            fd = os.open(dst2, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            cps.append(time.perf_counter() - t)
            for p in (dst, dst2):
                p.unlink()
            floor.append(disk_floor(work / "floor.bin", size))
        entry = srv.archive.catalog.get_file("/bench/up0.bin")
        assert entry and entry.size == size
        # download: the same bytes from both servers, to /dev/null, by curl
        os.link(srv.archive.disk_path(entry.file_id), nginx_root / "f.bin")
        ours, theirs = [], []
        for _ in range(args.runs):
            theirs.append(curl_time([f"http://127.0.0.1:{nport}/f.bin"]))
            ours.append(curl_time([*auth, f"{srv.url}/bench/up0.bin"]))
        mib = size / 2**20
        results = {
            "download_ours_MiBps": mib / min(ours), "download_nginx_MiBps": mib / min(theirs),
            "upload_ours_MiBps": mib / min(up), "cp_MiBps": mib / min(cp),
            "cp_fsync_MiBps": mib / min(cps), "floor_MiBps": mib / min(floor),
        }
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(10)
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    r = results
    print(f"file size: {args.size_mib} MiB, best of {args.runs}")
    print(f"download  ours {r['download_ours_MiBps']:8.0f} MiB/s   nginx {r['download_nginx_MiBps']:8.0f}"
          f" MiB/s   ratio {r['download_ours_MiBps'] / r['download_nginx_MiBps']:.2f} (goal >= 0.9)")
    print(f"upload    ours {r['upload_ours_MiBps']:8.0f} MiB/s   cp    {r['cp_MiBps']:8.0f}"
          f" MiB/s   ratio {r['upload_ours_MiBps'] / r['cp_MiBps']:.2f} (goal >= 0.8)")
    print(f"          (cp + fsync {r['cp_fsync_MiBps']:8.0f} MiB/s; ours includes fsync: ratio "
          f"{r['upload_ours_MiBps'] / r['cp_fsync_MiBps']:.2f})")
    print(f"          (disk floor, write + fsync from memory {r['floor_MiBps']:8.0f} MiB/s: no durable "
          f"upload can exceed {r['floor_MiBps'] / r['cp_MiBps']:.2f}x cp)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
