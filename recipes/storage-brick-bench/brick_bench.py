"""Sequential and small-file throughput of one directory (the storage-brick benchmark recipe).

Why these three numbers: a BeeGFS storage brick serves large sequential streams (images, tape
staging) and metadata-heavy small files (catalog chunks, logs); a low-power brick can match a
server on the first and fall far behind on the second, which is what the comparison must show.
The page cache is dropped for the file (posix_fadvise DONTNEED after fsync) so reads hit the device.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path


def sequential(directory: Path, size_mb: int, block_kb: int) -> dict[str, float]:
    path = directory / "sequential.dat"
    block = os.urandom(block_kb * 1024)
    n = max(1, size_mb * 1024 // block_kb)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(n):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    write_s = time.perf_counter() - t0
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        t0 = time.perf_counter()
        while os.read(fd, block_kb * 1024):
            pass
        read_s = time.perf_counter() - t0
    finally:
        os.close(fd)
    path.unlink()
    mb = n * block_kb / 1024
    return {"bytes": n * block_kb * 1024, "write_mb_s": mb / write_s, "read_mb_s": mb / read_s}


def small_files(directory: Path, count: int, size_kb: int) -> dict[str, float]:
    d = directory / "small"
    d.mkdir()
    payload = os.urandom(size_kb * 1024)
    t0 = time.perf_counter()
    for i in range(count):
        with open(d / f"f{i:06d}", "wb") as f:
            f.write(payload)
    fd = os.open(d, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    create_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(count):
        (d / f"f{i:06d}").stat()
        with open(d / f"f{i:06d}", "rb") as f:
            f.read()
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    shutil.rmtree(d)
    delete_s = time.perf_counter() - t0
    return {"files": count, "create_per_s": count / create_s, "stat_read_per_s": count / read_s,
            "delete_per_s": count / delete_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", required=True, type=Path, help="directory on the mount to measure")
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--block-kb", type=int, default=1024)
    ap.add_argument("--small-files", type=int, default=2000)
    ap.add_argument("--small-kb", type=int, default=4)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    try:
        results = {"directory": str(a.dir), **sequential(a.dir, a.size_mb, a.block_kb),
                   **small_files(a.dir, a.small_files, a.small_kb)}
    finally:
        shutil.rmtree(a.dir, ignore_errors=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (a.out / "summary.txt").write_text(
        f"sequential write {results['write_mb_s']:.1f} MB/s, read {results['read_mb_s']:.1f} MB/s "
        f"({results['bytes'] / 2**20:.0f} MiB)\n"
        f"small files ({a.small_kb} KiB): create {results['create_per_s']:.0f}/s, "
        f"stat+read {results['stat_read_per_s']:.0f}/s, delete {results['delete_per_s']:.0f}/s\n")
    print((a.out / "summary.txt").read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
