"""Partitioner throughput (rows per CPU-second), peak RSS and the 2-worker speed-up, as in issue #18.

Uniform random rows over the whole sky (id, ra, dec, flux, flag; a CSV without header as
``sph-partition`` takes it), each run a separate process, output to tmpfs (/dev/shm) so the CPU,
not the disk, is measured. CPU = user + system of the run's process tree (os.wait4 / RUSAGE_CHILDREN),
peak RSS = the largest process of the tree.

Compared, in this script:
  ours      appliance qserv partition --input rows.csv --fields ... --pos ra,dec --id id
  read      baseline: pyarrow reading the same CSV and parsing ra/dec (what any partitioner must do)
  sph       Qserv's sph-partition on the same file, when --sph-partition PATH is given; otherwise the
            ratio is against the figures RECORDED IN ISSUE #18 (measured by the issue's reporter on
            this machine, not re-measured here: sph-partition cannot be built without Qserv's source)

Peak RSS flat in the number of rows (issue #18): give one grid at several row counts, e.g.
  --cases 1e7:340/3/0.01667,3e7:340/3/0.01667 --workers-case '' --repeat 2
and the last line compares the peaks (spread = (max - min) / min over the row counts of a grid).
With --repeat N each case runs N times: the least CPU and the largest peak RSS are reported.

The 2-worker speed-up (issue #18 asks >= 1.8x on 2 cores): --workers-case runs the case with
--workers 1 and 2 alternately (--repeat times each), prints each run's wall seconds with the
1-minute load average when it started, the ratio of the fastest runs, and the phases of those
(plan, pass1, index, pass2, finish; the rest of the wall is the interpreter's start-up and the
summary's write), and the machine's own ceiling: the same memory and tmpfs copying (what the
partitioner's profile is made of) in two processes against one. Another job on the machine makes
the ratio meaningless: before each run the bench waits (up to --wait s) for the load to fall to
--max-load, and marks runs started above it.

Usage: .venv/bin/python bench/qserv_partition.py [--cases 1e6:340/3/0.01667,1e6:85/12/0.1,1e7:340/3/0.01667]
       [--workers-case 1e7:340/3/0.01667] [--sph-partition PATH] [--repeat N] [--max-load L] [--wait S] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

REPO = Path(__file__).resolve().parents[1]
FIELDS = "id,ra,dec,flux,flag"
# issue #18's table: sph-partition rows per CPU-second (one process, output to tmpfs)
ISSUE_SPH = {("1e6", "340/3/0.01667"): 142_000, ("1e6", "85/12/0.1"): 176_000, ("1e7", "340/3/0.01667"): 419_000}


def make_csv(path: Path, rows: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            t = pa.table({
                "id": np.arange(start, start + n, dtype=np.int64),
                "ra": rng.uniform(0, 360, n),
                "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
                "flux": rng.lognormal(5, 1, n),
                "flag": (rng.uniform(0, 1, n) < 0.01).astype(np.int8),
            })
            sink = pa.BufferOutputStream()
            pacsv.write_csv(t, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
            fh.write(sink.getvalue().to_pybytes())


def run(cmd: list[str]) -> dict:
    """Run ``cmd`` as a child: wall, CPU (user + sys of it and its children), peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:  # files, not pipes: the JSON is MBs
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0), err.seek(0)  # type: ignore[func-returns-value]
        text, errtext = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {errtext[-2000:]}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024, "stdout": text}


