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
import math
import mmap
import multiprocessing as mp
import os
import resource
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from appliance.fsutil import atomic_open, atomic_write_json
from appliance.qserv.chunker import Chunker
from appliance.qserv.errors import CatalogError, MissingColumnsError
from appliance.qserv.felis_schema import TableSchema
from appliance.qserv.readers import (
    InputSpec,
    Split,
    column_names,
    count_rows,
    csv_row_of_offset,
    iter_batches,
    make_splits,
)

INDEX_DIR = "director_index"  # meta.json + ids_<b>.npy (sorted ids) + loc_<b>.npy (chunkId << 32 | subChunkId)
INDEX_BUCKET_ROWS = 2_000_000  # (id, location) pairs sorted at once: 32 MB (+ its sort permutation)
DEFAULT_BATCH_ROWS = 131_072  # rows per batch: ~10 MB of rendered rows, a few x that with overlaps
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
    delimiter: str = ","  # field separator of the chunk files (the input's, for CSV/TSV passed through)
    workers: int = 1
    files: int = 0

    @property
    def ok(self) -> bool:
        return self.orphan_rows == 0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict:
        # asdict() deep-copies: 4.8 s for the 146k chunks of a whole-sky 340/3 run; a shallow build is ~0.1 s.
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "chunks"}
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

    def merge(self, other: _Footprint) -> None:
        self.dec_min, self.dec_max = min(self.dec_min, other.dec_min), max(self.dec_max, other.dec_max)
        self.ra_bins |= other.ra_bins

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


def _csv_bytes(table: pa.Table) -> bytes:
    """Rows as the loaders' CSV: no header, ``\\N`` for NULL, booleans as 0/1, no quoting."""
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


# ------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class _Job:
    """What one worker needs (picklable): the input split, the grid, the columns, where to spill."""

    spec: InputSpec
    split: Split
    grid: tuple[int, int, float]
    ra: str | None
    dec: str | None
    key: str  # director: primary key (the index); child: the director key
    index_dir: str | None  # child: the director's index
    work: str
    worker: int
    buckets: int
    batch_rows: int
    delimiter: str


def _dense_chunks(chunker: Chunker) -> tuple[np.ndarray, int]:
    """chunkId -> 0..n-1 (its rank among valid chunks), and the number of keys (2 per chunk id)."""
    ids = np.asarray(chunker.all_chunks(), dtype=np.int64)
    dense = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    dense[ids] = np.arange(ids.size)
    return dense, 2 * (int(ids.max()) + 1)


