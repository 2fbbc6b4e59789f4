"""The ``votable`` comparison policy on real VOTables written by astropy."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from appliance.compare.policies import POLICIES
from appliance.compare.result import DIFFERS, IDENTICAL, WITHIN_TOLERANCE


def _vot(path, flux, names=("ra", "flux", "detector"), unit="Jy"):
    t = Table([np.array([10.0, 20.0, 30.0]), np.asarray(flux, dtype=float), np.array(["a", "b", "c"])],
              names=names)
    t[names[1]].unit = unit
    t.write(path, format="votable", overwrite=True)
    return path


def test_identical_within_and_beyond_tolerance(tmp_path):
    cmp = POLICIES["votable"]
    a = _vot(tmp_path / "a.vot", [1.0, 2.0, np.nan])
    assert cmp("c.vot", a, _vot(tmp_path / "b.vot", [1.0, 2.0, np.nan]), {}).status == IDENTICAL
    near = _vot(tmp_path / "n.vot", [1.0 + 1e-13, 2.0, np.nan])
    r = cmp("c.vot", a, near, {"rtol": 1e-9})
    assert r.status == WITHIN_TOLERANCE and r.ok and "1 values within rtol/atol" in r.tolerated[0]
    assert cmp("c.vot", a, near, {}).status == DIFFERS  # no tolerance asked: every bit counts
    far = _vot(tmp_path / "f.vot", [1.0, 2.1, np.nan])
    r = cmp("c.vot", a, far, {"rtol": 1e-9})
    assert r.status == DIFFERS and not r.ok
    assert r.differences[0]["column"] == "flux" and r.differences[0]["first_row"] == 1


def test_columns_units_rows_and_unreadable(tmp_path):
    cmp = POLICIES["votable"]
    a = _vot(tmp_path / "a.vot", [1.0, 2.0, 3.0])
    other = _vot(tmp_path / "o.vot", [1.0, 2.0, 3.0], names=("ra", "flux_peak", "detector"))
    assert "columns" in cmp("c.vot", a, other, {"rtol": 1e-9}).differences[0]
    mjy = _vot(tmp_path / "m.vot", [1.0, 2.0, 3.0], unit="mJy")
    assert cmp("c.vot", a, mjy, {"rtol": 1e-9}).differences[0]["unit"] == "Jy vs mJy"
    t = Table.read(a, format="votable")[:2]
    t.write(tmp_path / "short.vot", format="votable")
    assert cmp("c.vot", a, tmp_path / "short.vot", {}).differences[0]["rows"] == "3 vs 2"
    (tmp_path / "bad.vot").write_text("<VOTABLE><oops")
    r = cmp("c.vot", a, tmp_path / "bad.vot", {})
    assert r.status == DIFFERS and "not a readable VOTable" in r.differences[0]["error"]
