"""Streaming partitioner: a converted table in, Qserv chunk files out (what ``sph-partition`` writes).

For a director table every row goes to ``chunk_<id>.txt`` of its chunk and, once per sub-chunk
overlap region that holds it, to ``chunk_<id>_overlap.txt`` of that chunk (which may be its own
chunk: overlaps are per sub-chunk). A child table has no position of its own that counts: each
row goes to the chunk and sub-chunk of its director row, found through the director's
objectId index (Qserv's "secondary" or director index), and child tables have no overlap.

Files are CSV without header, ``\\N`` for NULL, booleans as 0/1, with ``chunkId`` and
``subChunkId`` appended as the last two fields; ``partition.json`` lists the columns.

Memory is bounded by constants, not by the number of rows: one batch in pass 1 (DEFAULT_BATCH_ROWS
rows), one hash bucket of the director index while it is sorted (16 bytes per id of at most
INDEX_BUCKET_ROWS ids), one spill bucket of the buffer budget in pass 2 (``buffer_mb``, twice it
with the gathered copy); the allocators' freed memory is given back between the passes. The
director index that places child rows (id and packed chunk/sub-chunk, 16 bytes per director
row) is memory-mapped files. Output is built in
``<Table>.partitioning/`` and renamed to ``<Table>/`` when complete, so a half-partitioned table
never looks finished.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import mmap
import multiprocessing as mp
import os
import resource
import shutil
import threading
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
from appliance.qserv.errors import CatalogError, MissingColumnsError, PartitionConfigError
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
INDEX_BUCKET_ROWS = 2_000_000  # ids sorted at once: 16 MB (+ 16 MB of sort permutation)
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
    phases: dict = field(default_factory=dict)  # wall seconds per phase (plan, pass1, index, pass2, ...)

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
    buffer_bytes: int = 48 << 20  # the buffer budget (see partition_table)
    index_bits: int = 0  # director: its (id, location) pairs are scattered into 2^index_bits hash buckets


@functools.lru_cache(maxsize=4)
def _dense_chunks(grid: tuple[int, int, float]) -> tuple[np.ndarray, int]:
    """chunkId -> 0..n-1 (its rank among valid chunks), and the number of keys (2 per chunk id).

    Kept per process (30 ms at 340/3, and a process runs many pass-1 jobs); the array is read-only.
    """
    ids = np.asarray(Chunker(*grid).all_chunks(), dtype=np.int64)
    dense = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    dense[ids] = np.arange(ids.size)
    dense.flags.writeable = False
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


def _place(body: pa.Array, keys: np.ndarray, rows: np.ndarray, subs: np.ndarray, buckets_of_key: np.ndarray,
           spill: _Spill, delim: str, piece: int) -> None:
    """Sort locations by (bucket, key), append ``<row><d>chunkId<d>subChunkId`` per location to the spill."""
    bucket = buckets_of_key[keys]
    # (bucket, key, row, sub-chunk): a file's rows come in input order whatever the batches or
    # workers were, so --workers 2 writes the same bytes as one worker
    order = _location_order(bucket * len(buckets_of_key) + keys, rows, subs, len(buckets_of_key) * int(bucket.max(initial=0) + 1))
    keys, rows, subs, bucket = keys[order], rows[order], subs[order], bucket[order]
    sep = pa.scalar(delim, pa.large_string())
    for p0 in range(0, keys.size, piece):
        p1 = min(p0 + piece, keys.size)
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
    dense, n_keys = _dense_chunks(job.grid)
    buckets_of_key = np.repeat(dense % job.buckets, 2)
    spill = _Spill(work, job.worker, job.buckets)
    counts = np.zeros(n_keys, dtype=np.int64)
    footprint = _Footprint()
    index = DirectorIndex(Path(job.index_dir)) if job.index_dir else None
    # the director's (id, location) pairs, unsorted, per hash bucket as two files (ids, locations)
    raw = _RawIndex(work, job.worker, job.index_bits) if index is None else None
    rows_done = orphans = 0
    bad_count, first_bad = 0, None
    float_cols = (job.ra, job.dec) if index is None else ()
    need = [c for c in (job.ra, job.dec, job.key) if c] if index is None else [job.key]
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
            raw.append(ids.astype(np.int64, copy=False), packed)  # type: ignore[union-attr]
        else:
            found, packed = index.lookup(np.asarray(cols[job.key]).astype(np.int64))
            orphans += int((~found).sum())
            rows = np.flatnonzero(found)
            packed = packed[rows]
            keys = (packed >> 32) * 2
            subs = (packed & 0xFFFFFFFF).astype(np.int32)
        counts += np.bincount(keys, minlength=n_keys)
        if keys.size:
            _place(body, keys, rows, subs, buckets_of_key, spill, job.delimiter, _render_piece(job.buffer_bytes))  # type: ignore[arg-type]
        rows_done += n
    _release_memory()  # in a pool worker: before it takes pass-2 buckets
    return {
        "worker": job.worker, "rows": rows_done, "orphans": orphans, "counts": counts,
        "footprint": footprint, "bad_count": bad_count, "first_bad": first_bad
    }


DEFAULT_BUFFER_MB = 48.0  # the buffer budget: one pass-2 bucket's spill, read at once
BUFFER_MB_RANGE = (1 / 16, 16384.0)
SPILL_BUCKET_BYTES = int(DEFAULT_BUFFER_MB * (1 << 20))  # aim of the bucket count: one bucket's spill read at once in pass 2
# what scales with the budget (at the default: 160 MB, 64 MB, 262,144 locations):


def _buffer_bytes(buffer_mb: float) -> int:
    """The budget in bytes; a bad value is one line naming the option, exit 2 (PartitionConfigError)."""
    lo, hi = BUFFER_MB_RANGE
    try:
        mb = float(buffer_mb)
    except (TypeError, ValueError):
        mb = math.nan
    if isinstance(buffer_mb, bool) or not lo <= mb <= hi:  # NaN too
        raise PartitionConfigError(f"buffer_mb (--buffer-mb): expected a number of MB from {lo} to {hi:g}, got {buffer_mb!r}")
    return int(mb * (1 << 20))


def _workers(workers) -> int:
    """The number of processes; a bad value is one line naming the option, exit 2 (PartitionConfigError)."""
    try:
        n = int(workers) if isinstance(workers, str) else workers
    except ValueError:
        n = None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PartitionConfigError(f"workers (--workers): expected a whole number of processes, 1 or more, got {workers!r}")
    return n


def _read_limit(buffer_bytes: int) -> int:
    """A worker's spill of one bucket bigger than this (skewed data) is memory-mapped instead of read."""
    return buffer_bytes * 10 // 3