def _bad_positions(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bad_dec = ~((dec >= -90.0) & (dec <= 90.0))
    bad = bad_dec | ~((ra >= 0.0) & (ra <= 360.0))
    return bad, bad_dec


class _Spill:
    """Per-bucket spill files of rendered rows plus a sidecar of (key, bytes) per contiguous run.

    A key is ``2 * chunkId`` (chunk file) or ``2 * chunkId + 1`` (overlap file); runs of one key are
    appended in input order, so gathering a key's runs in file order rebuilds the input order.
    """

    def __init__(self, work: Path, worker: int, buckets: int):
        self.data = [work / f"spill_{worker}_{b}.bin" for b in range(buckets)]
        self.side = [work / f"spill_{worker}_{b}.idx" for b in range(buckets)]

    def append(self, bucket: int, data: memoryview, keys: np.ndarray, nbytes: np.ndarray) -> None:
        with open(self.data[bucket], "ab") as fh:
            fh.write(data)
        with open(self.side[bucket], "ab") as fh:
            fh.write(np.stack([keys, nbytes], axis=1).astype(np.int64).tobytes())


def _location_order(bucket_key: np.ndarray, rows: np.ndarray, subs: np.ndarray, bucket_keys: int) -> np.ndarray:
    """The order of (bucket_key, row, sub) ascending: one argsort of the three packed into an int64.

    A three-key lexsort is three sorts (42 ms per 185k locations, 2.3 s per 1e7 whole-sky rows at
    340/3); the packed key is one (14 ms). The triples are distinct (a row has a location once), so
    an unstable sort gives the same order. Fields too wide to pack fall back to the lexsort.
    """
    row_bits = max(1, int(rows.max(initial=0)).bit_length())
    sub_bits = max(1, int(subs.max(initial=0)).bit_length())
    if max(1, bucket_keys.bit_length()) + row_bits + sub_bits > 63:
        return np.lexsort((subs, rows, bucket_key))
    packed = (bucket_key << (row_bits + sub_bits)) | (rows << sub_bits) | subs.astype(np.int64)
    return np.argsort(packed)


RENDER_PIECE = 1 << 18  # locations joined at once: ~20 MB of output text in flight at most


def _place(body: pa.Array, keys: np.ndarray, rows: np.ndarray, subs: np.ndarray, buckets_of_key: np.ndarray,
           spill: _Spill, delim: str) -> None:
    """Sort locations by (bucket, key), append ``<row><d>chunkId<d>subChunkId`` per location to the spill."""
    bucket = buckets_of_key[keys]
    # (bucket, key, row, sub-chunk): a file's rows come in input order whatever the batches or
    # workers were, so --workers 2 writes the same bytes as one worker
    order = _location_order(bucket * len(buckets_of_key) + keys, rows, subs, len(buckets_of_key) * int(bucket.max(initial=0) + 1))
    keys, rows, subs, bucket = keys[order], rows[order], subs[order], bucket[order]
    sep = pa.scalar(delim, pa.large_string())
    for p0 in range(0, keys.size, RENDER_PIECE):
        p1 = min(p0 + RENDER_PIECE, keys.size)
        k = keys[p0:p1]
        lines = pc.binary_join_element_wise(
            body.take(pa.array(rows[p0:p1])),
            pc.cast(pa.array(k >> 1), pa.large_string()),
            pc.cast(pa.array(subs[p0:p1]), pa.large_string()),
            sep,
        )
        lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
        off = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
        data = memoryview(lines.buffers()[2])
        change = np.flatnonzero((k[1:] != k[:-1]) | (bucket[p0 + 1 : p1] != bucket[p0 : p1 - 1])) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [k.size]])
        run_bytes = off[ends] - off[starts]
        run_bucket = bucket[p0:p1][starts]
        bstarts = np.flatnonzero(np.concatenate([[True], run_bucket[1:] != run_bucket[:-1]]))
        bends = np.concatenate([bstarts[1:], [starts.size]])
        for r0, r1 in zip(bstarts.tolist(), bends.tolist(), strict=True):
            b0, b1 = int(off[starts[r0]]), int(off[ends[r1 - 1]])
            spill.append(int(run_bucket[r0]), data[b0:b1], k[starts[r0:r1]], run_bytes[r0:r1])


