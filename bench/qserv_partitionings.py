"""The verify query suite on one catalog under two or three partitionings (issue #18, "Partitionings compared").

One generated cluster field (Object + Source), converted once and loaded once into a reference
database (plain tables); then for each partitioning STRIPES/SUBSTRIPES/OVERLAP it is partitioned,
loaded into its own chunked database (``cluster_p<i>``, a table per chunk and overlap file) and
the 8-query verify suite is run against the reference. Reported per partitioning and per query:
chunks queried, chunked seconds, reference seconds, rows, and whether the merged per-chunk result
is identical to the reference (so identical across partitionings). A private mariadbd on a unix
socket (appliance.qserv.localdb); nothing outside a temporary directory.

Usage: .venv/bin/python bench/qserv_partitionings.py [--scale N] [--grids 340/3/0.01667,85/12/0.1,170/6/0.05] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from qserv_load import converted_field


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=3, help="multiplies the default field's galaxy counts (default 3)")
    p.add_argument("--grids", default="340/3/0.01667,85/12/0.1,170/6/0.05", help="STRIPES/SUBSTRIPES/OVERLAP,...")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    from appliance.qserv.chunker import Chunker
    from appliance.qserv.load import load_chunked, load_reference
    from appliance.qserv.localdb import LocalMariaDB
    from appliance.qserv.partition import partition_table
    from appliance.qserv.verify import run_suite

    grids = [g.split("/") for g in a.grids.split(",") if g]
    tmp = Path(tempfile.mkdtemp(prefix="qserv-partitionings-bench-"))
    server = LocalMariaDB(tmp / "db")
    out: dict = {"scale": a.scale, "partitionings": []}
    try:
        schema = converted_field(tmp, a.scale)
        cfg = server.start()
        ref = load_reference(cfg, schema, tmp / "conv")
        out["objects"], out["sources"] = ref.tables["Object"], ref.tables["Source"]
        for i, (st, ss, ov) in enumerate(grids):
            chunker = Chunker(int(st), int(ss), float(ov))
            parts = tmp / f"parts_{i}"
            psum = {t: partition_table(tmp / "conv" / f"{t}.parquet", schema.table(t), parts, chunker) for t in ("Object", "Source")}
            db = f"cluster_p{i}"
            chk = load_chunked(cfg, schema, parts, database=db)
            ver = run_suite(cfg, "cluster", db, None, chunker)
            out["partitionings"].append({
                "grid": f"{st}/{ss}/{ov}",
                "object_chunks": sum(1 for v in psum["Object"].chunks.values() if v["rows"]),
                "overlap_rows": psum["Object"].overlap_rows,
                "files_loaded": chk.files,
                "identical": ver.ok,
                "problems": ver.problems,
                "suite_seconds": ver.seconds,
                "queries": [{"name": o.name, "ok": o.ok, "rows": o.chunked_rows, "reference_rows": o.reference_rows,
                             "chunks_queried": o.chunks_queried, "seconds_chunked": o.seconds_chunked,
                             "seconds_reference": o.seconds_reference} for o in ver.outcomes],
            })
            shutil.rmtree(parts, ignore_errors=True)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    # identity across partitionings: every query's merged result equals the reference's, in each
    out["identical_across"] = all(pt["identical"] for pt in out["partitionings"])
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"field (scale {a.scale}): {out['objects']:,} objects, {out['sources']:,} sources; "
          f"results {'IDENTICAL' if out['identical_across'] else 'DIFFERENT'} to the reference under every partitioning")
    names = [q["name"] for q in out["partitionings"][0]["queries"]] if out["partitionings"] else []
    head = f"{'query':28s} {'reference s':>11s}" + "".join(f" {pt['grid'] + ' s (chunks)':>26s}" for pt in out["partitionings"])
    print(head)
    for n in names:
        qs = [next(q for q in pt["queries"] if q["name"] == n) for pt in out["partitionings"]]
        line = f"{n:28s} {qs[0]['seconds_reference']:11.2f}"
        for q in qs:
            line += f" {q['seconds_chunked']:>15.2f} ({q['chunks_queried']:4d}){'' if q['ok'] else ' DIFF'}"[:27].rjust(27)
        print(line)
    for pt in out["partitionings"]:
        print(f"{pt['grid']}: {pt['object_chunks']} Object chunks, {pt['overlap_rows']} overlap rows, {pt['files_loaded']} files loaded, "
              f"suite {pt['suite_seconds']:.1f} s, {'IDENTICAL' if pt['identical'] else 'DIFFERENT ' + str(pt['problems'])}")


if __name__ == "__main__":
    main()
