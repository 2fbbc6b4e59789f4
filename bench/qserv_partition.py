"""Partitioning throughput and peak memory on synthetic rows (default 1e7), with two baselines.

Measured on the same data in this script:
  core      Chunker.locate_all (chunk + sub-chunk + every overlap location), numpy, one core
  read      baseline 1: reading the same rows' RA/Dec from Parquet (raw numpy read)
  sphgeom   baseline 2: lsst.sphgeom per-row chunk lookup (getSubChunksIntersecting on a
            tiny circle per row; the only per-position lookup sphgeom offers), on a sample
  e2e       Parquet in -> chunk_<id>.txt / _overlap.txt CSV out (partition_table), in a child
            process so its peak RSS is its own

Usage: .venv/bin/python bench/qserv_partition.py [--rows N] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_parquet(path: Path, rows: int, seed: int = 1) -> None:
    """A 30 x 30 deg region around (RA 10, Dec -20), crossing RA 0 (like a survey tract set)."""
    rng = np.random.default_rng(seed)
    writer = None
    step = 1_000_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        ra = np.mod(rng.uniform(-15, 15, n) + 10, 360)
        dec = rng.uniform(-35, -5, n)
        t = pa.table(
            {
                "objectId": np.arange(start, start + n, dtype=np.int64),
                "coord_ra": ra,
                "coord_dec": dec,
                "r_psfFlux": rng.lognormal(5, 1, n),
                "r_psfFlux_flag": rng.uniform(0, 1, n) < 0.01,
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(str(path), t.schema)
        writer.write_table(t)
    writer.close()


def _e2e(args: tuple[str, str, int]) -> dict:
    from appliance.qserv.chunker import Chunker
    from appliance.qserv.felis_schema import ColumnSchema, TableSchema
    from appliance.qserv.partition import partition_table

    src, out, batch = args
    cols = [
        ColumnSchema("objectId", "long", False),
        ColumnSchema("coord_ra", "double", False),
        ColumnSchema("coord_dec", "double", False),
        ColumnSchema("r_psfFlux", "double"),
        ColumnSchema("r_psfFlux_flag", "boolean", False),
    ]
    table = TableSchema("Object", cols, "objectId", ra="coord_ra", dec="coord_dec")
    s = partition_table(src, table, out, Chunker(), batch_rows=batch)
    return {
        "rows": s.rows,
        "seconds": s.seconds,
        "overlap_rows": s.overlap_rows,
        "chunks": sum(1 for v in s.chunks.values() if v["rows"]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--quick", action="store_true", help="1e6 rows")
    p.add_argument("--batch-rows", type=int, default=1_000_000)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    rows = 1_000_000 if a.quick else a.rows

    from appliance.qserv.chunker import Chunker

    tmp = Path(tempfile.mkdtemp(prefix="qserv-bench-"))
    try:
        src = tmp / "rows.parquet"
        make_parquet(src, rows)
        # baseline 1: raw read of RA/Dec
        t0 = time.perf_counter()
        pf = pq.ParquetFile(str(src))
        n_read = 0
        for b in pf.iter_batches(batch_size=a.batch_rows, columns=["coord_ra", "coord_dec"]):
            ra = b.column(0).to_numpy()
            n_read += ra.size
        t_read = time.perf_counter() - t0
        # core: locate_all over the same batches (includes the read)
        ch = Chunker()
        t0 = time.perf_counter()
        n_ov = 0
        for b in pf.iter_batches(batch_size=a.batch_rows, columns=["coord_ra", "coord_dec"]):
            loc = ch.locate_all(b.column(0).to_numpy(), b.column(1).to_numpy())
            n_ov += loc.overlap_row.size
        t_core = time.perf_counter() - t0
        # baseline 2: sphgeom per-row lookup on a sample
        import lsst.sphgeom as sg

        sgc = sg.Chunker(340, 3)
        sample = next(pf.iter_batches(batch_size=20_000, columns=["coord_ra", "coord_dec"]))
        sra, sdec = sample.column(0).to_numpy(), sample.column(1).to_numpy()
        eps = sg.Angle.fromDegrees(1e-9)
        t0 = time.perf_counter()
        for r, d in zip(sra, sdec, strict=True):
            sgc.getSubChunksIntersecting(sg.Circle(sg.UnitVector3d(sg.LonLat.fromDegrees(r, d)), eps))
        t_sg = time.perf_counter() - t0
        # end to end in a child process (its own peak RSS)
        ctx = mp.get_context("spawn")
        with ctx.Pool(1) as pool:
            e2e = pool.apply(_e2e, ((str(src), str(tmp / "out"), a.batch_rows),))
        res = {
            "rows": rows,
            "read_rows_per_s": n_read / t_read,
            "core_rows_per_s": rows / t_core,
            "core_overlap_locations": int(n_ov),
            "sphgeom_rows_per_s": sra.size / t_sg,
            "core_vs_sphgeom": (rows / t_core) / (sra.size / t_sg),
            "core_vs_read": (rows / t_core) / (n_read / t_read),
            "e2e_rows_per_s": e2e["rows"] / e2e["seconds"],
            "e2e_seconds": e2e["seconds"],
            "e2e_chunks": e2e["chunks"],
            "e2e_overlap_rows": e2e["overlap_rows"],
            "e2e_peak_rss_mb": e2e["peak_rss_mb"],
            "output_mb": sum(f.stat().st_size for f in (tmp / "out" / "Object").glob("chunk_*")) / 1e6,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(res, indent=2))
        return
    print(f"rows: {rows:,} (30x30 deg region across RA 0; 340 stripes, 3 sub-stripes, overlap 1 arcmin)")
    print(f"baseline read (Parquet -> numpy RA/Dec): {res['read_rows_per_s']:,.0f} rows/s")
    print(f"baseline lsst.sphgeom per-row lookup:    {res['sphgeom_rows_per_s']:,.0f} rows/s")
    print(f"core locate_all incl. overlaps (1 core): {res['core_rows_per_s']:,.0f} rows/s "
          f"= {res['core_vs_sphgeom']:.0f}x sphgeom per-row, {res['core_vs_read']:.2f}x raw read")
    print(f"end to end (CSV chunk files written):    {res['e2e_rows_per_s']:,.0f} rows/s, {res['e2e_seconds']:.1f} s, "
          f"{res['e2e_chunks']} chunks, {res['e2e_overlap_rows']:,} overlap rows, {res['output_mb']:.0f} MB, "
          f"peak RSS {res['e2e_peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
