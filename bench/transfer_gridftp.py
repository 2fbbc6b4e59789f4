"""1 GiB over GridFTP: ``dataclient get`` (adler32 verified end to end, fsync, atomic rename)
against ``globus-url-copy`` (no checksum) from the same Globus GridFTP server on 127.0.0.1.

    .venv/bin/python bench/transfer_gridftp.py [--size-mib 1024] [--runs 2]

Runs alternate (baseline, baseline + fsync, baseline in MODE E, ours, ours without fsync) so
machine noise hits all; each starts after a global sync. Prints the medians and the ratios in throughput: durable against
durable (dataclient fsyncs before the rename by default; globus-url-copy never does), page cache
against page cache (``--no-fsync``), and the raw one of the issue (goal >= 0.95). The proxy is made
by dataclient's own code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from transfer_common import DATACLIENT, disk_floor, load, make_file, ratios, summary, timed

from appliance.dataclient.proxy import create_proxy
from tests.appliance.transfer.servers import GridFTPServer
from tests.pki import make_pki


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="bench-gridftp-", dir="/tmp"))
    os.chmod(work, 0o755)
    server = None
    try:
        pki = make_pki(work / "pki")
        proxy = work / "x509up"
        create_proxy(pki.user_cert, pki.user_key, proxy, hours=2)
        server = GridFTPServer(pki, work)
        server.start()
        make_file(server.data / "big.bin", size)
        url = server.url("big.bin")
        env = {**os.environ, "X509_USER_PROXY": str(proxy), "X509_CERT_DIR": str(pki.cert_dir),
               "HOME": str(work), "BEARER_TOKEN_FILE": str(work / "none")}
        env.pop("BEARER_TOKEN", None)
        out = work / "out"
        out.mkdir()
        floor, base, base_fsync, base_fast, ours, nosync = [], [], [], [], [], []
        timed(["globus-url-copy", url, (out / "warm").as_uri()], env)  # page cache, sessions
        (out / "warm").unlink()
        guc, dc = out / "guc.bin", out / "dc.bin"
        for _ in range(args.runs):
            floor.append(disk_floor(out / "floor.bin", size))
            base.append(timed(["globus-url-copy", url, guc.as_uri()], env))
            guc.unlink()
            base_fsync.append(timed(["globus-url-copy", url, guc.as_uri()], env, fsync=guc))
            guc.unlink()
            base_fast.append(timed(["globus-url-copy", "-fast", url, guc.as_uri()], env))
            guc.unlink()
            ours.append(timed([DATACLIENT, "get", url, str(dc), "--no-progress"], env))
            dc.unlink()
            nosync.append(timed([DATACLIENT, "get", url, str(dc), "--no-progress", "--no-fsync"], env))
            dc.unlink()
        print(f"GridFTP {args.size_mib} MiB from globus-gridftp-server on 127.0.0.1 ({load()})")
        print(summary("globus-url-copy (no checksum)", base, size))
        print(summary("globus-url-copy + fsync", base_fsync, size))
        print(summary("globus-url-copy -fast", base_fast, size)
              + "  (MODE E, as dataclient runs it)")
        print(summary("dataclient get (adler32)", ours, size))
        print(summary("dataclient get --no-fsync", nosync, size))
        print(summary("disk floor (write + fsync)", floor, size))
        print(ratios(base, base_fsync, ours, nosync, floor, "globus-url-copy", 0.95))
        return 0
    finally:
        if server:
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
