"""Broken DL3 products fail our GADF check clearly; bad DL2/MC input is one line naming file and column,
exit 2 (usage), no traceback, and no partial product (the output directory is written atomically);
the HDF5 DL2 path (ctapipe/lstchain layout, h5py) reads the same columns as FITS."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits

from appliance.cli import main
from appliance.dl3 import io
from appliance.dl3.check import check
from appliance.exitcodes import Exit


def _convert_args(events: Path, mc: Path, out: Path) -> list[str]:
    return ["dl3", "convert", "--events", str(events), "--mc", str(mc), "--out", str(out)]


@pytest.fixture(scope="module")
def product(small: dict) -> Path:
    out = small["root"] / "dl3"
    ev = small["fits"] / f"dl2_obs{small['truth']['obs_ids'][0]}.fits"
    assert main(_convert_args(ev, small["fits"] / "mc_gamma.fits", out)) == 0
    assert check(out).ok
    return out


def _copy(product: Path, tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "dl3"
    shutil.copytree(product, d)
    return d, next(d.glob("obs_*.fits.gz"))


def _fails(d: Path, capsys, *needles: str) -> str:
    capsys.readouterr()
    assert main(["dl3", "check", str(d)]) == Exit.NOT_REPRODUCED
    out = capsys.readouterr().out
    assert "NOT conformant" in out and all(n in out for n in needles), out
    return out


def test_check_fails_on_missing_hdu(product: Path, tmp_path: Path, capsys) -> None:
    d, f = _copy(product, tmp_path)
    with fits.open(f) as hdul:
        keep = [h.copy() for h in hdul if h.name != "EFFECTIVE AREA"]
    fits.HDUList(keep).writeto(f, overwrite=True, checksum=True)
    _fails(d, capsys, f"{f.name}[EFFECTIVE AREA]", "no such HDU")


def test_check_fails_on_wrong_unit(product: Path, tmp_path: Path, capsys) -> None:
    d, f = _copy(product, tmp_path)
    with fits.open(f) as hdul:
        hdus = [h.copy() for h in hdul]
    ev = next(h for h in hdus if h.name == "EVENTS")
    ev.columns.change_unit("ENERGY", "m")
    ev = fits.BinTableHDU(ev.data, ev.header, name="EVENTS")
    hdus = [ev if h.name == "EVENTS" else h for h in hdus]
    fits.HDUList(hdus).writeto(f, overwrite=True, checksum=True)
    _fails(d, capsys, f"{f.name}[EVENTS]: column ENERGY has unit 'm', expected 'TeV'")


def test_check_fails_on_inconsistent_hdu_index(product: Path, tmp_path: Path, capsys) -> None:
    d, _ = _copy(product, tmp_path)
    idx = d / "hdu-index.fits.gz"
    with fits.open(idx) as hdul:
        hdu = hdul[1].copy()
    hdu.data["OBS_ID"][hdu.data["HDU_TYPE"] == "aeff"] = 424242
    hdu.writeto(idx, overwrite=True, checksum=True)
    _fails(d, capsys, "OBS_ID 424242 is not in obs-index.fits.gz", "has no aeff HDU")


def test_check_fails_on_missing_index(product: Path, tmp_path: Path, capsys) -> None:
    d, _ = _copy(product, tmp_path)
    (d / "obs-index.fits.gz").unlink()
    _fails(d, capsys, "obs-index.fits.gz: missing")


def _rewrite(src: Path, dst: Path, ext: str, edit) -> Path:
    """Copy a FITS DL2/MC file, passing extension ``ext``'s columns through ``edit`` (or dropping it)."""
    with fits.open(src) as hdul:
        hdus = [hdul[0].copy()]
        for h in hdul[1:]:
            if h.name != ext:
                hdus.append(h.copy())
                continue
            cols = edit(list(h.columns), h.data)
            if cols is not None:
                hdus.append(fits.BinTableHDU.from_columns(cols, name=ext))
    fits.HDUList(hdus).writeto(dst, overwrite=True)
    return dst


def _drop(name: str):
    return lambda cols, data: [c for c in cols if c.name != name]


def _unit(name: str, unit: str):
    def edit(cols, data):
        return [fits.Column(c.name, c.format, unit=unit if c.name == name else c.unit, array=data[c.name])
                for c in cols]
    return edit


def _empty(cols, data):
    return [fits.Column(c.name, c.format, unit=c.unit, array=data[c.name][:0]) for c in cols]


def _gti_of_other_obs(cols, data):
    return [fits.Column(c.name, c.format, unit=c.unit, array=data[c.name] + (1 if c.name == "obs_id" else 0))
            for c in cols]


