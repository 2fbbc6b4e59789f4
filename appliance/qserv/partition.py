"""Streaming partitioner: a converted table in, Qserv chunk files out (what ``sph-partition`` writes).

For a director table every row goes to ``chunk_<id>.txt`` of its chunk and, once per sub-chunk
overlap region that holds it, to ``chunk_<id>_overlap.txt`` of that chunk (which may be its own
chunk: overlaps are per sub-chunk). A child table has no position of its own that counts: each
row goes to the chunk and sub-chunk of its director row, found through the director's
objectId index (Qserv's "secondary" or director index), and child tables have no overlap.

Files are CSV without header, ``\\N`` for NULL, booleans as 0/1, with ``chunkId`` and
``subChunkId`` appended as the last two fields; ``partition.json`` lists the columns.

Memory is bounded by the batch size (default 1e6 rows); the director index that places child
rows (id and packed chunk/sub-chunk, 16 bytes per director row) is a memory-mapped file, and
sorting it needs a transient 8 bytes per director row. Output is built in
``<Table>.partitioning/`` and renamed to ``<Table>/`` when complete, so a half-partitioned table
never looks finished.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from appliance.fsutil import atomic_write_json
from appliance.qserv.chunker import Chunker
from appliance.qserv.errors import CatalogError
from appliance.qserv.felis_schema import TableSchema

INDEX_IDS = "director_index_ids.npy"  # sorted director ids (int64)
INDEX_LOC = "director_index_loc.npy"  # chunkId << 32 | subChunkId, in the same order (int64)
INDEX_BLOCK = 4_000_000
SUMMARY_FILE = "partition.json"


@dataclass
class PartitionSummary:
    """What a partitioning run produced; ``.ok`` is False when child rows had no director row."""

    table: str
    config: dict
    rows: int = 0
    chunks: dict[int, dict[str, int]] = field(default_factory=dict)
    overlap_rows: int = 0
    empty_chunks: list[int] = field(default_factory=list)
    overlap_only_chunks: list[int] = field(default_factory=list)
    orphan_rows: int = 0
    columns: list[str] = field(default_factory=list)
    director: str | None = None
    out_dir: str = ""
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def ok(self) -> bool:
        return self.orphan_rows == 0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["chunks"] = {str(k): v for k, v in sorted(self.chunks.items())}
        d["ok"] = self.ok
        d["rows_per_second"] = self.rows_per_second
        return d

    @classmethod
    def from_json(cls, d: dict) -> PartitionSummary:
        d = dict(d)
        d.pop("ok", None)
        d.pop("rows_per_second", None)
        d["chunks"] = {int(k): v for k, v in d["chunks"].items()}
        return cls(**d)

    def report(self) -> str:
        with_rows = sum(1 for v in self.chunks.values() if v["rows"])
        lines = [
            f"{self.table}: {self.rows} rows -> {with_rows} chunks"
            + (f" + {self.overlap_rows} overlap rows" if self.director is None else f" (child of {self.director})")
            + f" in {self.seconds:.2f} s ({self.rows_per_second:,.0f} rows/s, peak RSS {self.peak_rss_mb:.0f} MB)",
            f"  config: {self.config}; output {self.out_dir}",
        ]
        if self.empty_chunks:
            lines.append(f"  {len(self.empty_chunks)} chunk(s) in the data's footprint are empty")
        if self.overlap_only_chunks:
            lines.append(f"  {len(self.overlap_only_chunks)} chunk(s) hold overlap rows only")
        if self.orphan_rows:
            lines.append(f"  ERROR: {self.orphan_rows} row(s) reference no {self.director} row (not written)")
        return "\n".join(lines)


class _Footprint:
    """Dec range and a 1-degree RA occupancy mask: enough for the chunks a dataset should cover."""

    def __init__(self) -> None:
        self.dec_min, self.dec_max = 90.0, -90.0
        self.ra_bins = np.zeros(360, dtype=bool)

    def add(self, ra: np.ndarray, dec: np.ndarray) -> None:
        if ra.size:
            self.dec_min = min(self.dec_min, float(dec.min()))
            self.dec_max = max(self.dec_max, float(dec.max()))
            self.ra_bins[np.minimum(ra.astype(np.int64), 359)] = True

    def chunks(self, chunker: Chunker) -> list[int]:
        """Chunk ids intersecting the footprint, by lsst.sphgeom (the right tool for regions)."""
        import lsst.sphgeom as sg

        if not self.ra_bins.any():
            return []
        occupied = np.nonzero(self.ra_bins)[0]
        # RA interval = complement of the largest empty arc (handles data across RA 0/360).
        ext = np.concatenate([occupied, occupied[:1] + 360])
        gaps = np.diff(ext)
        k = int(np.argmax(gaps))
        if gaps[k] <= 1:  # every RA degree occupied
            lon = sg.NormalizedAngleInterval.full()
        else:
            lon = sg.NormalizedAngleInterval.fromDegrees(float(ext[k + 1] % 360), float(ext[k] + 1))
        lat = sg.AngleInterval.fromDegrees(self.dec_min, self.dec_max)
        box = sg.Box(lon, lat)
        sgc = sg.Chunker(chunker.num_stripes, chunker.num_sub_stripes)
        return sorted(int(c) for c in sgc.getChunksIntersecting(box))


class _Outputs:
    """Append-mode chunk files kept open across batches (LRU, bounded): opening is the slow part."""

    def __init__(self, directory: Path, max_open: int = 256):
        self.directory, self.max_open = directory, max_open
        self.open: OrderedDict[str, object] = OrderedDict()

    def write(self, name: str, data) -> None:
        fh = self.open.pop(name, None)
        if fh is None:
            if len(self.open) >= self.max_open:
                self.open.popitem(last=False)[1].close()  # type: ignore[attr-defined]
            fh = open(self.directory / name, "ab")  # noqa: SIM115 - closed by close()/eviction
        self.open[name] = fh
        fh.write(data)  # type: ignore[attr-defined]

    def close(self) -> None:
        while self.open:
            self.open.popitem()[1].close()  # type: ignore[attr-defined]


def _csv_bytes(table: pa.Table) -> bytes:
    cols = []
    for col in table.columns:
        if pa.types.is_boolean(col.type):
            col = pc.cast(col, pa.int8())
        cols.append(col)
    table = pa.table(cols, names=table.column_names)
    sink = pa.BufferOutputStream()
    opts = pacsv.WriteOptions(include_header=False, null_string="\\N", quoting_style="none", batch_size=65536)
    pacsv.write_csv(table, sink, opts)
    return sink.getvalue().to_pybytes()


def _append_by_chunk(table: pa.Table, chunk: np.ndarray, sub: np.ndarray, out: _Outputs, suffix: str, counts: dict, key: str) -> None:
    """Sort rows by chunk, render them as CSV once, and append each chunk's slice to its file."""
    if table.num_rows == 0:
        return
    order = np.argsort(chunk, kind="stable")
    chunk_sorted = chunk[order]
    t = table.take(pa.array(order))
    t = t.append_column("chunkId", pa.array(chunk_sorted, pa.int32()))
    t = t.append_column("subChunkId", pa.array(sub[order], pa.int32()))
    data = _csv_bytes(t)
    ends = np.nonzero(np.frombuffer(data, dtype=np.uint8) == 10)[0] + 1
    ids, first, n = np.unique(chunk_sorted, return_index=True, return_counts=True)
    view = memoryview(data)
    for cid, f0, cnt in zip(ids.tolist(), first.tolist(), n.tolist(), strict=True):
        start = 0 if f0 == 0 else int(ends[f0 - 1])
        stop = int(ends[f0 + cnt - 1])
        out.write(f"chunk_{cid}{suffix}.txt", view[start:stop])
        entry = counts.setdefault(cid, {"rows": 0, "overlap_rows": 0})
        entry[key] += cnt