def _run_job(job: _Job) -> dict:
    """Pass 1 over one split: locate, render, spill; the director's (id, location) pairs to a raw index."""
    chunker = Chunker(*job.grid)
    work = Path(job.work)
    dense, n_keys = _dense_chunks(chunker)
    buckets_of_key = np.repeat(dense % job.buckets, 2)
    spill = _Spill(work, job.worker, job.buckets)
    counts = np.zeros(n_keys, dtype=np.int64)
    footprint = _Footprint()
    index = DirectorIndex(Path(job.index_dir)) if job.index_dir else None
    raw_index = open(work / f"index_raw_{job.worker}.bin", "wb") if index is None else None  # noqa: SIM115
    rows_done = orphans = 0
    bad_count, first_bad = 0, None
    float_cols = (job.ra, job.dec) if index is None else ()
    need = [c for c in (job.ra, job.dec, job.key) if c] if index is None else [job.key]
    try:
        for row0, body, cols in iter_batches(job.spec, job.split, need, job.batch_rows, positions_only=first_bad is not None, float_cols=float_cols):
            n = next(iter(cols.values())).size
            if index is None:
                ra, dec = cols[job.ra], cols[job.dec]
                bad, bad_dec = _bad_positions(ra, dec)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    bad_count += int(bad.sum())
                    if first_bad is None:
                        col, val = (job.dec, dec[i]) if bad_dec[i] else (job.ra, ra[i])
                        first_bad = {"row": row0 + i, "column": col, "value": float(val)}
                    continue
                if first_bad is not None or body is None:
                    continue
                loc = chunker.locate_all(ra, dec)
                footprint.add(ra, dec)
                keys = np.concatenate([loc.chunk_id.astype(np.int64) * 2, loc.overlap_chunk_id.astype(np.int64) * 2 + 1])
                rows = np.concatenate([np.arange(n, dtype=np.int64), loc.overlap_row])
                subs = np.concatenate([loc.sub_chunk_id, loc.overlap_sub_chunk_id])
                packed = (loc.chunk_id.astype(np.int64) << 32) | loc.sub_chunk_id.astype(np.int64)
                ids = np.asarray(cols[job.key])
                if ids.dtype.kind not in "iu":
                    raise CatalogError(job.split.path, f"the id column must be integer, not {ids.dtype}", job.key)
                raw_index.write(np.stack([ids.astype(np.int64), packed], axis=1).tobytes())  # type: ignore[union-attr]
            else:
                found, packed = index.lookup(np.asarray(cols[job.key]).astype(np.int64))
                orphans += int((~found).sum())
                rows = np.flatnonzero(found)
                packed = packed[rows]
                keys = (packed >> 32) * 2
                subs = (packed & 0xFFFFFFFF).astype(np.int32)
            counts += np.bincount(keys, minlength=n_keys)
            if keys.size:
                _place(body, keys, rows, subs, buckets_of_key, spill, job.delimiter)  # type: ignore[arg-type]
            rows_done += n
    finally:
        if raw_index is not None:
            raw_index.close()
    return {
        "worker": job.worker, "rows": rows_done, "orphans": orphans, "counts": counts,
        "footprint": footprint, "bad_count": bad_count, "first_bad": first_bad,
    }


SPILL_BUCKET_BYTES = 48 << 20  # aim of the bucket count: one bucket's spill read at once in pass 2
SPILL_READ_BYTES = 160 << 20  # a bigger spill (skewed data) is memory-mapped instead of read
GATHER_FLUSH = 64 << 20  # drop mapped spill pages after this many bytes gathered: RSS stays flat