CASES = {
    # name: (which input, extension, edit, words the one line must contain)
    "missing column": ("events", "EVENTS", _drop("gammaness"), ["column 'gammaness'", "missing"]),
    "wrong unit": ("events", "EVENTS", _unit("reco_energy", "m"), ["column 'reco_energy'", "'m'", "TeV"]),
    "energy without unit": ("events", "EVENTS", _unit("reco_energy", None), ["column 'reco_energy'", "no unit"]),
    "empty event list": ("events", "EVENTS", _empty, ["column 'event_id'", "empty"]),
    "no GTI for the observation": ("events", "GTI", _gti_of_other_obs, ["column 'start'", "good-time interval"]),
    "MC without simulated spectrum": ("mc", "SIMULATION", lambda cols, data: None,
                                      ["no extension SIMULATION"]),
    "MC with empty simulation table": ("mc", "SIMULATION", _empty, ["column 'num_showers'", "simulated-spectrum"]),
    "MC missing true energy": ("mc", "EVENTS", _drop("true_energy"), ["column 'true_energy'", "missing"]),
    "MC scatter radius in seconds": ("mc", "SIMULATION", _unit("max_scatter_range", "s"),
                                                   ["column 'max_scatter_range'", "'s'", "m"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_and_leaves_nothing(small: dict, tmp_path: Path, capsys, case: str) -> None:
    which, ext, edit, words = CASES[case]
    ev = small["fits"] / f"dl2_obs{small['truth']['obs_ids'][0]}.fits"
    mc = small["fits"] / "mc_gamma.fits"
    bad = _rewrite(ev if which == "events" else mc, tmp_path / f"bad_{which}.fits", ext, edit)
    out = tmp_path / "out" / "dl3"
    args = _convert_args(bad, mc, out) if which == "events" else _convert_args(ev, bad, out)
    capsys.readouterr()
    assert main(args) == Exit.USAGE
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert err.count("\n") == 0 and "Traceback" not in cap.err + cap.out, cap.err
    assert str(bad) in err and all(w in err for w in words), err
    assert not out.exists()
    leftovers = list((tmp_path / "out").glob(".dl3.*")) if (tmp_path / "out").exists() else []
    assert leftovers == []  # the temporary directory is removed when a step inside it fails


def test_existing_output_is_refused_then_replaced_atomically(small: dict, product: Path, tmp_path: Path,
                                                             capsys) -> None:
    out = tmp_path / "dl3"
    shutil.copytree(product, out)
    (out / "marker").write_text("old")
    ev = small["fits"] / f"dl2_obs{small['truth']['obs_ids'][0]}.fits"
    args = _convert_args(ev, small["fits"] / "mc_gamma.fits", out)
    assert main(args) == Exit.USAGE and "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert not (out / "marker").exists() and check(out).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl3"]  # no temporary or old directory left


def test_hdf5_dl2_reads_the_same_columns_as_fits(small: dict) -> None:
    stem = f"dl2_obs{small['truth']['obs_ids'][0]}"
    h5, ft = small["hdf5"] / f"{stem}.h5", small["fits"] / f"{stem}.fits"
    with h5py.File(h5, "r") as f:  # the documented ctapipe/lstchain layout
        for name, node in io.HDF5_NODE.items():
            if name != "simulation":
                assert node in f and f[node].dtype.names is not None
        assert f[io.HDF5_NODE["events"]].attrs["reco_energy_UNIT"] == "TeV"
    for table, schema in (("events", io.EVENTS), ("observation", io.OBSERVATION), ("gti", io.GTI)):
        a, b = io.read_table(h5, table, schema), io.read_table(ft, table, schema)
        assert set(a) == set(schema)
        for col in schema:
            np.testing.assert_array_equal(a[col], b[col])
    mc = io.read_table(small["hdf5"] / "mc_gamma.h5", "simulation", io.SIMULATION)
    assert int(mc["num_showers"][0]) == small["truth"]["gamma_simulation"]["num_showers"]


def test_hdf5_units_are_converted_and_bad_ones_named(small: dict, tmp_path: Path) -> None:
    stem = f"dl2_obs{small['truth']['obs_ids'][0]}"
    src = small["hdf5"] / f"{stem}.h5"
    want = io.read_table(src, "events", io.EVENTS)["reco_energy"]
    gev = tmp_path / "gev.h5"
    shutil.copy(src, gev)
    with h5py.File(gev, "r+") as f:
        ds = f[io.HDF5_NODE["events"]]
        data = ds[()]
        data["reco_energy"] = data["reco_energy"] * 1000.0
        ds[...] = data
        ds.attrs["reco_energy_UNIT"] = "GeV"
    np.testing.assert_allclose(io.read_table(gev, "events", io.EVENTS)["reco_energy"], want, rtol=1e-6)
    with h5py.File(gev, "r+") as f:
        f[io.HDF5_NODE["events"]].attrs["reco_energy_UNIT"] = "deg"
    with pytest.raises(io.DL3InputError, match=r"gev.h5: column 'reco_energy': unit 'deg' cannot be converted"):
        io.read_table(gev, "events", io.EVENTS)
    nonode = tmp_path / "nonode.h5"
    with h5py.File(nonode, "w") as f:
        f.create_dataset("/dl2/other", data=np.zeros(3))
    with pytest.raises(io.DL3InputError, match=r"no table /dl2/event/telescope/parameters/LST_LSTCam"):
        io.read_table(nonode, "events", io.EVENTS)


def test_hdf5_conversion_end_to_end(small: dict, tmp_path: Path) -> None:
    stem = f"dl2_obs{small['truth']['obs_ids'][0]}"
    out = tmp_path / "dl3-fe"
    assert main(["dl3", "convert", "--full-enclosure", "--events", str(small["hdf5"] / f"{stem}.h5"),
                 "--mc", str(small["hdf5"] / "mc_gamma.h5"), "--background-mc", str(small["hdf5"] / "mc_proton.h5"),
                 "--out", str(out)]) == 0
    res = check(out)
    assert res.ok and res.hdus_checked == 7, res.problems
