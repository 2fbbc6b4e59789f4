"""Table inputs of the partitioner: CSV/TSV (lines kept as they are), Parquet and FITS, split for workers.

Why splits: ``--workers N`` gives each process a contiguous part of the input (Parquet row groups,
FITS row ranges, CSV byte ranges cut at line ends, as ``sph-partition`` cuts its input into
blocks), so concatenating the workers' output in split order is the single-process output.

A batch is ``(first_row, body, columns)``: ``body`` holds each row's output text *preceded* by a
newline (``"\\n<row text>"``), in one Arrow large_string array whose data buffer is the rendered
block itself, so a row is never copied before it is placed; ``columns`` are the numpy arrays the
partitioner needs (positions, ids). CSV rows are passed through byte for byte (the input's own
number formatting and NULL spelling, like ``sph-partition``); Parquet and FITS rows are rendered
as CSV (``\\N`` for NULL, booleans 0/1) by the same function the loaders use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from appliance.qserv.errors import CatalogError

FORMATS = ("csv", "tsv", "parquet", "fits")
CSV_BLOCK_BYTES = 8 << 20  # ~130k rows of a 64-byte CSV line: a few tens of MB per batch in flight


def format_of(path: str) -> str:
    """The input format from a file name (``.csv``, ``.tsv``/``.txt``, ``.parquet``/``.pq``, ``.fits``/``.fit``)."""
    name = path.lower()
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".txt", "tsv"), (".parquet", "parquet"), (".pq", "parquet"),
                        (".fits", "fits"), (".fit", "fits"), (".fits.gz", "fits")):
        if name.endswith(suffix):
            return fmt
    raise CatalogError(path, "cannot tell the format from the name; give --format csv|tsv|parquet|fits")


@dataclass(frozen=True)
class InputSpec:
    """One table's input files and how to read them; columns are named as in the files."""

    paths: tuple[str, ...]
    fmt: str
    fields: tuple[str, ...] | None = None  # CSV/TSV without a header line: the column names in order
    delimiter: str | None = None  # default ',' for csv, tab for tsv

    @property
    def delim(self) -> str:
        return self.delimiter or ("\t" if self.fmt == "tsv" else ",")

    @property
    def out_delimiter(self) -> str:
        """Rows are passed through for CSV/TSV, so the appended chunkId/subChunkId use the input's delimiter."""
        return self.delim if self.fmt in ("csv", "tsv") else ","


@dataclass(frozen=True)
class Split:
    """A contiguous piece of one input file: row groups [a, b), rows [a, b) or bytes [a, b)."""

    path: str
    a: int
    b: int
    first_row: int  # 0-based row of the file where the split starts; -1 if unknown (CSV byte split)
    header_skipped: bool = False


def column_names(spec: InputSpec, path: str) -> list[str]:
    """The columns of an input file (CSV: ``fields`` or the header line)."""
    if spec.fmt in ("csv", "tsv"):
        if spec.fields:
            return list(spec.fields)
        with open(path, "rb") as fh:
            first = fh.readline().rstrip(b"\r\n").decode()
        if not first:
            raise CatalogError(path, "empty file (no header line); name the columns with --fields")
        return [n.strip().strip("\"") for n in first.split(spec.delim)]
    if spec.fmt == "parquet":
        try:
            return pq.ParquetFile(path).schema_arrow.names
        except (OSError, pa.ArrowException) as err:
            raise CatalogError(path, f"cannot read Parquet: {err}") from err
    from astropy.io import fits

    try:
        with fits.open(path, memmap=True) as hdul:
            return list(_fits_hdu(hdul, path).columns.names)
    except OSError as err:
        raise CatalogError(path, f"cannot read FITS: {err}") from err


def _fits_hdu(hdul, path: str):
    for hdu in hdul:
        if isinstance(hdu, __import__("astropy.io.fits", fromlist=["BinTableHDU"]).BinTableHDU):
            return hdu
    raise CatalogError(path, "no binary table HDU")


def count_rows(spec: InputSpec) -> int | None:
    """Rows in the input when the format says so cheaply (Parquet, FITS); None for CSV."""
    if spec.fmt == "parquet":
        return sum(pq.ParquetFile(p).metadata.num_rows for p in spec.paths)
    if spec.fmt == "fits":
        from astropy.io import fits

        n = 0
        for p in spec.paths:
            with fits.open(p, memmap=True) as hdul:
                n += int(_fits_hdu(hdul, p).header["NAXIS2"])
        return n
    return None


