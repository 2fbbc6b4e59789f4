"""What running a pipeline stage in the locked ``stages`` image costs against running it on the host.

The same generated archive, the same items, the same worker count: ``run_products`` and
``run_image`` with ``runtime=host`` (this process and its workers) and ``runtime=docker`` (one
container per run: job area with the code snapshot, container create/start/wait/remove, the
items inside), alternated ``--repeat`` times in fresh work areas; the best wall time of each is
compared (ratio docker/host) and the fixed cost per run (docker - host) is printed, with the load
average. Outputs are checked equal (verdicts and every output's sha256 in the two run records).

    .venv/bin/python bench/pipeline_container.py [--observations 300] [--image-observations 20]
                                                 [--parallel 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--observations", type=int, default=300)
    ap.add_argument("--image-observations", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--runtime", default="docker", help="the container runtime to compare with the host")
    a = ap.parse_args()

    from appliance.pipeline.stages import list_observations, run_image, run_products
    from appliance.pipeline.synth import generate
    from appliance.runs.record import RunStore

    with tempfile.TemporaryDirectory(prefix="bench-container-") as tmp:
        t = Path(tmp)
        os.environ["APPLIANCE_HOME"] = str(t / "home")
        root = t / "root"
        generate(root, observations=a.observations, seed=5, size=a.size)
        few = list_observations(root)[: a.image_observations]
        best: dict[tuple[str, str], float] = {}
        outputs: dict[tuple[str, str], dict[str, str]] = {}
        for rep in range(a.repeat):
            for runtime in ("host", a.runtime) if rep % 2 == 0 else (a.runtime, "host"):
                work = t / f"work-{runtime}-{rep}"
                t0 = time.perf_counter()
                s, _ = run_products(root, work, parallel=a.parallel, progress=False, runtime=runtime)
                t1 = time.perf_counter()
                s2, _ = run_image(root, work, folders=few, detectors=("sextractor", "aegean"),
                                  parallel=a.parallel, progress=False, runtime=runtime)
                t2 = time.perf_counter()
                for stage, secs, summ in (("products", t1 - t0, s), ("image", t2 - t1, s2)):
                    key = (stage, runtime)
                    best[key] = min(best.get(key, secs), secs)
                    rec = RunStore(t / "home").load(summ.run_id)
                    outputs[key] = {o.name: o.sha256 for o in rec.outputs
                                    if not o.name.endswith(".fits") and o.compare != "ignore"}
        load = os.getloadavg()
        print(f"archive: {a.observations} observations ({a.size} px), image stage on {len(few)}; "
              f"{a.parallel} workers; best of {a.repeat}; load average {load[0]:.2f} {load[1]:.2f}")
        print(f"{'stage':<10}{'host s':>9}{a.runtime + ' s':>11}{'ratio':>8}{'fixed cost s':>14}  outputs")
        for stage, n in (("products", a.observations), ("image", len(few))):
            h, c = best[(stage, "host")], best[(stage, a.runtime)]
            same = "identical" if outputs[(stage, "host")] == outputs[(stage, a.runtime)] else "DIFFER"
            print(f"{stage:<10}{h:>9.2f}{c:>11.2f}{c / h:>8.2f}{c - h:>14.2f}  {same} ({n} items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
