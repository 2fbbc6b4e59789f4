"""Comparison policies on real FITS files written with astropy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from appliance.compare.policies import compare_fits, compare_sha256, compare_text
from appliance.compare.verdict import compare_outputs


def image(path: Path, data: np.ndarray, date: str = "2026-01-01T00:00:00") -> Path:
    hdu = fits.PrimaryHDU(data.astype(np.float32))
    hdu.header["DATE"] = date
    hdu.header["OBJECT"] = "M31"
    hdu.writeto(path)
    return path


def test_fits_date_only_is_within_tolerance(tmp_path: Path) -> None:
    d = np.arange(100.0).reshape(10, 10)
    a, b = image(tmp_path / "a.fits", d), image(tmp_path / "b.fits", d, date="2027-05-05T00:00:00")
    r = compare_fits("x.fits", a, b, {})
    assert r.status == "within_tolerance" and r.ok
    assert any("DATE" in t for t in r.tolerated)


def test_fits_pixel_change_differs_and_is_located(tmp_path: Path) -> None:
    d = np.zeros((10, 20))
    e = d.copy()
    e[3, 7] = 5.0  # numpy row 3, column 7 -> FITS (x=8, y=4)
    r = compare_fits("x.fits", image(tmp_path / "a.fits", d), image(tmp_path / "b.fits", e), {})
    assert r.status == "differs" and not r.ok
    pix = [x for x in r.differences if "pixel_fits_xy" in x]
    assert pix[0]["hdu"].startswith("0") and pix[0]["pixel_fits_xy"] == (8, 4) and pix[0]["actual"] == 5.0


def test_fits_rtol(tmp_path: Path) -> None:
    d = np.full((4, 4), 100.0)
    a, b = image(tmp_path / "a.fits", d), image(tmp_path / "b.fits", d * (1 + 1e-7))
    assert compare_fits("x", a, b, {"rtol": 1e-6}).status == "within_tolerance"
    assert compare_fits("x", a, b, {}).status == "differs"


def test_fits_keyword_change_differs(tmp_path: Path) -> None:
    d = np.zeros((2, 2))
    a = image(tmp_path / "a.fits", d)
    hdu = fits.PrimaryHDU(d.astype(np.float32))
    hdu.header["DATE"], hdu.header["OBJECT"] = "2026-01-01T00:00:00", "M33"
    hdu.writeto(tmp_path / "b.fits")
    r = compare_fits("x", a, tmp_path / "b.fits", {})
    assert r.status == "differs" and any(x.get("keyword") == "OBJECT" for x in r.differences)


def test_fits_table_row_located(tmp_path: Path) -> None:
    Table({"flux": [1.0, 2.0, 3.0]}).write(tmp_path / "a.fits")
    Table({"flux": [1.0, 2.5, 3.0]}).write(tmp_path / "b.fits")
    r = compare_fits("t", tmp_path / "a.fits", tmp_path / "b.fits", {})
    cell = [x for x in r.differences if "column" in x][0]
    assert cell["column"] == "flux" and cell["row"] == 1 and cell["actual"] == 2.5
    assert compare_fits("t", tmp_path / "a.fits", tmp_path / "b.fits", {"ignore_columns": ["flux"]}).ok


def test_sha256_and_text(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("written at 1\nvalue 3\n")
    (tmp_path / "b").write_text("written at 2\nvalue 3\n")
    (tmp_path / "c").write_text("written at 2\nvalue 4\n")
    assert compare_sha256("s", tmp_path / "a", tmp_path / "b", {}).differences == [{"first_differing_byte": 11}]
    assert compare_text("s", tmp_path / "a", tmp_path / "b", {"ignore_regex": ["^written at .*$"]}).ok
    r = compare_text("s", tmp_path / "a", tmp_path / "c", {"ignore_regex": ["^written at .*$"]})
    assert not r.ok and r.differences[0]["line"] == 2


def test_verdict_aggregates(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    (tmp_path / "b").write_text("y")
    v = compare_outputs({"o": (tmp_path / "a", "sha256", {}), "gone": (tmp_path / "a", "sha256", {})},
                        {"o": tmp_path / "a"}, "r1", "r2")
    assert v.status == "differs" and "missing" in v.report() and not v.ok
    v = compare_outputs({"o": (tmp_path / "a", "ignore", {})}, {"o": tmp_path / "b"}, "r1", "r2")
    assert v.status == "identical" and v.to_dict()["ok"]