def partition_table(
    parquet_path: str | Path,
    table: TableSchema,
    out_root: str | Path,
    chunker: Chunker,
    batch_rows: int = 1_000_000,
    force: bool = False,
    progress: bool = False,
) -> PartitionSummary:
    """Partition one converted table into ``out_root/<Table>/``; children need their director done first."""
    from tqdm import tqdm

    t0 = time.monotonic()
    out_root = Path(out_root)
    final = out_root / table.name
    work = out_root / f"{table.name}.partitioning"
    if final.exists():
        if not force:
            raise CatalogError(str(final), "already partitioned (use --force to replace)")
        shutil.rmtree(final)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        pf = pq.ParquetFile(str(parquet_path))
    except (OSError, pa.ArrowException) as err:
        raise CatalogError(str(parquet_path), f"cannot read Parquet: {err}") from err
    summary = PartitionSummary(table.name, chunker.config(), columns=pf.schema_arrow.names + ["chunkId", "subChunkId"])
    summary.director = table.director
    index = None
    if table.director:
        index_path = out_root / table.director / INDEX_IDS
        if not index_path.exists():
            raise CatalogError(str(index_path), f"partition the director table {table.director} first")
        index = (np.load(index_path, mmap_mode="r"), np.load(out_root / table.director / INDEX_LOC, mmap_mode="r"))
        key = table.director_key
    else:
        if not (table.ra and table.dec):
            raise CatalogError(str(parquet_path), "director table needs RA/Dec columns")
        n_total = pf.metadata.num_rows
        if n_total == 0:
            raise CatalogError(str(parquet_path), "the director table has no rows")
        # Unsorted index on disk (memory-mapped), filled batch by batch, sorted at the end.
        raw_ids = np.lib.format.open_memmap(work / "unsorted_ids.npy", "w+", np.int64, (n_total,))
        raw_loc = np.lib.format.open_memmap(work / "unsorted_loc.npy", "w+", np.int64, (n_total,))
    footprint = _Footprint()
    outputs = _Outputs(work)
    bar = tqdm(total=pf.metadata.num_rows, desc=f"partition {table.name}", unit="row", unit_scale=True, disable=not progress)
    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            t = pa.Table.from_batches([batch])
            if index is None:
                ra = t.column(table.ra).to_numpy()
                dec = t.column(table.dec).to_numpy()
                try:
                    loc = chunker.locate_all(ra, dec)
                except ValueError as err:
                    raise CatalogError(str(parquet_path), str(err), table.ra) from err
                footprint.add(ra, dec)
                _append_by_chunk(t, loc.chunk_id, loc.sub_chunk_id, outputs, "", summary.chunks, "rows")
                if loc.overlap_row.size:
                    ov = t.take(pa.array(loc.overlap_row))
                    _append_by_chunk(ov, loc.overlap_chunk_id, loc.overlap_sub_chunk_id, outputs, "_overlap", summary.chunks, "overlap_rows")
                summary.overlap_rows += int(loc.overlap_row.size)
                at = summary.rows
                raw_ids[at : at + batch.num_rows] = t.column(table.primary_key).to_numpy()
                raw_loc[at : at + batch.num_rows] = (loc.chunk_id.astype(np.int64) << 32) | loc.sub_chunk_id.astype(np.int64)
            else:
                ids = t.column(key).to_numpy()
                pos = np.searchsorted(index[0], ids)
                pos_c = np.minimum(pos, index[0].size - 1)
                found = (index[0].size > 0) & (index[0][pos_c] == ids)
                summary.orphan_rows += int((~found).sum())
                keep = np.nonzero(found)[0]
                if keep.size != ids.size:
                    t = t.take(pa.array(keep))
                    pos_c = pos_c[keep]
                packed = np.asarray(index[1][pos_c])
                _append_by_chunk(t, (packed >> 32).astype(np.int32), (packed & 0xFFFFFFFF).astype(np.int32), outputs, "", summary.chunks, "rows")
            summary.rows += batch.num_rows
            bar.update(batch.num_rows)
    finally:
        bar.close()
        outputs.close()
    if index is None:
        _sort_index(work, raw_ids, raw_loc, parquet_path, table.primary_key)
        del raw_ids, raw_loc
        covered = footprint.chunks(chunker)
        summary.empty_chunks = [c for c in covered if c not in summary.chunks]
        summary.overlap_only_chunks = sorted(c for c, v in summary.chunks.items() if v["rows"] == 0)
    summary.out_dir = str(final)
    summary.seconds = time.monotonic() - t0
    summary.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    atomic_write_json(work / SUMMARY_FILE, summary.to_json())
    work.rename(final)
    return summary


