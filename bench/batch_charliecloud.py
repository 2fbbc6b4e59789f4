"""Overhead of `appliance run --runtime charliecloud` over a bare `ch-run` of the same image and
command, and against `appliance run` on Docker.

Baseline: `unshare -rn ch-run --private-tmp --unset-env='*' ROOTFS -- true` on the converted
image directory the runtime itself uses (so the conversion, done once per image ID, is not
timed). Ours: `appliance run --force -q --runtime charliecloud` of a recipe with the same image
and command (lock check, input hashing, record, output collection included), and the same on
Docker. Median of N each. Goal: charliecloud overhead <= +0.5 s.

    .venv/bin/python bench/batch_charliecloud.py [-n 7]
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
sys.path.insert(0, str(ROOT))
APPLIANCE = str(ROOT / ".venv" / "bin" / "appliance")


from recipe_overhead import timed  # noqa: E402  (bench/ is on sys.path when a bench runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=7)
    n = ap.parse_args().n
    from appliance.config import Settings
    from appliance.runtimes.charliecloud import create

    image = yaml.safe_load((ROOT / "images" / "images.lock").read_text())["images"]["base"]["image_id"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        t.chmod(0o755)
        tars = t / "tars"
        tars.mkdir()
        subprocess.run(["docker", "save", "-o", str(tars / "base.tar"), image], check=True)
        env = {**os.environ, "APPLIANCE_IMAGE_TARS": str(tars), "USER": os.environ.get("USER", "root")}
        rt = create(Settings.load(image_tars=tars))
        t0 = time.perf_counter()
        assert rt.has_image(image)  # converts once (timed apart)
        convert = time.perf_counter() - t0
        rootfs = rt.cache_dir / image.removeprefix("sha256:") / "rootfs"
        rec = t / "rec"
        rec.mkdir()
        (rec / "recipe.yaml").write_text(yaml.safe_dump({
            "name": "noop", "image": image, "command": ["true"], "outputs": []}))
        bare_cmd = ["unshare", "--user", "--map-root-user", "--net", "--", "ch-run", "--private-tmp",
                    "--unset-env=*", "--no-passwd", str(rootfs), "--", "true"]
        ours = {name: [APPLIANCE, "run", str(rec), "--force", "-q", "--home", str(t / "home"), "--runtime", name]
                for name in ("charliecloud", "docker")}
        for cmd in (bare_cmd, *ours.values()):  # warm up
            timed(cmd, env)
        bare = statistics.median(timed(bare_cmd, env) for _ in range(n))
        got = {name: statistics.median(timed(cmd, env) for _ in range(n)) for name, cmd in ours.items()}
    ch, dk = got["charliecloud"], got["docker"]
    print(f"median of {n}; conversion of the base image once: {convert:.1f} s")
    print(f"  bare ch-run                         : {bare:6.3f} s")
    print(f"  appliance run --runtime charliecloud: {ch:6.3f} s  (+{ch - bare:.3f} s over bare; goal <= +0.5 s)")
    print(f"  appliance run --runtime docker      : {dk:6.3f} s  (charliecloud/docker {ch / dk:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
