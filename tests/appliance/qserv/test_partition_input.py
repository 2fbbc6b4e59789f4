"""Tables straight into the partitioner (CSV/TSV/Parquet/FITS, columns as named), workers, bad positions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.table import Table

import appliance.qserv.partition as partition_mod
from appliance.cli import main
from appliance.qserv.chunker import Chunker
from appliance.qserv.errors import CatalogError
from appliance.qserv.felis_schema import TableSchema
from appliance.qserv.partition import partition_table, read_summary
from appliance.qserv.readers import InputSpec

GRID = (85, 12, 0.1)  # coarse grid, wide overlap: many overlap rows in a small table


def _rows(n: int, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ra = np.concatenate([rng.uniform(0, 360, n - 6), [0.0, 359.99999, 360.0, 10.0, 20.0, 30.0]])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, n - 6))), [0.0, -89.99, 90.0, -90.0, 89.5, 0.1]])
    return {"id": np.arange(100, 100 + n, dtype=np.int64), "ra": ra, "dec": dec, "mag": rng.uniform(15, 25, n).round(3)}


def _write_csv(path: Path, cols: dict[str, np.ndarray], delim: str = ",", header: bool = True) -> list[str]:
    lines = [delim.join([str(int(i)), repr(float(r)), repr(float(d)), repr(float(m))]) for i, r, d, m in zip(*cols.values(), strict=True)]
    path.write_text(("id,ra,dec,mag\n".replace(",", delim) if header else "") + "\n".join(lines) + "\n")
    return lines


def _read_out(directory: Path, overlap: bool, delim: str = ",") -> list[list[str]]:
    out = []
    for p in sorted(directory.glob("chunk_*.txt")):
        if p.name.endswith("_overlap.txt") == overlap:
            out += [line.split(delim) + [p.name] for line in p.read_text().splitlines()]
    return out


def _expected(cols):
    ch = Chunker(*GRID)
    chunk, sub = ch.locate(cols["ra"], cols["dec"])
    loc = ch.locate_all(cols["ra"], cols["dec"])
    primary = {str(i): (str(c), str(s)) for i, c, s in zip(cols["id"], chunk, sub, strict=True)}
    overlap = Counter(zip(cols["id"][loc.overlap_row].astype(str), loc.overlap_chunk_id.astype(str), loc.overlap_sub_chunk_id.astype(str), strict=True))
    return primary, overlap


def _check(directory: Path, cols, delim: str = ","):
    primary, overlap = _expected(cols)
    got = _read_out(directory, False, delim)
    assert {r[0]: (r[-3], r[-2]) for r in got} == primary and len(got) == len(primary)
    assert all(r[-1] == f"chunk_{r[-3]}.txt" for r in got)
    assert Counter((r[0], r[-3], r[-2]) for r in _read_out(directory, True, delim)) == overlap
    assert sum(overlap.values()) > len(primary)  # the grid really exercises the overlap


def test_csv_in_rows_kept_byte_for_byte(tmp_path):
    cols = _rows(3000)
    lines = _write_csv(tmp_path / "stars.csv", cols)
    rc = main(["qserv", "partition", "--input", str(tmp_path / "stars.csv"), "--pos", "ra,dec", "--id", "id",
               "--part.num-stripes", "85", "--part.num-sub-stripes", "12", "--part.overlap", "0.1", "--out", str(tmp_path / "p")])
    assert rc == 0
    out = tmp_path / "p" / "stars"  # named after the table given, not Object/
    _check(out, cols)
    summary = read_summary(out)
    assert summary.columns == ["id", "ra", "dec", "mag", "chunkId", "subChunkId"]  # id not renamed
    assert summary.rows == 3000 and summary.overlap_rows > 3000
    written = {line.rsplit(",", 2)[0] for p in out.glob("chunk_*.txt") if "_overlap" not in p.name for line in p.read_text().splitlines()}
    assert written == set(lines)  # the input text itself, not re-formatted numbers
    assert not list(tmp_path.glob("p/*.partitioning"))


def test_tsv_without_header_and_table_name(tmp_path):
    cols = _rows(1500, seed=4)
    _write_csv(tmp_path / "a.tsv", cols, "\t", header=False)
    rc = main(["qserv", "partition", "--input", str(tmp_path / "a.tsv"), "--in.csv.field", "id,ra,dec,mag", "--part.pos", "ra,dec",
               "--id", "id", "--table", "Object", "--num-stripes", "85", "--num-sub-stripes", "12", "--overlap", "0.1", "--out", str(tmp_path / "p")])
    assert rc == 0
    _check(tmp_path / "p" / "Object", cols, "\t")
    assert read_summary(tmp_path / "p" / "Object").delimiter == "\t"


@pytest.mark.parametrize("fmt", ["parquet", "fits"])
def test_parquet_and_fits_in(tmp_path, fmt):
    cols = _rows(2000, seed=5)
    path = tmp_path / f"t.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.table(cols), path, row_group_size=300)
    else:
        Table(cols).write(path)
    spec = InputSpec((str(path),), fmt)
    s = partition_table(spec, TableSchema("T", [], "id", ra="ra", dec="dec"), tmp_path / "p", Chunker(*GRID), batch_rows=256)
    assert s.rows == 2000
    _check(tmp_path / "p" / "T", cols)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_two_workers_write_the_same_files(tmp_path, fmt):
    cols = _rows(20000, seed=6)
    if fmt == "csv":
        _write_csv(tmp_path / "t.csv", cols)
    else:
        pq.write_table(pa.table(cols), tmp_path / "t.parquet", row_group_size=2500)
    spec = InputSpec((str(tmp_path / f"t.{fmt}"),), fmt)
    table = TableSchema("T", [], "id", ra="ra", dec="dec")
    one = partition_table(spec, table, tmp_path / "w1", Chunker(*GRID), batch_rows=3000)
    two = partition_table(spec, table, tmp_path / "w2", Chunker(*GRID), batch_rows=3000, workers=2)
    assert two.workers == 2 and one.chunks == two.chunks
    names = sorted(p.name for p in (tmp_path / "w1" / "T").glob("chunk_*"))
    assert names == sorted(p.name for p in (tmp_path / "w2" / "T").glob("chunk_*")) and len(names) > 100
    for n in names:  # byte-identical, order included
        assert (tmp_path / "w1" / "T" / n).read_bytes() == (tmp_path / "w2" / "T" / n).read_bytes(), n


def test_child_of_a_direct_director_and_bucketed_index(tmp_path, monkeypatch):
    monkeypatch.setattr(partition_mod, "INDEX_BUCKET_ROWS", 700)  # 3000 ids -> 8 hash buckets
    cols = _rows(3000, seed=7)
    _write_csv(tmp_path / "obj.csv", cols)
    rng = np.random.default_rng(8)
    ref = rng.choice(cols["id"], 5000)
    (tmp_path / "src.csv").write_text("srcId,objId,flux\n" + "".join(f"{i},{o},1.5\n" for i, o in enumerate(ref.tolist())) + "1,999999,2.0\n")
    assert main(["qserv", "partition", "--input", str(tmp_path / "obj.csv"), "--pos", "ra,dec", "--id", "id", "--table", "Obj", "--out", str(tmp_path / "p")]) == 0
    meta = json.loads((tmp_path / "p" / "Obj" / "director_index" / "meta.json").read_text())
    assert meta["bits"] == 3
    rc = main(["qserv", "partition", "--input", str(tmp_path / "src.csv"), "--child-of", "Obj", "--key", "objId", "--out", str(tmp_path / "p")])
    assert rc == 6  # one orphan row: not ok
    obj = {r[0]: (r[-3], r[-2]) for r in _read_out(tmp_path / "p" / "Obj", False)}
    src = _read_out(tmp_path / "p" / "Src" if (tmp_path / "p" / "Src").exists() else tmp_path / "p" / "src", False)
    assert len(src) == 5000 and all(obj[r[1]] == (r[-3], r[-2]) for r in src)
    assert read_summary(tmp_path / "p" / "src").orphan_rows == 1


def test_duplicate_ids_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(partition_mod, "INDEX_BUCKET_ROWS", 100)
    cols = _rows(1000, seed=9)
    cols["id"][700] = cols["id"][3]
    _write_csv(tmp_path / "d.csv", cols)
    with pytest.raises(CatalogError, match="duplicate primary key"):
        partition_table(InputSpec((str(tmp_path / "d.csv"),), "csv"), TableSchema("D", [], "id", ra="ra", dec="dec"), tmp_path / "p", Chunker())
    assert not (tmp_path / "p" / "D.partitioning").exists() and not (tmp_path / "p" / "D").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_dec_names_row_column_value_count(tmp_path, capsys, workers):
    cols = _rows(60000, seed=10)
    cols["dec"][45678] = 95.5  # far into the table: in another batch, and in the second worker's split
    cols["dec"][50000] = -91.0
    cols["ra"][59000] = float("nan")
    _write_csv(tmp_path / "bad.csv", cols)
    argv = ["qserv", "partition", "--input", str(tmp_path / "bad.csv"), "--pos", "ra,dec", "--id", "id", "--table", "Object",
            "--out", str(tmp_path / "p"), "--batch-rows", "5000", "--workers", str(workers)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 4 and err.count("error:") == 1
    err = err.strip().splitlines()[-1]  # (after the progress bar)
    assert "column 'dec'" in err and "3 row(s)" in err and "row 45679" in err and "95.5" in err
    assert not list((tmp_path / "p").iterdir())  # no Object.partitioning/ left behind
    rc = main(argv + ["--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 4 and doc["ok"] is False
    assert doc["error"] | {} and (doc["error"]["column"], doc["error"]["row"], doc["error"]["bad_rows"]) == ("dec", 45679, 3)


def test_bad_ra_in_parquet_names_ra(tmp_path):
    cols = _rows(5000, seed=11)
    cols["ra"][4321] = -0.5
    pq.write_table(pa.table(cols), tmp_path / "r.parquet", row_group_size=1000)
    with pytest.raises(CatalogError) as err:
        partition_table(InputSpec((str(tmp_path / "r.parquet"),), "parquet"), TableSchema("R", [], "id", ra="ra", dec="dec"),
                        tmp_path / "p", Chunker(), batch_rows=600, workers=2)
    assert err.value.column == "ra" and err.value.details["row"] == 4322 and err.value.details["bad_rows"] == 1
    assert "right ascension outside [0, 360]" in str(err.value)
    assert not list((tmp_path / "p").iterdir())


def test_missing_position_column_named(tmp_path, capsys):
    _write_csv(tmp_path / "m.csv", _rows(10))
    rc = main(["qserv", "partition", "--input", str(tmp_path / "m.csv"), "--pos", "RA,dec", "--id", "id", "--out", str(tmp_path / "p"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 2 and doc["error"]["missing"] == ["RA"] and doc["error"]["type"] == "MissingColumnsError"