def _sort_index(work: Path, raw_ids: np.ndarray, raw_loc: np.ndarray, source, key: str) -> None:
    """Sort the memory-mapped index by id into its final files, block by block.

    Peak memory is the argsort permutation (8 bytes per director row) plus one block; the id
    and location arrays themselves stay file-backed.
    """
    order = np.argsort(raw_ids, kind="stable")
    ids = np.lib.format.open_memmap(work / INDEX_IDS, "w+", np.int64, raw_ids.shape)
    loc = np.lib.format.open_memmap(work / INDEX_LOC, "w+", np.int64, raw_ids.shape)
    last = None
    for start in range(0, order.size, INDEX_BLOCK):
        block = order[start : start + INDEX_BLOCK]
        block_ids = raw_ids[block]
        ids[start : start + block.size] = block_ids
        loc[start : start + block.size] = raw_loc[block]
        dup = block_ids[1:] == block_ids[:-1]
        if dup.any() or (last is not None and block_ids.size and block_ids[0] == last):
            raise CatalogError(str(source), "duplicate primary key values in the director table", key)
        if block_ids.size:
            last = block_ids[-1]
    ids.flush()
    loc.flush()
    del ids, loc
    (work / "unsorted_ids.npy").unlink()
    (work / "unsorted_loc.npy").unlink()


def read_summary(table_dir: str | Path) -> PartitionSummary:
    path = Path(table_dir) / SUMMARY_FILE
    try:
        return PartitionSummary.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CatalogError(str(path), f"not a partition summary: {err}") from err
