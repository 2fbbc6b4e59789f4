"""`appliance batch` on the embedded LocalCluster vs a plain loop of `appliance run`, and the
scheduling overhead per item.

Baseline: `appliance run DIR -q` once per item, one after the other (what a shell loop does),
each item directory already locked (as the batch writes them).
Ours: `appliance batch RECIPE --inputs GLOB` over the same N trivial items (copy the input to
/output) on the default LocalCluster (one worker process per core), from a cold run store; each
side has its own home, so neither gets cache hits. Scheduling overhead: (a) a Dask round trip
per item (submit + result of a no-op task on the same kind of cluster, N tasks), (b) the
re-run of the batch where every item is a cache hit (derive + schedule + cache lookup), per item.
Goals: >= 1.8x on 2 cores, overhead < 50 ms per item.

    .venv/bin/python bench/batch_local.py [-n 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
APPLIANCE = str(ROOT / ".venv" / "bin" / "appliance")


def noop(i: int) -> int:
    return i


def dask_round_trip(n: int, workers: int) -> float:
    from distributed import Client, LocalCluster, wait

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        wait(client.map(noop, range(10), pure=False))  # warm up
        t = time.perf_counter()
        for f in [client.submit(noop, i, pure=False) for i in range(n)]:
            f.result()
        return (time.perf_counter() - t) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200)
    n = ap.parse_args().n
    import os

    from appliance.batch.items import derive

    cores = os.cpu_count() or 1
    image = yaml.safe_load((ROOT / "images" / "images.lock").read_text())["images"]["base"]["image_id"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        data = t / "data"
        data.mkdir()
        for i in range(n):
            (data / f"d{i:04}.txt").write_text(f"item {i}\n")
        rec = t / "rec"
        rec.mkdir()
        (rec / "seed.txt").write_text("seed\n")
        (rec / "recipe.yaml").write_text(yaml.safe_dump({
            "name": "trivial", "image": image, "inputs": [{"name": "data.txt", "uri": "seed.txt"}],
            "command": ["cp", "/input/data.txt", "/output/out.txt"], "outputs": [{"path": "out.txt"}]}))
        from appliance.config import Settings
        from appliance.runs.runner import Runner

        # the loop's items get their recipe.lock as the batch's do: both time runs, not locking
        base = Runner(Settings.load(home=t / "loop-home"), on_log=lambda line: None).lock(rec)
        items = derive(rec, t / "loop-items", "data.txt", [str(p) for p in sorted(data.iterdir())], base)
        start = time.perf_counter()
        for it in items:
            subprocess.run([APPLIANCE, "run", str(it.directory), "-q", "--home", str(t / "loop-home")],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        loop = time.perf_counter() - start
        cmd = [APPLIANCE, "batch", str(rec), "--inputs", str(data / "*.txt"), "--home", str(t / "batch-home"),
               "--json"]
        start = time.perf_counter()
        out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        batch = time.perf_counter() - start
        assert out["done"] == n and out["cache_hits"] == 0, out["failed"]
        start = time.perf_counter()
        again = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        rerun = time.perf_counter() - start
        assert again["cache_hits"] == n
    trip = dask_round_trip(n, cores)
    print(f"{n} trivial items, {cores} cores")
    print(f"  loop of appliance run : {loop:7.1f} s  ({loop / n * 1000:.0f} ms/item)")
    print(f"  appliance batch       : {batch:7.1f} s  ({batch / n * 1000:.0f} ms/item, cluster start included)")
    print(f"  speed-up              : {loop / batch:7.2f}x  (goal >= 1.8x)")
    print(f"  dask round trip       : {trip * 1000:7.1f} ms/item (goal < 50 ms)")
    print(f"  all-cache-hit re-run  : {rerun:7.1f} s  ({rerun / n * 1000:.0f} ms/item, cluster start included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
