"""Overhead of `appliance run` over a bare `docker run` of the same image and command.

Baseline: `docker run --rm --network none --read-only --user 65534:65534 IMAGE true`.
Ours: `appliance run --force -q` of a recipe with the same image and command (lock, input hashing,
record, output collection included), and `appliance run` on a cache hit. Median of N runs each,
all in this script on this machine. Goals: overhead <= +0.5 s, cache hit <= 0.2 s.

    .venv/bin/python bench/recipe_overhead.py [-n 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
APPLIANCE = str(ROOT / ".venv" / "bin" / "appliance")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=7)
    n = ap.parse_args().n
    lock = yaml.safe_load((ROOT / "images" / "images.lock").read_text())
    image = lock["images"]["base"]["image_id"]
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "trivial"
        recipe.mkdir()
        (recipe / "in.txt").write_text("x\n")
        (recipe / "recipe.yaml").write_text(yaml.safe_dump({
            "name": "trivial", "image": image, "inputs": [{"name": "in.txt", "uri": "in.txt"}],
            "command": ["true"]}))
        env = {**os.environ, "APPLIANCE_HOME": str(Path(tmp) / "home")}
        subprocess.run([APPLIANCE, "lock", str(recipe)], check=True, env=env, stdout=subprocess.DEVNULL)
        bare_cmd = ["docker", "run", "--rm", "--network", "none", "--read-only", "--user", "65534:65534",
                    image, "true"]
        ours_cmd = [APPLIANCE, "run", "--force", "-q", str(recipe)]
        hit_cmd = [APPLIANCE, "run", "-q", str(recipe)]
        timed(bare_cmd, env), timed(ours_cmd, env)  # warm caches
        bare = [timed(bare_cmd, env) for _ in range(n)]
        ours = [timed(ours_cmd, env) for _ in range(n)]
        hits = [timed(hit_cmd, env) for _ in range(n)]
    mb, mo, mh = statistics.median(bare), statistics.median(ours), statistics.median(hits)
    print(f"bare docker run      median {mb:.3f} s  (n={n})")
    print(f"appliance run        median {mo:.3f} s  overhead {mo - mb:+.3f} s  ratio {mo / mb:.2f}x  "
          f"(goal <= +0.5 s: {'met' if mo - mb <= 0.5 else 'NOT met'})")
    print(f"appliance cache hit  median {mh:.3f} s  ratio to bare run {mh / mb:.2f}x  "
          f"(goal <= 0.2 s: {'met' if mh <= 0.2 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