def _write_bucket(args: tuple[str, str, int, int]) -> int:
    """Pass 2 for one bucket: every key's runs from every worker, in order, written as one file each.

    The runs (one per key per batch: about one per row for a whole-sky table) are gathered by one
    Arrow ``take`` over the spills seen as binary arrays, in pieces of at most GATHER_FLUSH bytes;
    each file is then one ``writev`` of a slice of the gathered piece.
    """
    work, final_dir, bucket, workers = args
    work_p = Path(work)
    maps, arrays, keys_l = [], [], []
    runs = piece = view = None
    files = 0
    try:
        for w in range(workers):
            data_p, side_p = work_p / f"spill_{w}_{bucket}.bin", work_p / f"spill_{w}_{bucket}.idx"
            if not side_p.exists() or data_p.stat().st_size == 0:
                continue
            side = np.fromfile(side_p, dtype=np.int64).reshape(-1, 2)
            with open(data_p, "rb") as fh:
                # small spills are read (mmap page faults cost 2.5 s of system time per 1e6 whole-sky
                # rows); one beyond SPILL_READ_BYTES (skewed data) is mapped and its pages dropped as we go
                size = data_p.stat().st_size
                if size <= SPILL_READ_BYTES:
                    mm = memoryview(_reusable(w, size))[:size]
                    fh.readinto(mm)
                else:
                    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            # read (or mapped): its tmpfs pages go back now, for the chunk files about to be written
            data_p.unlink()
            side_p.unlink()
            off = np.empty(side.shape[0] + 1, dtype=np.int64)
            off[0] = 0
            np.cumsum(side[:, 1], out=off[1:])
            maps.append(mm)
            arrays.append(pa.LargeBinaryArray.from_buffers(pa.large_binary(), side.shape[0], [None, pa.py_buffer(off), pa.py_buffer(mm)]))
            keys_l.append(side[:, 0])
            del side
        if not maps:
            return 0
        keys = np.concatenate(keys_l)
        lens = np.concatenate([np.diff(np.frombuffer(a.buffers()[1], dtype=np.int64)) for a in arrays])
        runs = pa.chunked_array(arrays, pa.large_binary())
        order = np.argsort(keys, kind="stable")  # runs of one key in worker order, then file order = input order
        keys = keys[order]
        bounds = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1], [True]]))
        ends = np.cumsum(lens[order])  # byte end of each run once gathered
        group_end = ends[bounds[1:] - 1]
        prefix = os.path.join(final_dir, "chunk_")
        newline = b"\n"
        g = 0
        n_groups = bounds.size - 1
        while g < n_groups:
            base = int(ends[bounds[g] - 1]) if bounds[g] else 0
            # as many whole keys as fit in GATHER_FLUSH bytes (at least one)
            h = max(g + 1, int(np.searchsorted(group_end, base + GATHER_FLUSH, side="right")))
            r0, r1 = int(bounds[g]), int(bounds[h])
            piece = runs.take(pa.array(order[r0:r1]))
            piece = piece.combine_chunks() if isinstance(piece, pa.ChunkedArray) else piece
            view = memoryview(piece.buffers()[2]) if len(piece) else memoryview(b"")
            p_off = piece.offset
            p_start = int(np.frombuffer(piece.buffers()[1], dtype=np.int64)[p_off]) if len(piece) else 0
            cuts = (group_end[g:h] - base + p_start).tolist()
            names = [f"{prefix}{k >> 1}{'_overlap.txt' if k & 1 else '.txt'}" for k in keys[bounds[g:h]].tolist()]
            # every row's text starts with its newline separator: a file is its text without the first
            # byte, up to and including the next file's first byte (a newline); the last file of the
            # piece has no next file and gets its newline by writev
            start = p_start
            for name, stop in zip(names[:-1], cuts[:-1], strict=True):
                _write_file(name, [view[start + 1 : stop + 1]])
                start = stop
            _write_file(names[-1], [view[start + 1 : cuts[-1]], newline])
            files += len(names)
            piece = view = None
            for mm in maps:
                if isinstance(mm, mmap.mmap):
                    mm.madvise(mmap.MADV_DONTNEED)
            g = h
    finally:
        arrays.clear()
        runs = piece = view = None  # Arrow's hold on the read buffers, before they are released
        for mm in maps:
            if isinstance(mm, mmap.mmap):
                mm.close()
            else:
                mm.release()
    return files


