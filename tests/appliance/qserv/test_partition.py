"""Partitioner output: every row in exactly one chunk file, children with their director, overlaps, streaming."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from appliance.qserv.chunker import Chunker
from appliance.qserv.errors import CatalogError
from appliance.qserv.felis_schema import load_schema
from appliance.qserv.partition import partition_table, read_summary


def _rows(directory: Path, overlap: bool) -> list[list[str]]:
    out = []
    for p in sorted(directory.glob("chunk_*.txt")):
        if p.name.endswith("_overlap.txt") != overlap:
            continue
        with open(p, newline="") as fh:
            out += [r + [p.name] for r in csv.reader(fh)]
    return out


def test_every_row_in_exactly_one_chunk(converted, partitioned):
    summary = read_summary(partitioned / "Object")
    assert summary.ok and summary.columns[-2:] == ["chunkId", "subChunkId"]
    rows = _rows(partitioned / "Object", overlap=False)
    ids = Counter(r[0] for r in rows)
    n = pq.ParquetFile(converted / "Object.parquet").metadata.num_rows
    assert len(ids) == n and max(ids.values()) == 1
    # the chunkId field matches the file it is in, and matches the chunker
    for r in rows[:500]:
        assert r[-1] == f"chunk_{r[-3]}.txt"
    t = pq.read_table(converted / "Object.parquet").to_pydict()
    chunk, sub = Chunker().locate(t["coord_ra"], t["coord_dec"])
    expect = {str(i): (str(c), str(s)) for i, c, s in zip(t["objectId"], chunk, sub, strict=True)}
    assert all(expect[r[0]] == (r[-3], r[-2]) for r in rows)
    assert sum(v["rows"] for v in summary.chunks.values()) == n
    # the field straddles RA 0/360: chunks on both sides of the wrap are populated
    populated = {c for c, v in summary.chunks.items() if v["rows"]}
    stripes = {c // 680 for c in populated}
    assert any(c % 680 == 0 for c in populated) and any(c % 680 == Chunker().chunks_per_stripe[s] - 1 for s in stripes for c in populated)
    # empty chunks: in the footprint (per lsst.sphgeom) but without rows
    assert not (set(summary.empty_chunks) & populated)


def test_overlap_files_match_locate_all(converted, partitioned):
    t = pq.read_table(converted / "Object.parquet").to_pydict()
    loc = Chunker().locate_all(t["coord_ra"], t["coord_dec"])
    ids = np.asarray(t["objectId"])
    expect = Counter(zip(ids[loc.overlap_row].astype(str), loc.overlap_chunk_id.astype(str), loc.overlap_sub_chunk_id.astype(str), strict=True))
    got = Counter((r[0], r[-3], r[-2]) for r in _rows(partitioned / "Object", overlap=True))
    assert got == expect and len(got) > 0
    assert read_summary(partitioned / "Object").overlap_rows == sum(expect.values())


def test_children_follow_their_director(partitioned):
    obj = {r[0]: r[-3:-1] for r in _rows(partitioned / "Object", overlap=False)}
    src = _rows(partitioned / "Source", overlap=False)
    assert src and not list((partitioned / "Source").glob("*_overlap.txt"))
    header = read_summary(partitioned / "Source").columns
    k = header.index("objectId")
    for r in src:
        assert r[-3:-1] == obj[r[k]]


def test_nulls_and_booleans_in_csv(partitioned):
    rows = _rows(partitioned / "Object", overlap=False)
    header = read_summary(partitioned / "Object").columns
    flag = header.index("r_psfFlux_flag")
    flux = header.index("r_psfFlux")
    assert {r[flag] for r in rows} <= {"0", "1"}
    assert any(r[flux] == "\\N" for r in rows)  # NaN fluxes became NULLs


def test_streaming_batches_give_identical_files(converted, partitioned, tmp_path):
    schema = load_schema(converted / "schema.yaml")
    partition_table(converted / "Object.parquet", schema.table("Object"), tmp_path, Chunker(), batch_rows=997)
    for p in sorted((partitioned / "Object").glob("chunk_*.txt")):
        mine = (tmp_path / "Object" / p.name).read_bytes().splitlines()
        assert sorted(mine) == sorted(p.read_bytes().splitlines()), p.name
    with pytest.raises(CatalogError, match="already partitioned"):
        partition_table(converted / "Object.parquet", schema.table("Object"), tmp_path, Chunker())


def test_child_needs_director_index(converted, tmp_path):
    schema = load_schema(converted / "schema.yaml")
    with pytest.raises(CatalogError, match="director"):
        partition_table(converted / "Source.parquet", schema.table("Source"), tmp_path, Chunker())