def _gather_limit(buffer_bytes: int) -> int:
    """Mapped spill pages are dropped after this many bytes gathered: RSS stays flat."""
    return buffer_bytes * 4 // 3


def _render_piece(buffer_bytes: int) -> int:
    """Locations joined into text at once: ~20 MB of output in flight at the default budget."""
    return max(256, buffer_bytes // 192)


def _write_bucket(args: tuple[str, str, int, int, int]) -> int:
    """Pass 2 for one bucket: every key's runs from every worker, in order, written as one file each.

    The runs (one per key per batch: about one per row for a whole-sky table) are gathered by one
    Arrow ``take`` over the spills seen as binary arrays, in pieces of at most ``_gather_limit`` bytes;
    each file is then one ``writev`` of a slice of the gathered piece.
    """
    work, final_dir, bucket, workers, buffer_bytes = args
    read_limit, gather_limit = _read_limit(buffer_bytes), _gather_limit(buffer_bytes)
    work_p = Path(work)
    maps, arrays, keys_l = [], [], []
    runs = piece = view = buf = None
    files = 0
    try:
        spills = []
        for w in range(workers):
            data_p, side_p = work_p / f"spill_{w}_{bucket}.bin", work_p / f"spill_{w}_{bucket}.idx"
            if side_p.exists() and (size := data_p.stat().st_size):
                spills.append((data_p, side_p, size))
        # the splits' spills are read into one reused buffer (mmap page faults cost 2.5 s of system
        # time per 1e6 whole-sky rows) while they fit in ``_read_limit`` together; beyond it (skewed
        # data) they are mapped and their pages dropped as we go
        read, total = [], 0
        for _, _, size in spills:
            read.append(total + size <= read_limit)
            total += size if read[-1] else 0
        buf = memoryview(_reusable(0, total, buffer_bytes)) if total else None
        pos = 0
        for (data_p, side_p, size), is_read in zip(spills, read, strict=True):
            side = np.fromfile(side_p, dtype=np.int64).reshape(-1, 2)
            with open(data_p, "rb") as fh:
                if is_read:
                    mm = buf[pos : pos + size]  # type: ignore[index]
                    pos += size
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
            # as many whole keys as fit in gather_limit bytes (at least one)
            h = max(g + 1, int(np.searchsorted(group_end, base + gather_limit, side="right")))
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
        if buf is not None:
            buf.release()
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


def _reusable(slot: int, size: int, floor: int = SPILL_BUCKET_BYTES) -> bytearray:
    """One growing read buffer per worker's spill, reused bucket after bucket.

    A fresh 48 MB bytes object per bucket costs its page faults again each time (about 1 s of
    system time per 1e7 rows); reusing the pages does not.
    """
    buf = _BUFFERS.get(slot)
    if buf is None or len(buf) < size:
        buf = _BUFFERS[slot] = bytearray(max(size, floor))
    return buf


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


class DirectorIndex:
    """The director's id -> (chunkId, subChunkId) index: hash buckets of sorted ids, memory-mapped.

    Built by an external sort: pass 1 appends (id, location) pairs unsorted; at the end they are
    scattered into 2^k buckets by a multiplicative hash of the id (k chosen so one bucket holds at
    most INDEX_BUCKET_ROWS pairs), and each bucket is sorted on its own, its ids and then its
    locations. Nothing holds the whole table: peak memory is 16 bytes per pair of one bucket
    (32 MB at most), at 1e6 or 1e9 rows.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        meta = json.loads((directory / "meta.json").read_text())
        self.bits = int(meta["bits"])

    def bucket_of(self, ids: np.ndarray) -> np.ndarray:
        return _hash_bucket(ids, self.bits)

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


INDEX_SCATTER_ROWS = 1 << 20  # (id, location) pairs scattered into hash buckets at once: 16 MB read
INDEX_WRITE_ROWS = 1 << 18  # sorted ids (or locations) gathered and written at once: 2 MB


def _hash_bucket(ids: np.ndarray, bits: int) -> np.ndarray:
    """The director index's bucket of each id: the top ``bits`` of a multiplicative hash."""
    if bits == 0:
        return np.zeros(ids.size, dtype=np.int64)
    h = np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h >>= np.uint64(64 - bits)  # in place: one temporary, not three
    return h.view(np.int64)


def _index_bits(n_rows: int) -> int:
    """Hash bits of the director index: buckets of at most INDEX_BUCKET_ROWS ids."""
    return max(0, math.ceil(math.log2(n_rows / INDEX_BUCKET_ROWS))) if n_rows > INDEX_BUCKET_ROWS else 0


class _RawIndex:
    """One pass-1 job's (id, location) pairs, unsorted, scattered by hash into ``2^bits`` pairs of files.

    A bucket at ``k <= bits`` bits is the fine buckets ``[b << (bits - k), (b + 1) << (bits - k))``
    (the top bits of one hash), so the index is sorted bucket by bucket without a serial scatter.
    """

    def __init__(self, work: Path, job: int, bits: int):
        self.work, self.job, self.bits = work, job, bits

    @staticmethod
    def paths(work: Path, job: int, fine: int) -> tuple[Path, Path]:
        return work / f"index_ids_{job}_{fine}.bin", work / f"index_loc_{job}_{fine}.bin"

    def append(self, ids: np.ndarray, locs: np.ndarray) -> None:
        if self.bits == 0:
            cuts, order = [0, ids.size], None
        else:
            b = _hash_bucket(ids, self.bits)
            order = np.argsort(b.astype(np.uint16), kind="stable")  # a radix sort
            cuts = np.concatenate([[0], np.cumsum(np.bincount(b, minlength=1 << self.bits))]).tolist()
        for fine in range(len(cuts) - 1):
            c0, c1 = cuts[fine], cuts[fine + 1]
            if c1 > c0:
                sel = slice(None) if order is None else order[c0:c1]
                ids_p, loc_p = self.paths(self.work, self.job, fine)
                with open(ids_p, "ab") as fh:
                    fh.write(ids[sel].tobytes())
                with open(loc_p, "ab") as fh:
                    fh.write(locs[sel].tobytes())


def _build_index(work: Path, workers: int, n_rows: int, source: str, key: str, run=None, fine_bits: int = 0) -> None:
    """Sort the director's (id, location) pairs of pass 1 into the hash buckets of :class:`DirectorIndex`.

    Pass 1 scattered the pairs into ``2^fine_bits`` hash buckets; each bucket of the index (as
    many or fewer bits) is sorted by ``run`` (the pool's: one job per bucket, in parallel). Only
    when the rows outgrew the estimate (CSV) are the pairs scattered again here. Memory is 16 bytes
    per pair of the largest bucket (its ids or its locations, and the sort permutation), at most
    INDEX_BUCKET_ROWS pairs whatever the table's size, plus pieces of INDEX_SCATTER_ROWS /
    INDEX_WRITE_ROWS pairs.
    """
    out = work / INDEX_DIR
    out.mkdir()
    bits = _index_bits(n_rows)
    atomic_write_json(out / "meta.json", {"bits": bits, "rows": n_rows, "key": key})
    n_b = 1 << bits
    fine = [[_RawIndex.paths(work, w, f) for w in range(workers)] for f in range(1 << fine_bits)]
    if bits <= fine_bits:
        step = 1 << (fine_bits - bits)
        parts = [[p for f in range(b * step, (b + 1) * step) for p in fine[f]] for b in range(n_b)]
    else:
        parts = [[(out / f"unsorted_ids_{b}.bin", out / f"unsorted_loc_{b}.bin")] for b in range(n_b)]
        for ids_p, loc_p in (p for group in fine for p in group):
            if not ids_p.exists():
                continue
            with open(ids_p, "rb") as f_ids, open(loc_p, "rb") as f_loc:
                while True:
                    ids = np.fromfile(f_ids, dtype=np.int64, count=INDEX_SCATTER_ROWS)
                    if not ids.size:
                        break
                    locs = np.fromfile(f_loc, dtype=np.int64, count=ids.size)
                    b = _hash_bucket(ids, bits)
                    order = np.argsort(b.astype(np.uint16) if bits <= 16 else b, kind="stable")  # a radix sort
                    cuts = np.concatenate([[0], np.cumsum(np.bincount(b, minlength=n_b))]).tolist()
                    del b
                    for bucket in range(n_b):
                        c0, c1 = cuts[bucket], cuts[bucket + 1]
                        if c1 > c0:
                            sel = order[c0:c1]
                            (u_ids, u_loc), = parts[bucket]
                            with open(u_ids, "ab") as fh:
                                fh.write(ids[sel].tobytes())
                            with open(u_loc, "ab") as fh:
                                fh.write(locs[sel].tobytes())
                    del ids, locs, order
            ids_p.unlink()
            loc_p.unlink()
    run = run or (lambda fn, jobs, progress, desc: [fn(j) for j in jobs])
    dups = run(_sort_index_bucket, [(str(out), b, [(str(i), str(lc)) for i, lc in parts[b]]) for b in range(n_b)], False, "")
    for first_dup, n_dup in dups:
        if n_dup:
            raise CatalogError(source, f"duplicate primary key values in the director table (e.g. {first_dup}, "
                               f"{n_dup} duplicate(s) in one index bucket)", key)


def _sort_index_bucket(args: tuple[str, int, list[tuple[str, str]]]) -> tuple[int | None, int]:
    """One bucket of the director index sorted and written (``ids_<b>.npy``, ``loc_<b>.npy``) from its
    unsorted (ids, locations) files; returns the first duplicate id and the number of duplicates
    (then the locations are not written).
    """
    out_s, b, parts_s = args
    out = Path(out_s)
    present = [(Path(i), Path(lc)) for i, lc in parts_s if Path(i).exists()]
    sizes = [i.stat().st_size // 8 for i, _ in present]
    ids = _read_concat([i for i, _ in present], sizes)
    # the ids are meant to be unique, and then any sort gives the stable sort's permutation;
    # duplicates are refused by the caller whatever their order
    order = np.argsort(ids)
    first_dup, n_dup = None, 0
    with open(out / f"ids_{b}.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<i8", "fortran_order": False, "shape": (ids.size,)})
        last = None
        for p0 in range(0, ids.size, INDEX_WRITE_ROWS):
            piece = ids[order[p0 : p0 + INDEX_WRITE_ROWS]]
            joined = piece if last is None else np.concatenate([last, piece])
            dup = np.flatnonzero(joined[1:] == joined[:-1])
            if dup.size and first_dup is None:
                first_dup = int(joined[dup[0]])
            n_dup += dup.size
            last = piece[-1:]
            fh.write(piece.tobytes())
    if n_dup:
        return first_dup, int(n_dup)
    del ids
    locs = _read_concat([lc for _, lc in present], sizes)
    with open(out / f"loc_{b}.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<i8", "fortran_order": False, "shape": (locs.size,)})
        for p0 in range(0, locs.size, INDEX_WRITE_ROWS):
            fh.write(locs[order[p0 : p0 + INDEX_WRITE_ROWS]].tobytes())
    del locs, order
    for i, lc in present:
        i.unlink()
        lc.unlink(missing_ok=True)
    _release_memory()
    return None, 0