def _write_file(name: str, parts: list) -> None:
    """A new file of ``parts`` (one writev; 292k of these per 1e7 whole-sky rows, so no helpers per call)."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        done = os.writev(fd, parts)
        if done < sum(map(len, parts)):
            # short write (rare): finish with plain writes
            _write_all(fd, memoryview(b"".join(bytes(x) for x in parts))[done:])
    finally:
        os.close(fd)


_BUFFERS: dict[int, bytearray] = {}


def _reusable(slot: int, size: int) -> bytearray:
    """One growing read buffer per worker's spill, reused bucket after bucket.

    A fresh 48 MB bytes object per bucket costs its page faults again each time (about 1 s of
    system time per 1e7 rows); reusing the pages does not.
    """
    buf = _BUFFERS.get(slot)
    if buf is None or len(buf) < size:
        buf = _BUFFERS[slot] = bytearray(max(size, SPILL_BUCKET_BYTES))
    return buf


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


class DirectorIndex:
    """The director's id -> (chunkId, subChunkId) index: hash buckets of sorted ids, memory-mapped.

    Built by an external sort: pass 1 appends (id, location) pairs unsorted; at the end they are
    scattered into 2^k buckets by a multiplicative hash of the id (k chosen so one bucket holds at
    most INDEX_BUCKET_ROWS pairs, 64 MB), and each bucket is sorted on its own. Nothing holds the
    whole table: peak memory is one bucket, at 1e6 or 1e9 rows.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        meta = json.loads((directory / "meta.json").read_text())
        self.bits = int(meta["bits"])

    def bucket_of(self, ids: np.ndarray) -> np.ndarray:
        if self.bits == 0:
            return np.zeros(ids.size, dtype=np.int64)
        h = ids.astype(np.int64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        return (h >> np.uint64(64 - self.bits)).astype(np.int64)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = np.zeros(ids.size, dtype=bool)
        packed = np.zeros(ids.size, dtype=np.int64)
        b = self.bucket_of(ids)
        for bucket in np.unique(b).tolist():
            sel = np.flatnonzero(b == bucket)
            path = self.directory / f"ids_{bucket}.npy"
            if not path.exists():
                continue
            sorted_ids = np.load(path, mmap_mode="r")
            if sorted_ids.size == 0:
                continue
            pos = np.minimum(np.searchsorted(sorted_ids, ids[sel]), sorted_ids.size - 1)
            hit = np.asarray(sorted_ids[pos]) == ids[sel]
            loc = np.load(self.directory / f"loc_{bucket}.npy", mmap_mode="r")
            found[sel] = hit
            packed[sel[hit]] = np.asarray(loc[pos[hit]])
            del sorted_ids, loc
        return found, packed


def _build_index(work: Path, workers: int, n_rows: int, source: str, key: str) -> None:
    out = work / INDEX_DIR
    out.mkdir()
    bits = max(0, math.ceil(math.log2(max(n_rows, 1) / INDEX_BUCKET_ROWS))) if n_rows > INDEX_BUCKET_ROWS else 0
    atomic_write_json(out / "meta.json", {"bits": bits, "rows": n_rows, "key": key})
    index = DirectorIndex(out)
    raws = [work / f"index_raw_{w}.bin" for w in range(workers)]
    n_b = 1 << bits
    if bits:
        parts = [out / f"unsorted_{b}.bin" for b in range(n_b)]
        for raw in raws:
            with open(raw, "rb") as fh:
                while block := fh.read(INDEX_BUCKET_ROWS * 8):
                    pairs = np.frombuffer(block, dtype=np.int64).reshape(-1, 2)
                    b = index.bucket_of(pairs[:, 0])
                    order = np.argsort(b, kind="stable")
                    b_sorted = b[order]
                    cuts = np.flatnonzero(np.concatenate([[True], b_sorted[1:] != b_sorted[:-1], [True]]))
                    for c0, c1 in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
                        with open(parts[int(b_sorted[c0])], "ab") as out_fh:
                            out_fh.write(pairs[order[c0:c1]].tobytes())
            raw.unlink()
    else:
        parts = raws
    for b in range(n_b):
        chunks = [np.fromfile(p, dtype=np.int64).reshape(-1, 2) for p in ([parts[b]] if bits else parts) if p.exists()]
        pairs = np.concatenate(chunks) if chunks else np.empty((0, 2), np.int64)
        order = np.argsort(pairs[:, 0], kind="stable")
        ids = pairs[order, 0]
        dup = np.flatnonzero(ids[1:] == ids[:-1])
        if dup.size:
            raise CatalogError(source, f"duplicate primary key values in the director table (e.g. {int(ids[dup[0]])}, "
                               f"{dup.size} duplicate(s) in one index bucket)", key)
        np.save(out / f"ids_{b}.npy", ids)
        np.save(out / f"loc_{b}.npy", pairs[order, 1])
        for p in ([parts[b]] if bits else parts):
            p.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ the driver
def _own_peak_rss_kb() -> int:
    """This process's own peak RSS (kB): VmHWM of /proc/self/status.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` is not that on Linux: exec keeps the peak of the address
    space it replaced, so a process started by vfork/posix_spawn (subprocess.Popen) reports its
    parent's peak when that is larger (a bench that generated 1e7 rows showed 426 MB for a
    partitioner whose own peak was 374 MB).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def partition_table(
    source: str | Path | InputSpec,
    table: TableSchema,
    out_root: str | Path,
    chunker: Chunker,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    force: bool = False,
    progress: bool = False,
    workers: int = 1,
) -> PartitionSummary:
    """Partition one table into ``out_root/<table.name>/``; a child needs its director partitioned first.

    ``source`` is a converted Parquet file (the ``convert`` route) or an :class:`InputSpec` (CSV,
    TSV, Parquet or FITS, columns named as in the files). Two passes: (1) each worker reads its
    split in batches, locates every row (numpy), renders each row once and appends
    ``row,chunkId,subChunkId`` for every location to per-bucket spill files; (2) each worker takes
    buckets and writes every chunk file once, from that chunk's runs in input order. Memory is
    one batch (pass 1) or one 64 MB window (pass 2), flat in the number of rows.
    On any error the half-built ``<table>.partitioning/`` is removed.
    """
    t0 = time.monotonic()
    spec = source if isinstance(source, InputSpec) else InputSpec((str(source),), "parquet")
    out_root = Path(out_root)
    final = out_root / table.name
    work = out_root / f"{table.name}.partitioning"
    if final.exists() and not force:
        raise CatalogError(str(final), "already partitioned (use --force to replace)")
    if table.director:
        index_dir = out_root / table.director / INDEX_DIR
        if not (index_dir / "meta.json").exists():
            raise CatalogError(str(index_dir), f"partition the director table {table.director} first")
        key = table.director_key or table.primary_key
    else:
        index_dir = None
        if not (table.ra and table.dec):
            raise CatalogError(spec.paths[0], "director table needs RA/Dec columns")
        key = table.primary_key
    names = column_names(spec, spec.paths[0])
    need = [key] if table.director else [table.ra, table.dec, key]
    missing = [c for c in need if c not in names]
    if missing:
        raise MissingColumnsError(spec.paths[0], f"no column(s) {', '.join(missing)} (columns: {', '.join(names)})",
                                  details={"missing": missing, "columns": names})
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        summary = _partition(spec, table, names, key, index_dir, work, chunker, batch_rows, workers, progress)
        summary.seconds = time.monotonic() - t0
        summary.out_dir = str(final)
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        summary.peak_rss_mb = max(_own_peak_rss_kb(), child_rss) / 1024
        with atomic_open(work / SUMMARY_FILE, "w") as fh:
            # json.dumps without indent is the C encoder; json.dump (any indent) is pure Python: 4 s for 146k chunks
            fh.write(json.dumps(summary.to_json(), separators=(",", ":")))
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        return summary
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _partition(spec, table, names, key, index_dir, work, chunker, batch_rows, workers, progress) -> PartitionSummary:
    splits = make_splits(spec, max(1, workers))
    n_rows = count_rows(spec)
    if n_rows == 0 and table.is_director:
        raise CatalogError(spec.paths[0], "the director table has no rows")
    workers = max(1, min(workers, len(splits)))
    est = _estimate_spill_bytes(spec, splits[0], table, key, chunker, n_rows)
    buckets = int(min(4096, max(4 * workers, math.ceil(est / SPILL_BUCKET_BYTES))))
    delim = spec.out_delimiter
    jobs = [
        _Job(spec, s, (chunker.num_stripes, chunker.num_sub_stripes, chunker.overlap), table.ra, table.dec, key,
             str(index_dir) if index_dir else None, str(work), i, buckets, batch_rows, delim)
        for i, s in enumerate(splits)
    ]
    summary = PartitionSummary(table.name, chunker.config(), columns=names + ["chunkId", "subChunkId"], director=table.director,
                               delimiter=delim, workers=workers)
    with _pool(workers) as run:
        results = sorted(run(_run_job, jobs, progress, f"partition {table.name}"), key=lambda r: r["worker"])
        bad = [(r, j) for r, j in zip(results, jobs, strict=True) if r["first_bad"] is not None]
        if bad:
            r, j = bad[0]
            fb = r["first_bad"]
            row = fb["row"] + (j.split.first_row if j.split.first_row >= 0 else csv_row_of_offset(j.split.path, j.split.a, j.split.header_skipped))
            count = sum(x["bad_count"] for x in results)
            what = "declination outside [-90, 90] deg" if fb["column"] == table.dec else "right ascension outside [0, 360] deg"
            if not math.isfinite(fb["value"]):
                what = "non-finite (or missing) position"
            raise CatalogError(j.split.path, f"{what}: {count} row(s), the first is row {row + 1} (value {fb['value']!r}); "
                               "nothing was written", fb["column"],
                               {"row": row + 1, "value": repr(fb["value"]), "bad_rows": count, "table": table.name})
        files = run(_write_bucket, [(str(work), str(work), b, len(jobs)) for b in range(buckets)], False, "")
    _BUFFERS.clear()
    counts = sum(r["counts"] for r in results)
    summary.rows = sum(r["rows"] for r in results)
    summary.orphan_rows = sum(r["orphans"] for r in results)
    for w in range(len(jobs)):
        for b in range(buckets):
            for ext in ("bin", "idx"):
                (work / f"spill_{w}_{b}.{ext}").unlink(missing_ok=True)
    nz = np.flatnonzero(counts)
    for k in nz.tolist():
        entry = summary.chunks.setdefault(k >> 1, {"rows": 0, "overlap_rows": 0})
        entry["overlap_rows" if k & 1 else "rows"] = int(counts[k])
    summary.overlap_rows = int(counts[1::2].sum())
    summary.files = int(sum(files))
    if table.is_director:
        _build_index(work, len(jobs), summary.rows, spec.paths[0], key)
        footprint = _Footprint()
        for r in results:
            footprint.merge(r["footprint"])
        covered = footprint.chunks(chunker)
        summary.empty_chunks = [c for c in covered if c not in summary.chunks]
        summary.overlap_only_chunks = sorted(c for c, v in summary.chunks.items() if v["rows"] == 0)
    return summary


def _estimate_spill_bytes(spec: InputSpec, split: Split, table: TableSchema, key: str, chunker: Chunker, n_rows: int | None) -> float:
    """Spill size from the first batch: rendered bytes per row x locations per row x rows."""
    need = [key] if table.director else [table.ra, table.dec]
    float_cols = () if table.director else (table.ra, table.dec)
    for _, body, cols in iter_batches(spec, split, need, 65_536, float_cols=float_cols):
        n = len(body) if body is not None else 0
        if n == 0:
            return 0.0
        per_row = (body.nbytes - 8 * (n + 1)) / n + 16
        locs = 1.0
        if not table.director:
            ra, dec = cols[table.ra], cols[table.dec]
            ok = ~_bad_positions(ra, dec)[0]
            if ok.any():
                locs = 1.0 + chunker.locate_all(ra[ok], dec[ok]).overlap_row.size / int(ok.sum())
        if n_rows is None:  # CSV: rows from the file sizes
            n_rows = int(sum(os.path.getsize(p) for p in spec.paths) / max(per_row - 17, 1.0))
        return per_row * locs * n_rows
    return 0.0


@contextmanager
def _pool(workers: int):
    """``run(fn, jobs, progress, desc)``: in this process for one worker, else a spawned pool (no fork of threads)."""
    from tqdm import tqdm

    if workers == 1:
        def run(fn, jobs, progress, desc):
            return [fn(j) for j in tqdm(jobs, desc=desc, unit="split", disable=not progress or len(jobs) < 2)]

        yield run
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        def run(fn, jobs, progress, desc):
            return list(tqdm(pool.imap(fn, jobs), total=len(jobs), desc=desc, unit="split", disable=not progress))

        yield run


def read_summary(table_dir: str | Path) -> PartitionSummary:
    path = Path(table_dir) / SUMMARY_FILE
    try:
        return PartitionSummary.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CatalogError(str(path), f"not a partition summary: {err}") from err