def ours(src: Path, out: Path, grid: str, workers: int = 1) -> dict:
    s, ss, ov = grid.split("/")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "appliance.cli", "qserv", "partition", "--input", str(src), "--format", "csv", "--fields", FIELDS,
           "--pos", "ra,dec", "--id", "id", "--table", "Object", "--num-stripes", s, "--num-sub-stripes", ss, "--overlap", ov,
           "--workers", str(workers), "--out", str(out)]
    load = os.getloadavg()[0]
    r = run(cmd)
    r.pop("stdout")
    r["load_average"] = load
    summary = json.loads((out / "Object" / "partition.json").read_text())
    # peak RSS from the summary (the process's own VmHWM, its workers'): wait4's ru_maxrss of a
    # child started by posix_spawn/vfork includes this bench's own peak (exec keeps it)
    r["rss_mb_wait4"], r["rss_mb"] = r["rss_mb"], summary["peak_rss_mb"]
    r["files"], r["overlap_rows"] = summary["files"], summary["overlap_rows"]
    r["phases"], r["workers"] = summary.get("phases", {}), summary["workers"]
    shutil.rmtree(out, ignore_errors=True)
    return r


def sph(binary: str, src: Path, out: Path, grid: str) -> dict:
    s, ss, ov = grid.split("/")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [binary, "--in.path", str(src), "--in.csv.field", FIELDS, "--in.csv.delimiter", ",", "--part.pos", "ra,dec",
           "--part.id", "id", "--part.num-stripes", s, "--part.num-sub-stripes", ss, "--part.overlap", ov,
           "--mr.num-workers", "1", "--out.dir", str(out)]
    r = run(cmd)
    r.pop("stdout")
    shutil.rmtree(out, ignore_errors=True)
    return r


def read_baseline(src: Path) -> dict:
    """Reading and parsing the positions of the same CSV, single-threaded, in this process."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    opts = pacsv.ReadOptions(column_names=FIELDS.split(","), use_threads=False, block_size=8 << 20)
    conv = pacsv.ConvertOptions(include_columns=["ra", "dec"])
    n = 0
    with pacsv.open_csv(str(src), read_options=opts, convert_options=conv) as reader:
        for batch in reader:
            n += batch.num_rows
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), "rows": n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="1e6:340/3/0.01667,1e6:85/12/0.1,1e7:340/3/0.01667", help="ROWS:STRIPES/SUBSTRIPES/OVERLAP,...")
    p.add_argument("--workers-case", default="1e7:340/3/0.01667", help="case run with --workers 1 and 2 ('' to skip)")
    p.add_argument("--sph-partition", help="path to Qserv's sph-partition binary: measured side by side")
    p.add_argument("--tmp", default="/dev/shm" if Path("/dev/shm").is_dir() else None, help="scratch (default /dev/shm)")
    p.add_argument("--repeat", type=int, default=1, help="runs per case: least CPU, largest peak RSS (default 1)")
    p.add_argument("--max-load", type=float, default=1.5, help="--workers-case: wait for the 1-minute load to fall to this (default 1.5)")
    p.add_argument("--wait", type=float, default=120.0, help="--workers-case: seconds to wait for it at most, per run (default 120)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.repeat < 1:
        p.error(f"--repeat: expected a positive number of runs, got {a.repeat}")
    os.chdir(REPO)
    tmp = Path(tempfile.mkdtemp(prefix="qserv-part-bench-", dir=a.tmp))
    results = []
    try:
        cases = [c.split(":") for c in a.cases.split(",") if c]
        wc = a.workers_case.split(":") if a.workers_case else None
        for rows_s in sorted({c[0] for c in cases} | ({wc[0]} if wc else set()), key=float):
            src = tmp / f"rows_{rows_s}.csv"
            # in a child process: the rows generated here would otherwise raise this process's peak RSS,
            # which exec passes on to every child's ru_maxrss
            gen = mp.get_context("spawn").Process(target=make_csv, args=(src, int(float(rows_s))))
            gen.start()
            gen.join()
            if gen.exitcode != 0:
                raise SystemExit(f"generating {src} failed (exit {gen.exitcode})")
            base = read_baseline(src)
            for r_s, grid in [c for c in cases if c[0] == rows_s]:
                n = int(float(r_s))
                runs = [ours(src, tmp / "out", grid) for _ in range(a.repeat)]
                res = {"rows": n, "grid": grid, **min(runs, key=lambda r: r["cpu"]), "runs": len(runs),
                       "rss_mb": max(r["rss_mb"] for r in runs), "rss_mb_runs": [round(r["rss_mb"], 1) for r in runs]}
                res["rows_per_cpu_s"] = n / res["cpu"]
                res["read_rows_per_cpu_s"] = n / base["cpu"]
                if a.sph_partition:
                    s = sph(a.sph_partition, src, tmp / "sph", grid)
                    res.update(sph_source="measured here", sph_rows_per_cpu_s=n / s["cpu"], sph_rss_mb=s["rss_mb"])
                elif (r_s, grid) in ISSUE_SPH:
                    res.update(sph_source="issue #18 (recorded)", sph_rows_per_cpu_s=ISSUE_SPH[(r_s, grid)])
                if "sph_rows_per_cpu_s" in res:
                    res["vs_sph"] = res["rows_per_cpu_s"] / res["sph_rows_per_cpu_s"]
                results.append(res)
            if wc and wc[0] == rows_s:
                results.append(workers_case(src, tmp / "out", int(float(rows_s)), wc[1], a.repeat, a.max_load, a.wait))
            src.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    flat = _flatness(results)
    if a.json:
        print(json.dumps({"cases": results, "rss_flatness": flat}, indent=2))
        return
    for r in results:
        if "speedup_2_workers" in r:
            print_workers_case(r)
            continue
        line = (f"{r['rows']:.0e} {r['grid']}: {r['rows_per_cpu_s']:,.0f} rows/CPU-s ({r['cpu']:.1f} CPU-s, {r['wall']:.1f} s wall), "
                f"peak RSS {r['rss_mb']:.0f} MB, {r['files']} files; = {r['rows_per_cpu_s'] / r['read_rows_per_cpu_s']:.2f}x the CSV read baseline "
                f"({r['read_rows_per_cpu_s']:,.0f} rows/CPU-s)")
        if "vs_sph" in r:
            line += f"; {r['vs_sph']:.2f}x sph-partition ({r['sph_rows_per_cpu_s']:,.0f}, {r['sph_source']})"
        print(line)
    for f in flat:
        print(f"{f['grid']}: peak RSS {', '.join(f'{mb:.0f} MB at {rows:.0e}' for rows, mb in f['rss_mb_by_rows'])} rows: "
              f"spread {100 * f['spread']:.1f} %")


def _wait_for_load(max_load: float, wait: float) -> float:
    """The 1-minute load average once it is at most ``max_load``, or after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while (load := os.getloadavg()[0]) > max_load and time.monotonic() < deadline:
        time.sleep(5)
    return load