def _read_concat(paths: list[Path], sizes: list[int]) -> np.ndarray:
    """The int64 contents of ``paths`` (``sizes`` values each) as one array, read in place (no concatenate copy)."""
    arr = np.empty(sum(sizes), dtype=np.int64)
    pos = 0
    for path, n in zip(paths, sizes, strict=True):
        with open(path, "rb") as fh:
            got = fh.readinto(memoryview(arr[pos : pos + n]).cast("B"))
        if got != 8 * n:
            raise CatalogError(str(path), f"index file truncated: {got} of {8 * n} bytes")
        pos += n
    return arr


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
    buffer_mb: float = DEFAULT_BUFFER_MB,
) -> PartitionSummary:
    """Partition one table into ``out_root/<table.name>/``; a child needs its director partitioned first.

    ``source`` is a converted Parquet file (the ``convert`` route) or an :class:`InputSpec` (CSV,
    TSV, Parquet or FITS, columns named as in the files). Two passes: (1) each worker reads its
    split in batches, locates every row (numpy), renders each row once and appends
    ``row,chunkId,subChunkId`` for every location to per-bucket spill files; (2) each worker takes
    buckets and writes every chunk file once, from that chunk's runs in input order. Between
    them the director's index is sorted, one hash bucket (at most INDEX_BUCKET_ROWS ids) at a
    time. Memory is one batch (pass 1), one index bucket, or one spill bucket (pass 2): flat in
    the number of rows. ``buffer_mb`` is pass 2's budget: the spill is cut into buckets of about
    that many MB, each read at once (default 48; smaller lowers the peak by about twice the
    difference, at the cost of more files and some CPU). ``workers`` (1 or more; else
    PartitionConfigError, exit 2) is this process plus ``workers - 1`` spawned ones, taking jobs as
    they become free: 8 splits per worker in pass 1, one index bucket, then one spill bucket, per
    job; the files are the same bytes whatever the number. ``summary.phases`` holds each phase's wall
    seconds. On any error the half-built ``<table>.partitioning/`` is removed.
    """
    t0 = time.monotonic()
    buffer_bytes = _buffer_bytes(buffer_mb)
    workers = _workers(workers)
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
        summary = _partition(spec, table, names, key, index_dir, work, chunker, batch_rows, workers, progress, buffer_bytes)
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


