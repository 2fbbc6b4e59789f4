"""BKG_3D (``convert --background 3d``): GADF columns and headers, read by gammapy with no warning,
known to our check (which fails on a broken one), and the same background as BKG_2D in total."""

from __future__ import annotations

import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from appliance.cli import main
from appliance.dl3.check import check


def _convert(small: dict, out: Path, kind: str) -> Path:
    stem = f"dl2_obs{small['truth']['obs_ids'][0]}"
    assert main(["dl3", "convert", "--full-enclosure", "--background", kind,
                 "--events", str(small["fits"] / f"{stem}.fits"), "--mc", str(small["fits"] / "mc_gamma.fits"),
                 "--background-mc", str(small["fits"] / "mc_proton.fits"), "--out", str(out)]) == 0
    return next(out.glob("obs_*.fits*"))


def _bkg(path: Path) -> fits.BinTableHDU:
    with fits.open(path) as hdul:
        hdu = next(h for h in hdul if h.header.get("HDUCLAS2") == "BKG")
        return fits.BinTableHDU(hdu.data.copy(), hdu.header.copy())


def test_bkg_3d_read_by_gammapy_and_checked(small: dict, tmp_path: Path) -> None:
    from gammapy.data import DataStore
    from gammapy.irf import Background3D

    out = tmp_path / "dl3-3d"
    obs_file = _convert(small, out, "3d")
    hdu = _bkg(obs_file)
    assert hdu.header["HDUCLAS4"] == "BKG_3D" and hdu.header["FOVALIGN"] == "ALTAZ"
    assert {"ENERG_LO", "ENERG_HI", "DETX_LO", "DETX_HI", "DETY_LO", "DETY_HI", "BKG"} <= set(hdu.columns.names)
    assert u.Unit(hdu.columns["BKG"].unit) == u.Unit("s-1 MeV-1 sr-1")
    rate = hdu.data["BKG"][0]
    assert rate.ndim == 3 and np.all(rate >= 0) and rate.sum() > 0
    res = check(out)
    assert res.ok and res.hdus_checked == 7, res.problems
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bkg = DataStore.from_dir(out).obs(small["truth"]["obs_ids"][0]).bkg
    assert isinstance(bkg, Background3D) and bkg.axes.names == ["energy", "fov_lon", "fov_lat"]


def test_check_fails_on_a_bkg_3d_without_fovalign(small: dict, tmp_path: Path) -> None:
    out = tmp_path / "dl3-3d"
    obs_file = _convert(small, out, "3d")
    with fits.open(obs_file, mode="update") as hdul:
        del next(h for h in hdul if h.header.get("HDUCLAS4") == "BKG_3D").header["FOVALIGN"]
    res = check(out)
    assert not res.ok and any("FOVALIGN" in p for p in res.problems), res.problems


def test_bkg_3d_and_bkg_2d_agree_near_the_centre(small: dict, tmp_path: Path) -> None:
    """Both rates come from the same selected protons: summed over energy at the field centre
    (the 3-D pixels around (0, 0) against the 2-D first offset bins) they agree within statistics."""
    h3 = _bkg(_convert(small, tmp_path / "dl3-3d", "3d"))
    h2 = _bkg(_convert(small, tmp_path / "dl3-2d", "2d"))
    e3 = h3.data["ENERG_HI"][0] - h3.data["ENERG_LO"][0]
    e2 = h2.data["ENERG_HI"][0] - h2.data["ENERG_LO"][0]
    # FITS keeps the energy axis first (TDIM order): numpy reads it last
    r3 = h3.data["BKG"][0] @ e3                         # s-1 sr-1 per FoV pixel (energy-integrated)
    r2 = h2.data["BKG"][0] @ e2                         # s-1 sr-1 per offset bin
    x = 0.5 * (h3.data["DETX_LO"][0] + h3.data["DETX_HI"][0])
    y = 0.5 * (h3.data["DETY_LO"][0] + h3.data["DETY_HI"][0])
    centre = np.hypot(*np.meshgrid(x, y, indexing="ij")) < 1.0
    theta_hi = h2.data["THETA_HI"][0]
    assert r3.shape == (len(y), len(x)) and r2.shape == h2.data["THETA_HI"][0].shape
    inner = theta_hi <= 1.0
    assert inner.any() and centre.any()
    mean3, mean2 = r3.T[centre].mean(), r2[inner].mean()
    assert mean3 > 0 and mean2 > 0
    print("BKG_3D / BKG_2D near the centre:", mean3 / mean2)
    assert abs(mean3 / mean2 - 1) < 0.3, (mean3, mean2)