def _probe_copy(kind: str, tmp: str, tag: int) -> float:
    """Wall seconds of a fixed amount of copying, buffers allocated and touched first: 'memory'
    (numpy copies of a 64 MB buffer, far beyond the 4 MB L2) or 'tmpfs' (16 MB written to and read
    back from a file in ``tmp``)."""
    if kind == "memory":
        a = np.ones(64 << 20, dtype=np.uint8)
        b = np.zeros_like(a)
        b[:] = 1
        t0 = time.perf_counter()
        for _ in range(40):
            np.copyto(b, a)
    else:
        data, path = os.urandom(1 << 20) * 16, Path(tmp) / f"probe-{tag}.bin"
        t0 = time.perf_counter()
        for _ in range(30):
            path.write_bytes(data)
            path.read_bytes()
        path.unlink()
    return time.perf_counter() - t0


def machine_ceiling(tmp: Path, repeat: int = 3) -> dict[str, float]:
    """How much faster two processes do twice the work of one, for the copies the partitioner is made
    of (its profile: memmove, the kernel's tmpfs copies): the machine's own 2-process ceiling (pure
    computation scales about 2x here). The fastest of ``repeat`` runs each way: the figure swings
    with what else shares the host's memory system."""
    out = {}
    with mp.get_context("spawn").Pool(2) as pool:
        for kind in ("memory", "tmpfs"):
            pool.apply(_probe_copy, (kind, str(tmp), 0))  # warm: imports, page cache
            one = min(pool.apply(_probe_copy, (kind, str(tmp), 0)) for _ in range(repeat))
            two = min(max(j.get() for j in [pool.apply_async(_probe_copy, (kind, str(tmp), i)) for i in (0, 1)])
                      for _ in range(repeat))
            out[kind] = 2 * one / two
    return out