SPLITS_PER_WORKER = 8  # --workers N > 1: the input is cut into 8 N splits (one pass-1 job each)


def _partition(spec, table, names, key, index_dir, work, chunker, batch_rows, workers, progress, buffer_bytes) -> PartitionSummary:
    t_mark = [time.monotonic()]
    phases: dict = {}

    def mark(name):
        now = time.monotonic()
        phases[name] = round(now - t_mark[0], 3)
        t_mark[0] = now

    # several splits per worker, taken by whichever process is free: the processes end pass 1 together
    splits = make_splits(spec, 1 if workers <= 1 else SPLITS_PER_WORKER * workers)
    n_rows = count_rows(spec)
    if n_rows == 0 and table.is_director:
        raise CatalogError(spec.paths[0], "the director table has no rows")
    workers = max(1, min(workers, len(splits)))
    est, est_rows = _estimate_spill_bytes(spec, splits[0], table, key, chunker, n_rows)
    # pass 1 scatters the director's pairs into the index's hash buckets (or 2^k times finer ones,
    # merged after it): the rows are known exactly only then for CSV, so from an estimate with room
    fine_bits = min(16, _index_bits(n_rows if n_rows is not None else 4 * est_rows)) if table.is_director else 0
    buckets = int(min(4096, max(4 * workers, math.ceil(est / buffer_bytes))))
    delim = spec.out_delimiter
    jobs = [
        _Job(spec, s, (chunker.num_stripes, chunker.num_sub_stripes, chunker.overlap), table.ra, table.dec, key,
             str(index_dir) if index_dir else None, str(work), i, buckets, batch_rows, delim, buffer_bytes, fine_bits)
        for i, s in enumerate(splits)
    ]
    summary = PartitionSummary(table.name, chunker.config(), columns=names + ["chunkId", "subChunkId"], director=table.director,
                               delimiter=delim, workers=workers)
    mark("plan")
    counts = np.zeros(_dense_chunks((chunker.num_stripes, chunker.num_sub_stripes, chunker.overlap))[1], dtype=np.int64)

    def add_counts(r: dict) -> None:  # as each job ends: one array of counts held, not one per job
        counts[: r["counts"].size] += r.pop("counts")

    def tally() -> None:  # with workers, in this process while the children start on pass 2
        nz = np.flatnonzero(counts)
        for k in nz.tolist():
            entry = summary.chunks.setdefault(k >> 1, {"rows": 0, "overlap_rows": 0})
            entry["overlap_rows" if k & 1 else "rows"] = int(counts[k])
        summary.overlap_rows = int(counts[1::2].sum())
        summary.orphan_rows = sum(r["orphans"] for r in results)
        if table.is_director:
            footprint = _Footprint()
            for r in results:
                footprint.merge(r["footprint"])
            covered = footprint.chunks(chunker)
            summary.empty_chunks = [c for c in covered if c not in summary.chunks]
            summary.overlap_only_chunks = sorted(c for c, v in summary.chunks.items() if v["rows"] == 0)

    with _pool(workers) as run:
        mark("pool_start")
        results = sorted(run(_run_job, jobs, progress, f"partition {table.name}", each=add_counts), key=lambda r: r["worker"])
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
        summary.rows = sum(r["rows"] for r in results)
        mark("pass1")
        _release_memory()
        if table.is_director:
            # before pass 2: a duplicate id is refused before any chunk file is written, and the sort
            # runs while the pass-2 buffers are not allocated yet (its peak does not add to theirs)
            _build_index(work, len(jobs), summary.rows, spec.paths[0], key, run, fine_bits)
            _release_memory()
        mark("index")
        files = run(_write_bucket, [(str(work), str(work), b, len(jobs), buffer_bytes) for b in range(buckets)], False, "",
                    first=tally if workers > 1 else None)
        mark("pass2")
    mark("pool_stop")
    _BUFFERS.clear()
    _release_memory()
    if workers == 1:  # after pass 2 and its buffers: the tally's dicts (~45 MB at 340/3) do not add to their peak
        tally()
    for w in range(len(jobs)):
        for b in range(buckets):
            for ext in ("bin", "idx"):
                (work / f"spill_{w}_{b}.{ext}").unlink(missing_ok=True)
    summary.files = int(sum(files))
    mark("finish")
    summary.phases = phases
    return summary


