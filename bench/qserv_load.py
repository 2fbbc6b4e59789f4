"""Load throughput into MariaDB (LOAD DATA LOCAL INFILE) and the verify suite's run time.

A private mariadbd (appliance.qserv.localdb) on 127.0.0.1; a generated cluster field scaled by
--scale; measured in this script:
  reference   all rows into plain tables (rows/s)
  chunked     every chunk and overlap file into per-chunk tables (rows/s, incl. overlap rows)
  baseline    the same Object rows with pymysql executemany(INSERT ...) (rows/s), on a sample
  verify      the 8-query suite, reference vs. merged per-chunk results (seconds)

Usage: .venv/bin/python bench/qserv_load.py [--scale N] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def converted_field(tmp: Path, scale: int):  # noqa: ANN201 - a Felis schema
    """The generated cluster field scaled by ``scale``, converted under ``tmp/conv``; its schema."""
    from appliance.qserv.convert import TableInput, convert_tables
    from appliance.qserv.felis_schema import load_schema
    from appliance.qserv.generate import FieldSpec, write_field

    spec = FieldSpec(n_members=400 * scale, n_background=6000 * scale, n_stars=300 * scale, radius=0.4 * scale**0.5)
    write_field(spec, tmp / "field")
    convert_tables(
        "cluster",
        [
            TableInput("Object", [str(tmp / "field" / "Object.fits")]),
            TableInput("Source", sorted(glob.glob(str(tmp / "field" / "Source_*.fits"))), director="Object", director_key="objectId"),
        ],
        tmp / "conv",
    )
    return load_schema(tmp / "conv" / "schema.yaml")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=6, help="multiplies the default field's galaxy counts (default 6)")
    p.add_argument("--quick", action="store_true", help="scale 2")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    scale = 2 if a.quick else a.scale

    from appliance.qserv.chunker import Chunker
    from appliance.qserv.load import create_table_sql, load_chunked, load_reference
    from appliance.qserv.localdb import LocalMariaDB
    from appliance.qserv.partition import partition_table
    from appliance.qserv.verify import run_suite

    tmp = Path(tempfile.mkdtemp(prefix="qserv-load-bench-"))
    server = LocalMariaDB(tmp / "db")
    try:
        schema = converted_field(tmp, scale)
        for t in ("Object", "Source"):
            partition_table(tmp / "conv" / f"{t}.parquet", schema.table(t), tmp / "parts", Chunker())
        cfg = server.start()
        ref = load_reference(cfg, schema, tmp / "conv")
        chk = load_chunked(cfg, schema, tmp / "parts")
        # baseline: executemany INSERT of a sample of Object rows
        obj = schema.table("Object")
        sample = pq.read_table(tmp / "conv" / "Object.parquet").slice(0, 20_000)
        rows = [tuple(r.values()) for r in sample.to_pylist()]
        conn = cfg.connect("cluster")
        with conn.cursor() as cur:
            cur.execute(create_table_sql(obj, "Object_insert", chunked=False))
            cols = ", ".join(f"`{c}`" for c in obj.column_names())
            marks = ", ".join(["%s"] * len(obj.column_names()))
            t0 = time.perf_counter()
            cur.executemany(f"INSERT INTO `Object_insert` ({cols}) VALUES ({marks})", rows)
            t_ins = time.perf_counter() - t0
        conn.close()
        ver = run_suite(cfg, "cluster", "cluster_chunks", None, Chunker())
        res = {
            "objects": ref.tables["Object"],
            "sources": ref.tables["Source"],
            "chunks": ver.chunks,
            "reference_rows_per_s": ref.rows_per_second,
            "chunked_rows_per_s": chk.rows_per_second,
            "chunked_files": chk.files,
            "insert_baseline_rows_per_s": len(rows) / t_ins,
            "load_vs_insert": ref.rows_per_second / (len(rows) / t_ins),
            "verify_seconds": ver.seconds,
            "verify_ok": ver.ok,
            "verify_queries": {o.name: [round(o.seconds_reference, 3), round(o.seconds_chunked, 3)] for o in ver.outcomes},
        }
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(res, indent=2))
        return
    print(f"field: {res['objects']:,} objects, {res['sources']:,} sources, {res['chunks']} chunks")
    print(f"baseline executemany INSERT:     {res['insert_baseline_rows_per_s']:,.0f} rows/s")
    print(f"reference LOAD DATA LOCAL:       {res['reference_rows_per_s']:,.0f} rows/s = {res['load_vs_insert']:.1f}x INSERT")
    print(f"chunked (incl. overlap files):   {res['chunked_rows_per_s']:,.0f} rows/s ({res['chunked_files']} files)")
    print(f"verify suite: {'IDENTICAL' if res['verify_ok'] else 'DIFFERENT'} in {res['verify_seconds']:.1f} s; per query [reference s, chunked s] {res['verify_queries']}")


if __name__ == "__main__":
    main()
