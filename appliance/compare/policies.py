"""Comparison policies. Each is ``compare(path, expected_file, actual_file, options)``.

* ``sha256``: bytes must be identical; a difference names the first differing byte offset.
* ``fits``: astropy's FITSDiff with ``ignore_keywords`` (default DATE, CHECKSUM, DATASUM),
  ``ignore_hdus``, ``ignore_columns``, ``rtol``/``atol``; differences name HDU, keyword or the
  first pixels/rows that differ; tolerated differences (ignored keywords, values within
  tolerance) are listed.
* ``votable``: the first table of two VOTables (astropy.io.votable): the same columns, units and
  row count, text and integer cells equal, floating-point cells within ``rtol``/``atol``
  (``numpy.isclose``, NaN equal to NaN); differences name the column and the first row.
* ``text``: lines compared after removing the matches of ``ignore_regex``.
* ``ignore``: recorded, never compared.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.compare.result import (
    DIFFERS,
    IDENTICAL,
    IGNORED,
    WITHIN_TOLERANCE,
    OutputComparison,
)
from appliance.hashing import BLOCK, sha256_file

DEFAULT_FITS_IGNORE = ["DATE", "CHECKSUM", "DATASUM"]
MAX_LISTED = 5


def first_byte_difference(a: Path, b: Path) -> int | None:
    offset = 0
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(BLOCK), fb.read(BLOCK)
            if ca != cb:
                for i, (x, y) in enumerate(zip(ca, cb, strict=False)):
                    if x != y:
                        return offset + i
                return offset + min(len(ca), len(cb))
            if not ca:
                return None
            offset += len(ca)


def compare_sha256(path: str, expected: Path, actual: Path, options: dict[str, Any]) -> OutputComparison:
    if sha256_file(expected) == sha256_file(actual):
        return OutputComparison(path, "sha256", IDENTICAL)
    off = first_byte_difference(expected, actual)
    return OutputComparison(path, "sha256", DIFFERS, differences=[{"first_differing_byte": off}])


def _fits_differences(diff: Any) -> list[dict[str, Any]]:
    """Locate differences from a FITSDiff: HDU, keyword values, first pixels or table cells."""
    found: list[dict[str, Any]] = []
    if diff.diff_hdu_count:
        found.append({"hdu_count": f"{diff.diff_hdu_count[0]} vs {diff.diff_hdu_count[1]}"})
    for idx, hdu, *named in diff.diff_hdus:
        where = f"{idx}" + (f" ({named[0]})" if named and named[0] else "")
        hd = hdu.diff_headers
        if hd is not None:
            for kw, values in list(hd.diff_keyword_values.items())[:MAX_LISTED]:
                a, b = values[0]
                found.append({"hdu": where, "keyword": kw, "expected": a, "actual": b})
            for kw in (hd.diff_keywords[0] + hd.diff_keywords[1])[:MAX_LISTED] if hd.diff_keywords else []:
                found.append({"hdu": where, "keyword": kw, "problem": "present in only one file"})
        dd = hdu.diff_data
        if dd is None:
            continue
        if hasattr(dd, "diff_pixels") and dd.diff_pixels:
            for index, (a, b) in dd.diff_pixels[:MAX_LISTED]:
                # FITSDiff reports numpy (row-major) indices; FITS users read 1-based (x, y)
                fits_xy = tuple(int(i) + 1 for i in reversed(index))
                found.append({"hdu": where, "pixel_fits_xy": fits_xy, "expected": float(a), "actual": float(b)})
            found.append({"hdu": where, "pixels_differing": int(dd.diff_total),
                          "fraction": round(float(dd.diff_ratio), 6)})
        if hasattr(dd, "diff_values") and dd.diff_values:
            for (col, row), (a, b) in dd.diff_values[:MAX_LISTED]:
                found.append({"hdu": where, "column": col, "row": int(row), "expected": _plain(a), "actual": _plain(b)})
            found.append({"hdu": where, "values_differing": int(dd.diff_total)})
        if getattr(dd, "diff_column_names", None) and any(dd.diff_column_names):
            found.append({"hdu": where, "columns_only_in_one": [list(x) for x in dd.diff_column_names]})
        if getattr(dd, "diff_rows", None):
            found.append({"hdu": where, "rows": f"{dd.diff_rows[0]} vs {dd.diff_rows[1]}"})
        if getattr(dd, "diff_bytes", None):
            found.append({"hdu": where, "raw_bytes_differ": True})
    return found


def _plain(v: Any) -> Any:
    try:
        return v.item()
    except AttributeError:
        return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


def compare_fits(path: str, expected: Path, actual: Path, options: dict[str, Any]) -> OutputComparison:
    from astropy.io.fits import FITSDiff

    if sha256_file(expected) == sha256_file(actual):
        return OutputComparison(path, "fits", IDENTICAL)
    ignore_kw = [k.upper() for k in options.get("ignore_keywords", DEFAULT_FITS_IGNORE)]
    kwargs = dict(
        ignore_keywords=ignore_kw, ignore_hdus=[str(h) for h in options.get("ignore_hdus", [])],
        ignore_fields=options.get("ignore_columns", []), rtol=float(options.get("rtol", 0.0)),
        atol=float(options.get("atol", 0.0)),
    )
    try:
        tolerant = FITSDiff(str(expected), str(actual), **kwargs)
    except OSError as err:
        return OutputComparison(path, "fits", DIFFERS, differences=[{"error": f"not a readable FITS file: {err}"}])
    if not tolerant.identical:
        buf = io.StringIO()
        tolerant.report(fileobj=buf)
        return OutputComparison(path, "fits", DIFFERS, differences=_fits_differences(tolerant),
                                detail=buf.getvalue()[-4000:])
    # Same under the policy: say exactly what was tolerated, from a strict comparison.
    strict = FITSDiff(str(expected), str(actual), ignore_keywords=[], rtol=0.0, atol=0.0)
    tolerated = []
    for d in _fits_differences(strict):
        if "keyword" in d:
            tolerated.append(f"HDU {d['hdu']} keyword {d['keyword']} (ignored keyword)")
        elif "pixels_differing" in d:
            tolerated.append(f"HDU {d['hdu']}: {d['pixels_differing']} pixels within rtol/atol")
        elif "values_differing" in d:
            tolerated.append(f"HDU {d['hdu']}: {d['values_differing']} table values within rtol/atol or in ignored columns")
    for h in options.get("ignore_hdus", []):
        tolerated.append(f"HDU {h} ignored")
    return OutputComparison(path, "fits", WITHIN_TOLERANCE, tolerated=tolerated or ["byte-level only (padding/order)"])


def compare_text(path: str, expected: Path, actual: Path, options: dict[str, Any]) -> OutputComparison:
    if sha256_file(expected) == sha256_file(actual):
        return OutputComparison(path, "text", IDENTICAL)
    patterns = [re.compile(p) for p in options.get("ignore_regex", [])]

    def norm(p: Path) -> list[str]:
        lines = p.read_text(errors="replace").splitlines()
        for rx in patterns:
            lines = [rx.sub("", line) for line in lines]
        return lines

    a, b = norm(expected), norm(actual)
    if a == b:
        return OutputComparison(path, "text", WITHIN_TOLERANCE,
                                tolerated=[f"matches of {p.pattern!r} ignored" for p in patterns])
    for n, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            return OutputComparison(path, "text", DIFFERS,
                                    differences=[{"line": n, "expected": x[:200], "actual": y[:200]}])
    return OutputComparison(path, "text", DIFFERS, differences=[{"line_count": f"{len(a)} vs {len(b)}"}])


def compare_votable(path: str, expected: Path, actual: Path, options: dict[str, Any]) -> OutputComparison:
    import warnings

    import numpy as np
    from astropy.io.votable import parse_single_table

    if sha256_file(expected) == sha256_file(actual):
        return OutputComparison(path, "votable", IDENTICAL)
    rtol, atol = float(options.get("rtol", 0.0)), float(options.get("atol", 0.0))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = parse_single_table(str(expected)).to_table()
            b = parse_single_table(str(actual)).to_table()
    except Exception as err:  # noqa: BLE001 - any parse failure is a difference, said in one line
        return OutputComparison(path, "votable", DIFFERS,
                                differences=[{"error": f"not a readable VOTable: {str(err).splitlines()[0][:200]}"}])
    if a.colnames != b.colnames:
        return OutputComparison(path, "votable", DIFFERS,
                                differences=[{"columns": f"{a.colnames} vs {b.colnames}"}])
    if len(a) != len(b):
        return OutputComparison(path, "votable", DIFFERS, differences=[{"rows": f"{len(a)} vs {len(b)}"}])
    found: list[dict[str, Any]] = []
    within = 0
    for name in a.colnames:
        x, y = a[name], b[name]
        if str(x.unit) != str(y.unit):
            found.append({"column": name, "unit": f"{x.unit} vs {y.unit}"})
            continue
        xa, ya = np.asarray(x), np.asarray(y)
        if xa.dtype.kind == "f" and ya.dtype.kind == "f":
            exact = (xa == ya) | (np.isnan(xa) & np.isnan(ya))
            close = np.isclose(xa, ya, rtol=rtol, atol=atol, equal_nan=True)
            within += int((close & ~exact).sum())
            bad = np.flatnonzero(~close)
        else:
            bad = np.flatnonzero(xa != ya) if xa.shape == ya.shape else np.array([0])
        if bad.size:
            r = int(bad[0])
            found.append({"column": name, "rows_differing": int(bad.size), "first_row": r,
                          "expected": _plain(xa[r]), "actual": _plain(ya[r])})
        if len(found) >= MAX_LISTED:
            break
    if found:
        return OutputComparison(path, "votable", DIFFERS, differences=found)
    return OutputComparison(path, "votable", WITHIN_TOLERANCE,
                            tolerated=[f"{within} values within rtol/atol" if within else
                                       "byte-level only (serialisation)"])


def compare_ignore(path: str, expected: Path, actual: Path, options: dict[str, Any]) -> OutputComparison:
    return OutputComparison(path, "ignore", IGNORED)


POLICIES: dict[str, Callable[[str, Path, Path, dict[str, Any]], OutputComparison]] = {
    "sha256": compare_sha256, "fits": compare_fits, "votable": compare_votable, "text": compare_text,
    "ignore": compare_ignore,
}