def _release_memory() -> None:
    """Give the freed memory of a finished pass back to the system, so the next pass starts from a low base.

    Freed numpy and Arrow buffers otherwise stay in the allocators' heaps (glibc malloc, Arrow's
    mimalloc pool) and the next pass's peak adds to them: 30-100 MB, varying from run to run.
    """
    pa.default_memory_pool().release_unused()
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return
    trim(0)


def _estimate_spill_bytes(spec: InputSpec, split: Split, table: TableSchema, key: str, chunker: Chunker,
                          n_rows: int | None) -> tuple[float, int]:
    """Spill size from the first batch (rendered bytes per row x locations per row x rows), and the rows."""
    need = [key] if table.director else [table.ra, table.dec]
    float_cols = () if table.director else (table.ra, table.dec)
    for _, body, cols in iter_batches(spec, split, need, 65_536, float_cols=float_cols):
        n = len(body) if body is not None else 0
        if n == 0:
            return 0.0, 0
        per_row = (body.nbytes - 8 * (n + 1)) / n + 16
        locs = 1.0
        if not table.director:
            ra, dec = cols[table.ra], cols[table.dec]
            ok = ~_bad_positions(ra, dec)[0]
            if ok.any():
                locs = 1.0 + chunker.locate_all(ra[ok], dec[ok]).overlap_row.size / int(ok.sum())
        if n_rows is None:  # CSV: rows from the file sizes
            n_rows = int(sum(os.path.getsize(p) for p in spec.paths) / max(per_row - 17, 1.0))
        return per_row * locs * n_rows, n_rows
    return 0.0, 0


