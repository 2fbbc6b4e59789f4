"""``pipeline products`` over N synthetic observations, the FFT classifier's accuracy, and the image
stage's completeness vs injected flux per detector.

Throughput: ``run_products`` (classify every file with the 2-D FFT, write per-observation XML and
the validated archive ``products.xml``) against a plain loop that only opens each FITS file and
reads its data (``astropy.io.fits``), both over the same generated archive, same worker count.
Goal: within 2x of the plain loop. Both wall time and CPU seconds (all processes) are reported,
with the load average: on a shared machine the wall-time ratio swings with the other load. Accuracy: the confusion table against ``truth.json`` (goal: no
error). Quality: ``run_image`` on the first M observations, completeness by S/N and flux ratio.

    .venv/bin/python bench/pipeline_products.py [--observations 1000] [--size 64] [--parallel 2]
                                                [--image-observations 30] [--detectors sextractor,aegean]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _open_folder(folder: str) -> int:
    import numpy as np
    from astropy.io import fits

    n = 0
    for f in sorted(Path(folder).iterdir()):
        if f.suffix.lower() == ".fits":
            with fits.open(f, memmap=False) as h:
                n += int(np.isfinite(h[0].data).any())
    return n


def cpu_s() -> float:
    """CPU seconds of this process and its waited-for children (the pools' workers, once joined):
    a figure that contention on a shared machine disturbs far less than wall time."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def plain_loop(root: Path, folders: list[str], parallel: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), cpu_s()
    with ProcessPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(_open_folder, [str(root / f) for f in folders], chunksize=8))
    return time.perf_counter() - t0, cpu_s() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--observations", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--image-observations", type=int, default=30)
    ap.add_argument("--detectors", default="sextractor,aegean")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    from appliance.pipeline.products import confusion, read_xml
    from appliance.pipeline.stages import list_observations, run_image, run_products
    from appliance.pipeline.synth import generate, load_truth

    out: dict = {"observations": a.observations, "size": a.size, "parallel": a.parallel}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root, work = Path(tmp) / "alma", Path(tmp) / "work"
        t0 = time.perf_counter()
        gen = generate(root, observations=a.observations, seed=a.seed, size=a.size)
        out["generate_s"] = round(time.perf_counter() - t0, 2)
        out["files"] = gen.files if hasattr(gen, "files") else None
        folders = list_observations(root)
        loop_s, loop_cpu = min(plain_loop(root, folders, a.parallel) for _ in range(2))  # warm page cache
        load = os.getloadavg()
        c0 = cpu_s()
        summary, xml = run_products(root, work, parallel=a.parallel, resume=False, progress=False)
        prod_s, prod_cpu = summary.seconds, cpu_s() - c0
        conf = confusion(read_xml(xml), load_truth(root))
        out.update({
            "plain_open_s": round(loop_s, 3), "plain_open_obs_per_s": round(len(folders) / loop_s, 1),
            "products_s": round(prod_s, 3), "products_obs_per_s": round(len(folders) / prod_s, 1),
            "ratio_products_over_plain": round(prod_s / loop_s, 2),
            "plain_open_cpu_s": round(loop_cpu, 2), "products_cpu_s": round(prod_cpu, 2),
            "cpu_ratio_products_over_plain": round(prod_cpu / loop_cpu, 2),
            "load_average": [round(x, 2) for x in load],
            "verdicts": {s: summary.count(s) for s in ("done", "flagged", "failed")},
            "classifier_errors": conf.errors, "confusion": conf.table,
            "flag_expected": conf.flag_expected, "flag_wrong": conf.flag_wrong,
        })
        if a.image_observations:
            sub = folders[: a.image_observations]
            dets = tuple(d for d in a.detectors.split(",") if d)
            t0 = time.perf_counter()
            isum, quality = run_image(root, work, detectors=dets, folders=sub, parallel=a.parallel,
                                      resume=False, progress=False)
            out["image"] = {"observations": len(sub), "seconds": round(time.perf_counter() - t0, 2),
                            "verdicts": {s: isum.count(s) for s in ("done", "flagged", "failed")},
                            "quality": quality.to_json()["detectors"] if quality else None}
            if quality:
                out["image_report"] = quality.report()
    if a.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        print(f"{a.observations} observations ({a.size}x{a.size}), {a.parallel} workers:")
        print(f"  plain open loop   {out['plain_open_s']:8.2f} s  {out['plain_open_obs_per_s']:8.1f} obs/s")
        print(f"  pipeline products {out['products_s']:8.2f} s  {out['products_obs_per_s']:8.1f} obs/s  "
              f"({out['ratio_products_over_plain']}x the plain loop; goal <= 2x)")
        print(f"  CPU (all processes) plain {out['plain_open_cpu_s']} s, products {out['products_cpu_s']} s "
              f"({out['cpu_ratio_products_over_plain']}x); load average before products "
              f"{' '.join(map(str, out['load_average']))}")
        print(f"  verdicts {out['verdicts']}; classifier errors {out['classifier_errors']} "
              f"(flag expected {out['flag_expected']}, wrong {out['flag_wrong']})")
        print(f"  confusion {json.dumps(out['confusion'])}")
        if "image" in out:
            print(f"  image on {out['image']['observations']} observations in {out['image']['seconds']} s, "
                  f"verdicts {out['image']['verdicts']}")
            print(out.get("image_report", ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
