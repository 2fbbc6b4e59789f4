"""``--workers 2`` writes exactly what one worker writes (issue #18), and a bad --workers is refused.

With N > 1 workers the input is cut into several splits per worker, taken by this process and
N - 1 spawned children as each becomes free; the director index is scattered by hash in pass 1
and sorted one bucket per job. None of this may change a byte: every file of the table (chunk
and overlap files, the director index) is compared, on a fine and a coarse grid, for a director
and for a child placed through that index.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import appliance.qserv.partition as partition_mod
from appliance.qserv.chunker import Chunker
from appliance.qserv.errors import PartitionConfigError
from appliance.qserv.felis_schema import TableSchema
from appliance.qserv.partition import INDEX_DIR, SUMMARY_FILE, partition_table
from appliance.qserv.readers import InputSpec

GRIDS = [(340, 3, 0.01667), (85, 12, 0.1)]  # Qserv's default grid; a coarse one with a wide overlap
ROWS = 4000
INDEX_ROWS = 500  # director index buckets of 500 ids: 8 buckets for 4000 rows (the default needs > 2e6 rows)


def _write_tables(tmp: Path, n: int = ROWS, seed: int = 5) -> tuple[Path, Path]:
    """A director CSV (id, ra, dec, mag; a few rows on the RA/Dec edges) and a child CSV (3 rows per id, shuffled)."""
    rng = np.random.default_rng(seed)
    ra = np.concatenate([rng.uniform(0, 360, n - 5), [0.0, 360.0, 359.99999, 180.0, 45.0]])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, n - 5))), [0.0, 90.0, -90.0, 89.99, -0.01]])
    mag = rng.uniform(15, 25, n).round(3)
    ids = rng.permutation(n) * 7 + 11  # not in input order: the index sort has work to do
    director = tmp / "obj.csv"
    director.write_text("id,ra,dec,mag\n" + "".join(
        f"{i},{r!r},{d!r},{m!r}\n" for i, r, d, m in zip(ids.tolist(), ra.tolist(), dec.tolist(), mag.tolist(), strict=True)))
    child_ids = rng.permutation(np.repeat(ids, 3))
    child = tmp / "src.csv"
    child.write_text("sid,oid,flux\n" + "".join(f"{k},{o},{f!r}\n" for k, (o, f) in
                                                 enumerate(zip(child_ids.tolist(), rng.uniform(0, 1, child_ids.size).round(4).tolist(), strict=True))))
    return director, child


def _all_files(table_dir: Path) -> dict[str, bytes]:
    """Every file of a partitioned table but its summary (which holds timings), by relative path."""
    return {str(p.relative_to(table_dir)): p.read_bytes() for p in sorted(table_dir.rglob("*")) if p.is_file() and p.name != SUMMARY_FILE}


def _partition_both(tmp: Path, out: str, grid, workers: int) -> tuple[dict, dict, int]:
    director, child = tmp / "obj.csv", tmp / "src.csv"
    obj = TableSchema("Object", [], "id", ra="ra", dec="dec")
    src = TableSchema("Source", [], "sid", director="Object", director_key="oid")
    s1 = partition_table(InputSpec((str(director),), "csv"), obj, tmp / out, Chunker(*grid), batch_rows=700, workers=workers)
    s2 = partition_table(InputSpec((str(child),), "csv"), src, tmp / out, Chunker(*grid), batch_rows=700, workers=workers)
    assert s1.ok and s2.ok and s1.rows == ROWS and s2.rows == 3 * ROWS and s1.workers == s2.workers == workers
    assert s1.files == sum(1 for p in (tmp / out / "Object").glob("chunk_*"))
    return _all_files(tmp / out / "Object"), _all_files(tmp / out / "Source"), s1.overlap_rows


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: "/".join(map(str, g)))
def test_two_workers_write_every_byte_of_one_worker(tmp_path, monkeypatch, grid):
    monkeypatch.setattr(partition_mod, "INDEX_BUCKET_ROWS", INDEX_ROWS)  # read in this process only: fine for a pool too
    _write_tables(tmp_path)
    obj1, src1, overlap1 = _partition_both(tmp_path, "w1", grid, 1)
    obj2, src2, overlap2 = _partition_both(tmp_path, "w2", grid, 2)
    meta = json.loads(obj1[f"{INDEX_DIR}/meta.json"])
    assert meta["bits"] == 3 and meta["rows"] == ROWS  # the index has several hash buckets
    assert sum(1 for name in obj1 if name.startswith("chunk_")) > 100 and overlap1 == overlap2 > 0
    assert sorted(obj1) == sorted(obj2) and sorted(src1) == sorted(src2)
    assert [n for n in obj1 if obj1[n] != obj2[n]] == []  # chunk, overlap and index files: same bytes
    assert [n for n in src1 if src1[n] != src2[n]] == []
    # the child's rows landed in their director's chunks, in input order within a file
    assert {n for n in src1 if n.startswith("chunk_")} <= {n for n in obj1 if n.startswith("chunk_") and "_overlap" not in n}


def test_index_rescattered_when_the_rows_outgrow_the_estimate(tmp_path, monkeypatch):
    """CSV rows are estimated from the first batch; when there are more, the pairs scattered in pass 1
    into too few hash buckets are scattered again before the sort: the same index."""
    monkeypatch.setattr(partition_mod, "INDEX_BUCKET_ROWS", INDEX_ROWS)
    director, _ = _write_tables(tmp_path)
    obj = TableSchema("Object", [], "id", ra="ra", dec="dec")
    ref = partition_table(InputSpec((str(director),), "csv"), obj, tmp_path / "ref", Chunker(*GRIDS[1]), workers=2)
    real = partition_mod._estimate_spill_bytes
    monkeypatch.setattr(partition_mod, "_estimate_spill_bytes", lambda *a: (real(*a)[0], 10))  # 10 rows: no pass-1 buckets
    low = partition_table(InputSpec((str(director),), "csv"), obj, tmp_path / "low", Chunker(*GRIDS[1]), workers=2)
    a, b = _all_files(tmp_path / "ref" / "Object"), _all_files(tmp_path / "low" / "Object")
    assert ref.files == low.files and sum(1 for n in a if n.startswith(f"{INDEX_DIR}/ids_")) == 8
    assert sorted(a) == sorted(b) and [n for n in a if a[n] != b[n]] == []


@pytest.mark.parametrize("bad", [0, -1, "x", "1.5", 2.0, True])
def test_bad_workers_refused_before_anything_is_written(tmp_path, bad):
    director, _ = _write_tables(tmp_path, n=50)
    with pytest.raises(PartitionConfigError) as err:
        partition_table(InputSpec((str(director),), "csv"), TableSchema("Object", [], "id", ra="ra", dec="dec"),
                        tmp_path / "p", Chunker(), workers=bad)
    text = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in text and "--workers" in text and repr(bad) in text
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("bad", ["0", "-1", "x"])
def test_bad_workers_on_the_command_line(tmp_path, bad):
    """The real command (a process: its exit status): exit 2, the error line names --workers and the value."""
    director, _ = _write_tables(tmp_path, n=50)
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "qserv", "partition", "--input", str(director), "--pos", "ra,dec",
                           "--id", "id", "--out", str(tmp_path / "p"), "--workers", bad], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[3], timeout=120)
    err = proc.stderr
    assert proc.returncode == 2 and "Traceback" not in err and proc.stdout == ""
    last = err.strip().splitlines()[-1]
    assert "--workers" in last and bad in last
    if bad != "x":  # "x" is refused by the option parser itself (type=int), after its usage lines
        assert err.count("\n") == 1 and err.startswith("appliance: error: workers (--workers):") and f"got {bad}" in err
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").rglob("chunk_*"))


def test_errors_in_a_child_or_in_this_process_stop_the_run(tmp_path, monkeypatch):
    """A job's error (a non-integer id, in whichever process ran the split) and a duplicate id found by
    the index sort (one bucket per job) end the run with that error and nothing written."""
    monkeypatch.setattr(partition_mod, "INDEX_BUCKET_ROWS", INDEX_ROWS)
    director, _ = _write_tables(tmp_path)
    obj = TableSchema("Object", [], "id", ra="ra", dec="dec")
    lines = director.read_text().splitlines(keepends=True)
    bad_id = tmp_path / "bad_id.csv"
    bad_id.write_text("".join(lines[:-1]) + "1.5" + lines[-1][lines[-1].index(","):])  # the last split's last row
    with pytest.raises(partition_mod.CatalogError) as err:
        partition_table(InputSpec((str(bad_id),), "csv"), obj, tmp_path / "p1", Chunker(*GRIDS[1]), workers=2)
    assert "the id column must be integer" in str(err.value) and err.value.column == "id"
    assert not (tmp_path / "p1" / "Object").exists() and not (tmp_path / "p1" / "Object.partitioning").exists()
    dup = tmp_path / "dup.csv"
    first_id = lines[1].split(",")[0]
    dup.write_text("".join(lines) + first_id + lines[2][lines[2].index(","):])
    with pytest.raises(partition_mod.CatalogError) as err:
        partition_table(InputSpec((str(dup),), "csv"), obj, tmp_path / "p2", Chunker(*GRIDS[1]), workers=2)
    assert f"duplicate primary key values in the director table (e.g. {first_id}, 1 duplicate(s)" in str(err.value)
    assert not (tmp_path / "p2" / "Object").exists() and not (tmp_path / "p2" / "Object.partitioning").exists()