@contextmanager
def _pool(workers: int):
    """``run(fn, jobs, progress, desc)``: the jobs in this process for one worker; for N workers in this
    process and N - 1 spawned children (no fork of threads) at once, each taking the next job when free.

    This process works too, so a child's start-up (its imports, ~0.3 s) overlaps work instead of
    delaying it, and pass 1 (one job per split, several splits per worker) and pass 2 (one job per
    bucket) end within about one job of each other whatever the load of the machine. ``first()``
    runs in this process while the children start on the jobs (serial work that overlaps theirs;
    with one worker, after the jobs); ``each(result)`` is called for every result as it arrives,
    one at a time.
    """
    from tqdm import tqdm

    if workers == 1:
        def run(fn, jobs, progress, desc, first=None, each=None):
            out = []
            for j in tqdm(jobs, desc=desc, unit="split", disable=not progress or len(jobs) < 2):
                out.append(fn(j))
                if each is not None:
                    each(out[-1])
            if first is not None:
                first()
            return out

        yield run
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers - 1) as pool:
        def run(fn, jobs, progress, desc, first=None, each=None):
            with tqdm(total=len(jobs), desc=desc, unit="split", disable=not progress) as bar:
                return _share(pool, workers - 1, fn, jobs, bar.update, first, each)

        yield run


