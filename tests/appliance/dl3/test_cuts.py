"""Energy-dependent cuts (``convert --gammaness-efficiency F --theta-containment F``): per reco-energy bin
the gammaness cut keeps F of the MC gammas and RAD_MAX_2D contains F of the selected gammas, on the MC
the cuts were computed from and on an independent MC sample (binomial error); data and MC get the same
per-bin cuts (EVENTS header GHCUTn = the GH_CUTS HDU = what selected the events); gammapy reads the
product with no warning and our check passes; the global-cut options exclude them (exit 2, one line)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from appliance.cli import main
from appliance.dl3 import generate, io, irf, model
from appliance.dl3.check import check
from appliance.exitcodes import Exit

GH_EFF, TH_CONT = 0.8, 0.68


def _args(small: dict, out: Path, *extra: str) -> list[str]:
    ev = small["fits"] / f"dl2_obs{small['truth']['obs_ids'][0]}.fits"
    return ["dl3", "convert", "--events", str(ev), "--mc", str(small["fits"] / "mc_gamma.fits"), "--out", str(out),
            *extra]


@pytest.fixture(scope="module")
def product(small: dict) -> Path:
    out = small["root"] / "dl3-edcuts"
    assert main(_args(small, out, "--gammaness-efficiency", str(GH_EFF), "--theta-containment", str(TH_CONT))) == 0
    return out


@pytest.fixture(scope="module")
def independent_mc() -> dict:
    """A second MC gamma sample from the same instrument (another seed), to test the cuts out of sample."""
    sim = generate.Simulation(**{**generate.GAMMA_SIM.__dict__, "num_showers": 600_000})
    return generate.simulate_mc(np.random.default_rng(2024), sim, model.GAMMA, (4, 1))["events"][0]


def _obs_file(product: Path) -> Path:
    return next(product.glob("obs_*.fits.gz"))


def _product_cuts(product: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, fits.Header]:
    """Reco-energy edges, gammaness cut and RAD_MAX per bin, as written; and the EVENTS header."""
    with fits.open(_obs_file(product)) as hdul:
        rad = hdul["RAD_MAX"].data
        edges = np.append(rad["ENERG_LO"][0], rad["ENERG_HI"][0][-1])
        rad_max = rad["RAD_MAX"][0].ravel()  # one offset bin: FITS (offset, energy) order
        gh = hdul["GH_CUTS"].data["GH_CUTS"][0][0]
        assert np.allclose(np.append(hdul["GH_CUTS"].data["ENERG_LO"][0], hdul["GH_CUTS"].data["ENERG_HI"][0][-1]),
                           edges)
        return edges, gh.astype(float), rad_max.astype(float), hdul["EVENTS"].header.copy()


def _bins(energy: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.digitize(energy, edges) - 1  # -1 / len(edges) - 1: outside


def _theta(mc: dict) -> np.ndarray:
    return model.separation(mc["true_az"], mc["true_alt"], mc["reco_az"], mc["reco_alt"])


def _fractions(passed: np.ndarray, bins: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    n = np.bincount(bins[(bins >= 0) & (bins < n_bins)], minlength=n_bins)
    k = np.bincount(bins[(bins >= 0) & (bins < n_bins) & passed], minlength=n_bins)
    return k / np.maximum(n, 1), n


def test_gammaness_cut_keeps_f_of_the_mc_gammas_per_bin(product: Path, small: dict, independent_mc: dict) -> None:
    edges, gh, _, header = _product_cuts(product)
    n_bins = len(edges) - 1
    assert header["GH_EFF"] == GH_EFF and "GH_CUT" not in header and header["GHCUTN"] == n_bins
    assert np.allclose([header[f"GHCUT{i + 1}"] for i in range(n_bins)], gh, atol=1e-6)
    # Beta(4, 1) gammaness: the cut keeping F is (1 - F) ** 0.25 in every bin (the model has no energy dependence)
    train = io.read_table(small["fits"] / "mc_gamma.fits", "events", io.MC_EVENTS)
    tb = _bins(train["reco_energy"], edges)
    f_train, n_train = _fractions(train["gammaness"] >= gh[np.clip(tb, 0, n_bins - 1)], tb, n_bins)
    full = n_train >= irf.MIN_CUT_EVENTS
    assert full.sum() >= 12, n_train
    # on the sample the cuts were computed from, F up to the percentile's discreteness (one event)
    assert np.all(np.abs(f_train[full] - GH_EFF) <= 1.0 / n_train[full] + 1e-9), f_train
    sigma_cut = np.sqrt(GH_EFF * (1 - GH_EFF) / n_train[full])
    assert np.all(np.abs(gh[full] - (1 - GH_EFF) ** 0.25) < 5 * sigma_cut / (4 * gh[full] ** 3)), gh
    # out of sample: binomial error of the test sample plus that of the cut's own estimate
    ib = _bins(independent_mc["reco_energy"], edges)
    f_test, n_test = _fractions(independent_mc["gammaness"] >= gh[np.clip(ib, 0, n_bins - 1)], ib, n_bins)
    ok = full & (n_test >= irf.MIN_CUT_EVENTS)
    sigma = np.sqrt(GH_EFF * (1 - GH_EFF) * (1 / n_test[ok] + 1 / n_train[ok]))
    pulls = (f_test[ok] - GH_EFF) / sigma
    print("gammaness-efficiency pulls per bin:", np.round(pulls, 2))
    assert np.all(np.abs(pulls) < 3.5), pulls


def test_rad_max_varies_with_energy_and_contains_f(product: Path, small: dict, independent_mc: dict) -> None:
    edges, gh, rad_max, header = _product_cuts(product)
    n_bins = len(edges) - 1
    assert header["TH_CONT"] == TH_CONT and "RAD_MAX" not in header
    with fits.open(_obs_file(product)) as hdul:
        aeff_header = hdul["EFFECTIVE AREA"].header
    assert aeff_header["TH_CONT"] == TH_CONT and "RAD_MAX" not in aeff_header
    # the PSF narrows with energy (sigma ~ E**-0.25): the cut falls by more than a factor 3 over the range
    assert rad_max[0] > 3 * rad_max[-1] and np.all(np.diff(rad_max) < 0.01), rad_max
    # containment per bin, among the gammas that passed the gammaness cut of their bin
    for mc, label in ((io.read_table(small["fits"] / "mc_gamma.fits", "events", io.MC_EVENTS), "train"),
                      (independent_mc, "independent")):
        b = _bins(mc["reco_energy"], edges)
        inside = (b >= 0) & (b < n_bins)
        bc = np.clip(b, 0, n_bins - 1)
        gh_pass = inside & (mc["gammaness"] >= gh[bc])
        sel = {k: v[gh_pass] for k, v in mc.items()}
        f, n = _fractions(_theta(sel) <= rad_max[bc[gh_pass]], b[gh_pass], n_bins)
        ok = n >= irf.MIN_CUT_EVENTS
        assert ok.sum() >= 12, n
        if label == "train":
            assert np.all(np.abs(f[ok] - TH_CONT) <= 1.0 / n[ok] + 1e-9), f
            n_train = n
        else:
            ok &= n_train >= irf.MIN_CUT_EVENTS
            pulls = (f[ok] - TH_CONT) / np.sqrt(TH_CONT * (1 - TH_CONT) * (1 / n[ok] + 1 / n_train[ok]))
            print("theta-containment pulls per bin:", np.round(pulls, 2))
            assert np.all(np.abs(pulls) < 3.5), pulls


def test_data_get_the_same_per_bin_cuts(product: Path, small: dict) -> None:
    edges, gh, _, header = _product_cuts(product)
    ev = io.read_table(small["fits"] / f"dl2_obs{small['truth']['obs_ids'][0]}.fits", "events", io.EVENTS)
    b = _bins(ev["reco_energy"], edges)
    inside = (b >= 0) & (b < len(edges) - 1)
    want = inside & (ev["gammaness"] >= gh[np.clip(b, 0, len(gh) - 1)].astype(np.float32))
    with fits.open(_obs_file(product)) as hdul:
        got = np.sort(hdul["EVENTS"].data["EVENT_ID"])
    assert 0 < len(got) < len(ev["event_id"])
    assert np.array_equal(got, np.sort(ev["event_id"][want]))


def test_gammapy_reads_it_without_warning_and_check_passes(product: Path, small: dict, caplog) -> None:
    from gammapy.data import DataStore, Observation

    res = check(product)
    assert res.ok and res.hdus_checked == 6, res.problems
    obs_id = small["truth"]["obs_ids"][0]
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        store = DataStore.from_dir(product)
        for row in store.hdu_table:
            assert store.hdu_table.hdu_location(row["OBS_ID"], hdu_type=row["HDU_TYPE"],
                                                hdu_class=row["HDU_CLASS"]).load() is not None
        obs = store.obs(obs_id, required_irf="point-like")
        rad = obs.rad_max
        # a GADF reader that scans the file for IRFs passes over the (non-GADF) GH_CUTS HDU silently
        single = Observation.read(_obs_file(product))
        assert single.rad_max is not None and single.aeff is not None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records
    _, _, rad_max, _ = _product_cuts(product)
    assert np.allclose(rad.quantity.to_value("deg")[:, 0], rad_max)
    assert obs.events.table.meta["GH_EFF"] == GH_EFF
    with fits.open(_obs_file(product)) as hdul:
        assert "GH_CUTS" not in [h.name for h in hdul][:-1] and hdul[-1].name == "GH_CUTS"
    with fits.open(product / "hdu-index.fits.gz") as hdul:
        assert "GH_CUTS" not in {n.strip() for n in hdul[1].data["HDU_NAME"]}


def test_full_enclosure_takes_the_gammaness_efficiency(small: dict, tmp_path: Path) -> None:
    out = tmp_path / "fe"
    assert main(_args(small, out, "--full-enclosure", "--gammaness-efficiency", "0.9",
                      "--background-mc", str(small["fits"] / "mc_proton.fits"))) == 0
    assert check(out).ok
    with fits.open(_obs_file(out)) as hdul:
        assert hdul["EVENTS"].header["GH_EFF"] == 0.9 and "TH_CONT" not in hdul["EVENTS"].header
        assert hdul["GH_CUTS"].header["HDUCLAS3"] == "FULL-ENCLOSURE"
        assert hdul["BACKGROUND"].header["GH_EFF"] == 0.9
        assert abs(np.median(hdul["GH_CUTS"].data["GH_CUTS"][0][0]) - 0.1 ** 0.25) < 0.01  # Beta(4, 1)


@pytest.mark.parametrize("extra, needle", [
    (["--gammaness-cut", "0.6", "--gammaness-efficiency", "0.8"], "not allowed with argument --gammaness-cut"),
    (["--theta-containment", "0.68", "--theta-cut", "0.2"], "not allowed with argument --theta-containment"),
    (["--gammaness-efficiency", "1.5"], "--gammaness-efficiency: expected a fraction in (0, 1], got '1.5'"),
    (["--theta-containment", "0"], "--theta-containment: expected a fraction in (0, 1], got '0'"),
    (["--full-enclosure", "--theta-containment", "0.68"], "--theta-containment: is for point-like IRFs"),
])
def test_bad_cut_options_exit_2_with_one_line(small: dict, tmp_path: Path, capsys, extra: list[str],
                                              needle: str) -> None:
    out = tmp_path / "never"
    try:
        rc = main(_args(small, out, *extra))
    except SystemExit as exc:  # argparse
        rc = exc.code
    assert rc == Exit.USAGE
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in err, err
    assert not out.exists() and not list(tmp_path.glob(".never.tmp-*"))


def test_the_irfs_are_made_with_the_same_cuts(product: Path, small: dict, tmp_path: Path) -> None:
    """Summed over true energy and offset, AEFF with the gammaness-efficiency cut is F of the uncut one
    (full enclosure) and the point-like AEFF with the theta containment is TH_CONT of that (same MC)."""
    def aeff(out: Path, *extra: str) -> np.ndarray:
        if not out.exists():
            assert main(_args(small, out, *extra)) == 0
        return fits.getdata(_obs_file(out), "EFFECTIVE AREA")["EFFAREA"][0].astype(float)

    uncut = aeff(tmp_path / "fe-uncut", "--full-enclosure", "--gammaness-cut", "0")
    gh = aeff(tmp_path / "fe-gh", "--full-enclosure", "--gammaness-efficiency", str(GH_EFF))
    pl = aeff(product)
    print("AEFF ratios:", gh.sum() / uncut.sum(), pl.sum() / gh.sum())
    assert abs(gh.sum() / uncut.sum() - GH_EFF) < 0.02
    assert abs(pl.sum() / gh.sum() - TH_CONT) < 0.03


def test_check_wants_rad_max_2d_when_the_theta_cut_is_energy_dependent(product: Path, tmp_path: Path) -> None:
    """Without the RAD_MAX keyword (energy-dependent theta cut), a point-like AEFF needs the RAD_MAX_2D HDU."""
    import shutil

    d = tmp_path / "dl3"
    shutil.copytree(product, d)
    with fits.open(d / "hdu-index.fits.gz") as hdul:
        idx = hdul[1].copy()
    idx.data = idx.data[np.char.strip(idx.data["HDU_TYPE"]) != "rad_max"]
    fits.HDUList([fits.PrimaryHDU(), idx]).writeto(d / "hdu-index.fits.gz", overwrite=True)
    res = check(d)
    assert not res.ok and any("EFFECTIVE AREA]: point-like EFF_AREA without RAD_MAX" in p and "no RAD_MAX_2D HDU" in p
                              for p in res.problems), res.problems