def make_splits(spec: InputSpec, workers: int) -> list[Split]:
    """Cut every file into up to ``workers`` contiguous splits, in input order."""
    splits: list[Split] = []
    for path in spec.paths:
        if not Path(path).is_file():
            raise CatalogError(path, "no such input file")
        if spec.fmt == "parquet":
            try:
                md = pq.ParquetFile(path).metadata
            except (OSError, pa.ArrowException) as err:
                raise CatalogError(path, f"cannot read Parquet: {err}") from err
            n_rg = md.num_row_groups
            bounds = np.linspace(0, n_rg, min(workers, max(n_rg, 1)) + 1).round().astype(int)
            rg_rows = np.concatenate([[0], np.cumsum([md.row_group(i).num_rows for i in range(n_rg)])])
            splits += [Split(path, int(a), int(b), int(rg_rows[a])) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        elif spec.fmt == "fits":
            from astropy.io import fits

            with fits.open(path, memmap=True) as hdul:
                n = int(_fits_hdu(hdul, path).header["NAXIS2"])
            bounds = np.linspace(0, n, workers + 1).round().astype(int)
            splits += [Split(path, int(a), int(b), int(a)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        else:
            size = os.path.getsize(path)
            start = 0
            with open(path, "rb") as fh:
                if not spec.fields:
                    start = len(fh.readline())
                cuts = [start]
                for k in range(1, workers):
                    target = max(start, size * k // workers)
                    if target <= cuts[-1]:
                        continue
                    fh.seek(target - 1)
                    fh.readline()  # to the end of the line holding byte target-1
                    if fh.tell() < size and fh.tell() > cuts[-1]:
                        cuts.append(fh.tell())
            cuts.append(size)
            for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
                if b > a:
                    splits.append(Split(path, a, b, 0 if i == 0 else -1, header_skipped=not spec.fields))
    return splits


def csv_row_of_offset(path: str, offset: int, header: bool) -> int:
    """0-based data row starting at byte ``offset`` (counting line ends before it); used only on errors."""
    n = 0
    with open(path, "rb") as fh:
        remaining = offset
        while remaining > 0:
            block = fh.read(min(remaining, 64 << 20))
            if not block:
                break
            n += block.count(b"\n")
            remaining -= len(block)
    return n - (1 if header else 0)


def _body_from_lines(block: bytes, n_lines: int | None = None) -> pa.Array:
    """``block`` (lines, each ending in a newline) as a large_string array of ``"\\n" + line`` values."""
    return _body_from_shifted(memoryview(b"\n" + block[:-1]))


def _body_from_shifted(shifted: memoryview) -> pa.Array:
    """Lines shifted by one byte (a leading newline, the last one dropped) as a large_string array
    of ``"\\n" + line`` values: every value's bytes are contiguous and the array's data buffer is
    ``shifted`` itself (no copy).
    """
    u8 = np.frombuffer(shifted, dtype=np.uint8)
    nl = np.flatnonzero(u8 == 10)
    offsets = np.empty(nl.size + 1, dtype=np.int64)
    offsets[:-1] = nl
    offsets[-1] = len(shifted)
    return pa.Array.from_buffers(pa.large_string(), nl.size, [None, pa.py_buffer(offsets), pa.py_buffer(shifted)])


def render_body(table: pa.Table) -> pa.Array:
    """Rows of a typed table rendered once as CSV (the loaders' format), as a body array."""
    from appliance.qserv.partition import _csv_bytes

    if table.num_rows == 0:
        return pa.array([], pa.large_string())
    return _body_from_lines(_csv_bytes(table))


def iter_batches(spec: InputSpec, split: Split, need: list[str], batch_rows: int, positions_only: bool = False,
                 float_cols: tuple[str, ...] = ()) -> Iterator[tuple[int, pa.Array | None, dict[str, np.ndarray]]]:
    """Batches of one split: (0-based row in the split, body or None if ``positions_only``, columns)."""
    if spec.fmt == "parquet":
        pf = pq.ParquetFile(split.path)
        row = 0
        cols = need if positions_only else None
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=range(split.a, split.b), columns=cols, use_threads=False):
            t = pa.Table.from_batches([batch])
            yield row, None if positions_only else render_body(t), {c: _np(t.column(c), split.path, c) for c in need}
            row += t.num_rows
    elif spec.fmt == "fits":
        from astropy.io import fits

        with fits.open(split.path, memmap=True) as hdul:
            data = _fits_hdu(hdul, split.path).data
            for a in range(split.a, split.b, batch_rows):
                rec = data[a : min(a + batch_rows, split.b)]
                arrays = {n: _native(np.asarray(rec[n])) for n in (need if positions_only else rec.columns.names)}
                body = None
                if not positions_only:
                    t = pa.table({n: _fits_arrow(arr, split.path, n) for n, arr in arrays.items()})
                    body = render_body(t)
                yield a - split.a, body, {c: arrays[c] for c in need}
    else:
        yield from _iter_csv(spec, split, need, positions_only, float_cols)


def _native(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "fiub" and arr.dtype.byteorder not in ("=", "|"):
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _fits_arrow(arr: np.ndarray, path: str, name: str) -> pa.Array:
    if arr.ndim != 1:
        raise CatalogError(path, "array-valued columns are not supported", name)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        return pa.array(arr, mask=bad if bad.any() else None)
    if arr.dtype.kind in "US":
        return pa.array(np.char.rstrip(arr.astype(str)))
    return pa.array(arr)


def _np(col: pa.ChunkedArray, path: str, name: str) -> np.ndarray:
    if col.null_count:
        col = pc.fill_null(col, np.nan) if pa.types.is_floating(col.type) else col
    try:
        return col.to_numpy()
    except pa.ArrowException as err:
        raise CatalogError(path, f"cannot use the column as numbers: {err}", name) from err


def _iter_csv(spec: InputSpec, split: Split, need: list[str], positions_only: bool, float_cols: tuple[str, ...]):
    names = column_names(spec, split.path)
    missing = [c for c in need if c not in names]
    if missing:
        raise CatalogError(split.path, f"no column(s) {', '.join(missing)} among {', '.join(names)}")
    read_opts = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=CSV_BLOCK_BYTES + (1 << 20))
    parse_opts = pacsv.ParseOptions(delimiter=spec.delim, ignore_empty_lines=False, quote_char=False)
    conv = pacsv.ConvertOptions(include_columns=need, null_values=["\\N", "NULL", ""], strings_can_be_null=True,
                                column_types={c: pa.float64() for c in float_cols})
    row = 0
    with open(split.path, "rb") as fh:
        fh.seek(split.a)
        left = split.b - split.a
        carry = b""
        while left > 0 or carry:
            # one buffer per block: byte 0 is the newline the body's first row starts with, then the
            # carried partial line, then the read; the block and its body are views of it (no copies)
            want = min(CSV_BLOCK_BYTES, left) if left > 0 else 0
            buf = bytearray(2 + len(carry) + want)
            buf[0] = 10
            buf[1 : 1 + len(carry)] = carry
            view = memoryview(buf)
            got = fh.readinto(view[1 + len(carry) : 1 + len(carry) + want]) if want else 0
            if want and not got:  # the file shrank under us: what is left is the last block
                left = 0
            left -= got
            end = 1 + len(carry) + got
            if left > 0:
                cut = buf.rfind(b"\n", 1, end) + 1
                if cut == 0:
                    carry = bytes(view[1:end])
                    continue
                carry = bytes(view[cut:end])
                end = cut
            else:
                carry = b""
                if end == 1:
                    break
                if buf[end - 1] != 10:
                    buf[end] = 10
                    end += 1
            block = view[1:end]
            body = _body_from_shifted(view[0 : end - 1])
            n_lines = len(body)
            try:
                t = pacsv.read_csv(pa.py_buffer(block), read_options=read_opts, parse_options=parse_opts, convert_options=conv)
            except pa.ArrowInvalid as err:
                raise CatalogError(split.path, f"cannot parse CSV near data row {row + 1} of the split at byte {split.a}: {err}") from err
            if t.num_rows != n_lines:
                raise CatalogError(split.path, f"{n_lines} lines but {t.num_rows} rows parsed near byte {split.a}: "
                                   "blank lines or quoted line breaks are not supported (as in sph-partition)")
            yield row, None if positions_only else body, {c: _np(t.column(c), split.path, c) for c in need}
            del body, block, view
            row += n_lines