def _share(pool, children: int, fn, jobs: list, done, first=None, each=None) -> list:
    """``[fn(j) for j in jobs]``, the jobs taken in order by this process and by ``children`` pool processes."""
    results: list = [None] * len(jobs)
    if not jobs:
        if first is not None:
            first()
        return results
    lock = threading.Lock()
    state = {"next": 0, "left": len(jobs), "error": None}
    finished = threading.Event()

    def take() -> int | None:
        with lock:
            i = state["next"]
            if i >= len(jobs) or state["error"] is not None:
                return None
            state["next"] = i + 1
            return i

    def complete(i: int, result) -> None:
        results[i] = result
        with lock:
            done(1)
            if each is not None:
                each(result)
            state["left"] -= 1
            if state["left"] == 0:
                finished.set()

    def fail(err: BaseException) -> None:
        with lock:
            if state["error"] is None:
                state["error"] = err
        finished.set()

    def child_done(i: int, r: tuple) -> None:
        if r[0] == "ok":
            complete(i, r[1])
            submit()
        else:
            fail(_unpack_error(r))

    def submit() -> None:  # a child's next job, from the pool's result thread when its last one is done
        i = take()
        if i is not None:
            pool.apply_async(_guarded, ((fn, jobs[i]),), callback=lambda r: child_done(i, r), error_callback=fail)

    for _ in range(children):
        submit()
    try:
        if first is not None:
            first()
        while (i := take()) is not None:
            complete(i, fn(jobs[i]))
    except BaseException as err:
        fail(err)
        raise
    finished.wait()
    if state["error"] is not None:
        raise state["error"]
    return results


def _guarded(args: tuple) -> tuple:
    """A child's job: its result, or its exception as (class, attributes, args).

    An exception is pickled as ``cls(*args)``, which fails in the parent for classes whose
    constructor takes other arguments than its ``args`` (CatalogError): the pool's result thread
    would die and the run would hang. Class, ``__dict__`` and ``args`` rebuild any of them.
    """
    fn, job = args
    try:
        return ("ok", fn(job))
    except Exception as err:  # noqa: BLE001  (re-raised in the parent)
        return ("error", type(err), dict(err.__dict__), err.args)


def _unpack_error(r: tuple) -> BaseException:
    _, cls, attrs, args = r
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(attrs)
    return err


def read_summary(table_dir: str | Path) -> PartitionSummary:
    path = Path(table_dir) / SUMMARY_FILE
    try:
        return PartitionSummary.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CatalogError(str(path), f"not a partition summary: {err}") from err
