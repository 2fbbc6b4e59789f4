"""Storage-brick benchmark: the recipe recipes/storage-brick-bench run through the appliance on a
directory, against the same measurement run directly on the host (baseline, same script).

The ratio shows what the containerised run costs (it should be ~1: the recipe writes to a bind
mount, so the numbers are the brick's, not the container's). Point --dir at a BeeGFS mount or at
a low-power brick's disk to compare bricks with identical code and image.

  .venv/bin/python bench/cluster_brick.py [--dir /mnt/beegfs/bench] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "storage-brick-bench"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, help="directory on the mount to measure (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="64 MiB and 500 small files")
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="brick-", dir=a.dir))
    try:
        recipe = RECIPE
        if a.quick:  # a copy of the recipe with smaller parameters
            recipe = base / "recipe"
            shutil.copytree(RECIPE, recipe)
            text = (recipe / "recipe.yaml").read_text().replace("size_mb: 256", "size_mb: 64") \
                .replace("small_files: 2000", "small_files: 500")
            (recipe / "recipe.yaml").write_text(text)
            subprocess.run([sys.executable, "-m", "appliance.cli", "lock", str(recipe)], check=True,
                           capture_output=True, cwd=REPO)
        size, files = (64, 500) if a.quick else (256, 2000)
        host_out = base / "host"
        subprocess.run([sys.executable, str(RECIPE / "brick_bench.py"), "--dir", str(base / "scratch"),
                        "--size-mb", str(size), "--small-files", str(files), "--out", str(host_out)],
                       check=True, capture_output=True)
        host = json.loads((host_out / "results.json").read_text())
        out_dir = base / "recipe-out"
        p = subprocess.run([sys.executable, "-m", "appliance.cli", "run", "--force", "-q", "--home",
                            str(base / "home"), "-o", str(out_dir), str(recipe)],
                           capture_output=True, text=True, cwd=REPO)
        if p.returncode:
            print(p.stdout, p.stderr, file=sys.stderr)
            return p.returncode
        rec = json.loads((out_dir / "results.json").read_text())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    keys = ("write_mb_s", "read_mb_s", "create_per_s", "stat_read_per_s", "delete_per_s")
    print(f"{'metric':<16} {'recipe':>10} {'host':>10} {'ratio':>6}")
    for k in keys:
        print(f"{k:<16} {rec[k]:>10.1f} {host[k]:>10.1f} {rec[k] / host[k]:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