def workers_case(src: Path, out: Path, rows: int, grid: str, repeat: int, max_load: float, wait: float) -> dict:
    """--workers 1 and 2 alternately, ``repeat`` times each: every run's wall and load, the fastest of each."""
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(repeat):
        for w in (1, 2):
            _wait_for_load(max_load, wait)
            runs[w].append(ours(src, out, grid, w))
    one, two = (min(runs[w], key=lambda r: r["wall"]) for w in (1, 2))
    _wait_for_load(max_load, wait)
    ceiling = machine_ceiling(out.parent)
    return {"machine_2_process_speedup": ceiling, "rows": rows, "grid": grid, "workers_1_wall": one["wall"], "workers_2_wall": two["wall"],
            "speedup_2_workers": one["wall"] / two["wall"], "workers_1_cpu": one["cpu"], "workers_2_cpu": two["cpu"],
            "workers_1_rss_mb": one["rss_mb"], "workers_2_rss_mb": two["rss_mb"],
            "workers_1_phases": one["phases"], "workers_2_phases": two["phases"],
            "load_average": max(one["load_average"], two["load_average"]), "max_load": max_load,
            "runs": {str(w): [{"wall": round(r["wall"], 2), "cpu": round(r["cpu"], 2), "load_average": r["load_average"]} for r in rs]
                     for w, rs in runs.items()}}


def print_workers_case(r: dict) -> None:
    for w in ("1", "2"):
        print(f"  --workers {w} runs: " + ", ".join(f"{x['wall']:.2f} s (load {x['load_average']:.2f})" for x in r["runs"][w]))
    names = [k for k in r["workers_1_phases"] if k in r["workers_2_phases"]]
    for w in (1, 2):
        ph = r[f"workers_{w}_phases"]
        rest = r[f"workers_{w}_wall"] - sum(ph.values())
        print(f"  --workers {w}: {r[f'workers_{w}_wall']:.2f} s wall, {r[f'workers_{w}_cpu']:.2f} CPU-s, peak RSS {r[f'workers_{w}_rss_mb']:.0f} MB; "
              + ", ".join(f"{k} {ph[k]:.2f}" for k in names) + f", start-up and summary {rest:.2f} s")
    loaded = " (LOADED: a run started above the load limit; re-run)" if r["load_average"] > r["max_load"] else ""
    print(f"{r['rows']:.0e} {r['grid']}: --workers 2 {r['workers_2_wall']:.2f} s vs 1 worker {r['workers_1_wall']:.2f} s wall = "
          f"{r['speedup_2_workers']:.2f}x (load average {r['load_average']:.2f} on {os.cpu_count()} cores){loaded}")
    c = r["machine_2_process_speedup"]
    print(f"  this machine, the same copying in two processes vs one: memory {c['memory']:.2f}x, tmpfs write+read "
          f"{c['tmpfs']:.2f}x (the ceiling for copy-bound work; pure computation scales about 2x)")


def _flatness(results: list[dict]) -> list[dict]:
    """Per grid run at two or more row counts: the peak RSS at each and its spread (max - min) / min."""
    by_grid: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        if "rss_mb" in r and "speedup_2_workers" not in r:
            by_grid.setdefault(r["grid"], []).append((r["rows"], r["rss_mb"]))
    out = []
    for grid, pts in by_grid.items():
        if len({rows for rows, _ in pts}) > 1:
            mbs = [mb for _, mb in pts]
            out.append({"grid": grid, "rss_mb_by_rows": sorted(pts), "spread": (max(mbs) - min(mbs)) / min(mbs)})
    return out


if __name__ == "__main__":
    main()
