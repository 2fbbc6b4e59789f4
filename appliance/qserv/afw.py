"""afw.table FITS catalogs (LSST stack SourceCatalog / ObjectCatalog files), read and written.

The layout, as lsst.afw's ``FitsWriter`` produces it (src/table/io/FitsWriter.cc):

* HDU 0 is an empty primary HDU; the catalog is the first binary table HDU after it; further HDUs
  (the "archive" of footprints, PSFs, ...; ``AR_HDU`` points at them) are not part of the table.
* All ``Flag`` fields are packed into ONE column ``flags`` of TFORM ``nX`` (a bit array). The
  header key ``FLAGCOL`` gives its column number, and ``TFLAG1..TFLAGn`` name the bits in order
  (``TFDOCn`` documents bit n). The bits never appear as columns of their own.
* Other fields are columns with ``TTYPEn``/``TUNITn``, documented by ``TDOCn``; ``TCCLSn`` records
  the afw field class (``Scalar``, ``Angle``, ``String``, ``Array``). Angles (``coord_ra``,
  ``coord_dec``) are in radians (``TUNIT = rad``). ``AFW_TABLE_VERSION`` marks the file.

This module knows only that layout: no unit conversion, no renaming (that is ``convert``'s job).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from appliance.fsutil import atomic_open
from appliance.qserv.errors import CatalogError


@dataclass
class ColumnInfo:
    unit: str = ""
    doc: str = ""
    afw_class: str = "Scalar"  # TCCLS: Scalar, Angle, String, Array


@dataclass
class Catalog:
    """A catalog in memory: plain columns, unpacked flags, per-column metadata, header metadata."""

    columns: dict[str, np.ndarray]
    info: dict[str, ColumnInfo] = field(default_factory=dict)
    flags: dict[str, np.ndarray] = field(default_factory=dict)  # bit name -> bool array
    flag_docs: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        for col in self.columns.values():
            return len(col)
        for col in self.flags.values():
            return len(col)
        return 0


def _catalog_hdu(hdul: fits.HDUList, path: str) -> fits.BinTableHDU:
    tables = [h for h in hdul[1:] if isinstance(h, fits.BinTableHDU)]
    if not tables:
        raise CatalogError(path, "no binary table HDU (is this an afw catalog?)")
    for h in tables:  # the catalog, not an archive HDU
        if "AFW_TABLE_VERSION" in h.header or "FLAGCOL" in h.header:
            return h
    return tables[0]


def read_afw_catalog(path: str | Path) -> Catalog:
    """Read the catalog HDU of an afw FITS file, unpacking the ``flags`` bit column by TFLAGn."""
    path = str(path)
    try:
        hdul = fits.open(path, memmap=False)
    except (OSError, ValueError) as err:
        raise CatalogError(path, f"cannot open as FITS: {err}") from err
    with hdul:
        hdu = _catalog_hdu(hdul, path)
        hdr = hdu.header
        data = hdu.data
        names = list(hdu.columns.names)
        flag_col = None
        if "FLAGCOL" in hdr:
            flag_col = names[int(hdr["FLAGCOL"]) - 1]
        elif "flags" in names and any(k.startswith("TFLAG") for k in hdr):
            flag_col = "flags"
        cat = Catalog(columns={}, metadata={})
        for k in ("AFW_TABLE_VERSION", "EXTNAME"):
            if k in hdr:
                cat.metadata[k] = hdr[k]
        for i, name in enumerate(names, start=1):
            if name == flag_col:
                continue
            arr = np.asarray(data[name])
            if arr.dtype.kind == "S":
                arr = np.char.decode(arr, "ascii")
            if arr.dtype.kind in "fiub":
                arr = arr.astype(arr.dtype.newbyteorder("="))  # FITS is big-endian
            cat.columns[name] = arr.copy()
            cat.info[name] = ColumnInfo(
                unit=str(hdr.get(f"TUNIT{i}", "") or ""),
                doc=str(hdr.get(f"TDOC{i}", "") or ""),
                afw_class=str(hdr.get(f"TCCLS{i}", "Scalar") or "Scalar"),
            )
        if flag_col is not None:
            bits = np.asarray(data[flag_col], dtype=bool)
            if bits.ndim == 1:
                bits = bits[:, None]
            nbits = bits.shape[1]
            for b in range(1, nbits + 1):
                key = f"TFLAG{b}"
                if key not in hdr:
                    raise CatalogError(path, f"flag bit {b} has no {key} header key", flag_col)
                name = str(hdr[key])
                cat.flags[name] = bits[:, b - 1].copy()
                cat.flag_docs[name] = str(hdr.get(f"TFDOC{b}", "") or "")
        return cat


def _tform(arr: np.ndarray) -> str:
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "f":
        return "E" if size == 4 else "D"
    if kind in "iu":
        return {1: "B", 2: "I", 4: "J", 8: "K"}[size]
    if kind == "b":
        return "L"
    if kind in "US":
        width = max(1, int(np.char.str_len(arr.astype(str)).max()) if arr.size else 1)
        return f"{width}A"
    raise ValueError(f"unsupported dtype {arr.dtype}")


def write_afw_catalog(
    path: str | Path,
    columns: Mapping[str, np.ndarray],
    info: Mapping[str, ColumnInfo],
    flags: Sequence[tuple[str, str, np.ndarray]] = (),
    metadata: Mapping[str, object] | None = None,
    archive_hdus: int = 1,
) -> None:
    """Write a catalog in the afw layout (atomically); ``flags`` is [(name, doc, bool array)].

    ``archive_hdus`` extra binary tables follow the catalog, standing in for afw's archive HDUs,
    so readers are exercised on files that are more than one table.
    """
    cols: list[fits.Column] = []
    if flags:
        bits = np.stack([np.asarray(f[2], dtype=bool) for f in flags], axis=1)
        cols.append(fits.Column(name="flags", format=f"{bits.shape[1]}X", array=bits))
    for name, arr in columns.items():
        arr = np.asarray(arr)
        cols.append(fits.Column(name=name, format=_tform(arr), array=arr))
    hdu = fits.BinTableHDU.from_columns(cols)
    hdr = hdu.header
    if flags:
        hdr["FLAGCOL"] = (1, "Column number for the bitflags.")
        hdr.comments["TTYPE1"] = "bits for all Flag fields; see also TFLAGn"
    offset = 1 if flags else 0
    for i, name in enumerate(columns, start=1 + offset):
        ci = info.get(name, ColumnInfo())
        if ci.doc:
            hdr[f"TDOC{i}"] = ci.doc
        if ci.unit:
            hdr[f"TUNIT{i}"] = ci.unit
        hdr[f"TCCLS{i}"] = (ci.afw_class, "Field template used by lsst.afw.table")
    for b, (name, doc, _) in enumerate(flags, start=1):
        hdr[f"TFLAG{b}"] = name
        if doc:
            hdr[f"TFDOC{b}"] = doc
    hdr["HIERARCH AFW_TABLE_VERSION"] = 3
    for key, value in (metadata or {}).items():
        hdr[key] = value
    hdus = [fits.PrimaryHDU(), hdu]
    if archive_hdus:
        hdr["AR_HDU"] = (3, "HDU index (1-based) of the archive index")
    for k in range(archive_hdus):
        ar = fits.BinTableHDU.from_columns(
            [fits.Column(name="id", format="J", array=np.arange(3, dtype=np.int32))]
        )
        ar.header["EXTTYPE"] = "ARCHIVE_INDEX" if k == 0 else "ARCHIVE_DATA"
        hdus.append(ar)
    with atomic_open(path, "wb") as f:
        fits.HDUList(hdus).writeto(f)
