"""HTTP(S) from the project's archive server: ``dataclient get`` (adler32 verified end to end
against the archive's Digest, fsync, atomic rename) against ``curl`` (no checksum), same server,
same 1 GiB file; then 16 files of 64 MiB with ``--parallel 16`` against ``--parallel 1``.

    .venv/bin/python bench/transfer_http.py [--size-mib 1024] [--runs 2] [--backend auto|http|gfal2]

The server runs in this process (TLS with a test CA, files under the anonymously readable
/public, real clock); clients are separate processes, each started after a global sync. Prints
medians and ratios: durable against durable (dataclient fsyncs before the rename by default, curl
never does, so the baseline is curl + fsync of its file), page cache against page cache
(``--no-fsync``), and the raw one of the issue (goal >= 0.9); parallel against sequential.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from transfer_common import DATACLIENT, disk_floor, load, make_file, ratios, summary, timed

from tests.pki import make_pki


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--files", type=int, default=16, help="files for the parallel test")
    ap.add_argument("--file-mib", type=int, default=64)
    ap.add_argument("--backend", default="http", choices=("auto", "http", "gfal2"))
    args = ap.parse_args()
    from archive.config import load_config
    from archive.server import serve_in_thread

    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    running = None
    try:
        pki = make_pki(work / "pki")
        cfg = load_config(None, env={}, **{
            "root": str(work / "lta"),
            "server": {"port": 0, "tls_cert": str(pki.host_cert), "tls_key": str(pki.host_key),
                       "ca_dir": str(pki.cert_dir)},
            "cache": {"capacity_bytes": 64 * 2**30},
            "migration": {"max_age_seconds": 3600},
            "auth": {"public_read": ["/public"]},
        })
        running = serve_in_thread(cfg)
        size = args.size_mib << 20
        src = work / "src.bin"
        make_file(src, size)
        running.archive.ingest_local(src, "/public/big.bin", owner="bench")
        small = args.file_mib << 20
        for i in range(args.files):
            make_file(src, small)
            running.archive.ingest_local(src, f"/public/set/f{i:02d}.bin", owner="bench")
        src.unlink()
        url = running.url + "/public/big.bin"
        env = {**os.environ, "HOME": str(work), "X509_USER_PROXY": str(work / "none"),
               "BEARER_TOKEN_FILE": str(work / "none"), "X509_CERT_DIR": str(pki.cert_dir),
               "XDG_RUNTIME_DIR": str(work)}
        env.pop("BEARER_TOKEN", None)
        out = work / "out"
        out.mkdir()
        dc_get = [DATACLIENT, "get", "--no-progress", "--backend", args.backend]
        curl = ["curl", "-sS", "-f", "--capath", str(pki.cert_dir), "-o"]
        timed([*curl, str(out / "warm"), url], env)
        (out / "warm").unlink()
        floor, base, base_fsync, ours, nosync = [], [], [], [], []
        cb, dc = out / "curl.bin", out / "dc.bin"
        for _ in range(args.runs):
            floor.append(disk_floor(out / "floor.bin", size))
            base.append(timed([*curl, str(cb), url], env))
            cb.unlink()
            base_fsync.append(timed([*curl, str(cb), url], env, fsync=cb))
            cb.unlink()
            ours.append(timed([*dc_get, url, str(dc)], env))
            dc.unlink()
            nosync.append(timed([*dc_get, "--no-fsync", url, str(dc)], env))
            dc.unlink()
        print(f"HTTPS {args.size_mib} MiB from the archive server on 127.0.0.1, dataclient backend "
              f"{args.backend} ({load()})")
        print(summary("curl (no checksum)", base, size))
        print(summary("curl + fsync", base_fsync, size))
        print(summary("dataclient get (adler32)", ours, size))
        print(summary("dataclient get --no-fsync", nosync, size))
        print(summary("disk floor (write + fsync)", floor, size))
        print(ratios(base, base_fsync, ours, nosync, floor, "curl", 0.9))
        urls = [f"{running.url}/public/set/f{i:02d}.bin" for i in range(args.files)]
        seq, par = [], []
        for _ in range(1):
            for target, n in ((seq, 1), (par, args.files)):
                dest = out / f"p{n}"
                dest.mkdir()
                target.append(timed([*dc_get, "--parallel", str(n), *urls, str(dest) + "/"], env))
                shutil.rmtree(dest)
        total = small * args.files
        print(summary(f"{args.files}x{args.file_mib} MiB --parallel 1", seq, total))
        print(summary(f"{args.files}x{args.file_mib} MiB --parallel {args.files}", par, total))
        print(f"speed-up parallel/sequential: {statistics.median(seq) / statistics.median(par):.2f}x")
        return 0
    finally:
        if running:
            running.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
