"""BKG_2D and BKG_3D against the proton rate the generator injects, after the same gammaness cut.

The expectation, from ``appliance.dl3.model`` (what ``generate`` draws the data's hadrons from and
the proton MC is detected with): protons arrive with the flux ``F(E) = PROTON_NORM E**-PROTON_INDEX``
(m-2 s-1 sr-1 TeV-1) and are detected with the area ``A_p(E, theta) = A_p(E, 0) exp(-theta**2 / 2 S**2)``,
so the rate per solid angle and true energy at FoV offset theta is ``F(E) A_p(E, 0) exp(...)``
(s-1 sr-1 TeV-1). Their reconstructed energy is ``E exp(N(0, MIGRA_SIGMA))``, so reco-energy bin i
receives the fraction ``Phi(ln(hi_i / E) / sigma) - Phi(ln(lo_i / E) / sigma)`` of true energy E, and the
gammaness is Beta(1, 4), so a cut ``g > c_i`` keeps ``(1 - c_i)**4`` of them (the proton direction is
reconstructed exactly). Integrating over true energy (the simulated 0.05-100 TeV) and over the solid
angle of an offset ring, ``2 pi int sin(theta) exp(-theta**2 / 2 S**2) dtheta``, gives the expected
rate (s-1) in each (reco-energy, offset) cell; BKG x dE x dOmega summed over the same cells of the
product must equal it.

The MC's statistical error: each selected proton carries the weight pyirf gives it (target E**-2.7 over
simulated E**-2, so w ~ E**-0.7), and the relative error of a weighted count is sqrt(sum w**2) / sum w
over the events in it. Totals must agree within 3 of those errors; per reco-energy bin and per offset
ring (about 20 comparisons per product) within 4. The data sets are seeded, so the test is reproducible.
The same expectation without cuts and migration, times the livetime, is the number of hadrons the
generator put into the observation (all DL2 events minus the injected source gammas), within Poisson error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from scipy.special import ndtr

from appliance.cli import main
from appliance.dl3 import generate, io, irf, model
from appliance.dl3.generate import GenerateOptions

MEV_PER_TEV = 1e6
VIEWCONE = generate.PROTON_SIM.viewcone_max  # deg


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One short observation, a small gamma MC (the IRFs need one) and 8e6 thrown protons (~85 000 detected)."""
    root = tmp_path_factory.mktemp("dl3-bkgrate")
    truth = generate.generate(GenerateOptions(out=root / "synth", seed=5, n_obs=1, obs_time=60.0,
                                              gamma_showers=200_000, proton_showers=8_000_000, formats=("fits",)))
    d = root / "synth" / "fits"
    return {"root": root, "truth": truth, "events": d / f"dl2_obs{truth['obs_ids'][0]}.fits", "mc": d / "mc_gamma.fits",
            "protons": io.read_table(d / "mc_proton.fits", "events", io.MC_EVENTS), "proton_mc": d / "mc_proton.fits"}


def _convert(data: dict, name: str, *cut: str, background: str = "2d") -> Path:
    out = data["root"] / name
    assert main(["dl3", "convert", "--full-enclosure", "--background", background, "--events", str(data["events"]),
                 "--mc", str(data["mc"]), "--background-mc", str(data["proton_mc"]), "--out", str(out), *cut]) == 0
    return next(out.glob("obs_0*.fits.gz"))


def _hadron_efficiency(path: Path, n_bins: int) -> np.ndarray:
    """(1 - c_i)**4 per reco-energy bin, with the cut the product was made with (global or GHCUTn)."""
    h = fits.getheader(path, "EVENTS")
    if "GH_CUT" in h:
        return np.full(n_bins, (1 - h["GH_CUT"]) ** 4)
    return np.array([(1 - h[f"GHCUT{i + 1}"]) ** 4 for i in range(n_bins)])


def _ring_solid_angle(t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Proton-acceptance-weighted solid angle (sr) of offset rings [t0, t1] (deg), inside the viewcone."""
    out = []
    for a, b in zip(t0, t1, strict=True):
        b = min(b, VIEWCONE)
        th = np.linspace(a, b, 400) if b > a else np.array([a, a])
        f = 2 * np.pi * np.sin(np.radians(th)) * np.exp(-0.5 * (th / model.PROTON.fov_sigma) ** 2)
        out.append(np.trapezoid(f, np.radians(th)))
    return np.array(out)


def _expected_per_energy(edges: np.ndarray, eff: np.ndarray) -> np.ndarray:
    """Expected rate (s-1 sr-1) at offset 0 in each reco-energy bin after the cut: int F A_p P(bin | E) dE x eff."""
    e = np.geomspace(generate.PROTON_SIM.energy_min, generate.PROTON_SIM.energy_max, 20_000)
    spec = model.proton_flux(e) * model.PROTON.area(e, 0.0)
    lo, hi = edges[:-1, None], edges[1:, None]
    frac = ndtr(np.log(hi / e) / model.MIGRA_SIGMA) - ndtr(np.log(lo / e) / model.MIGRA_SIGMA)
    return np.trapezoid(spec * frac, e, axis=1) * eff


def _mc_errors(data: dict, path: Path, edges: np.ndarray, offset_edges: np.ndarray | None) -> dict:
    """Relative statistical errors (sqrt(sum w^2) / sum w) of the selected MC protons: total, per energy, per ring."""
    p = data["protons"]
    h = fits.getheader(path, "EVENTS")
    cuts = irf.Cuts(gammaness=h.get("GH_CUT", 0.6), gh_efficiency=h.get("GH_EFF"))
    if cuts.gh_efficiency is not None:
        cuts = irf.replace(cuts, energy_edges=tuple(edges), gh_cuts=tuple(h[f"GHCUT{i + 1}"]
                                                                          for i in range(len(edges) - 1)))
    sel = cuts.gh_mask(p["reco_energy"], p["gammaness"])
    e_reco, w = p["reco_energy"][sel], p["true_energy"][sel] ** -0.7
    off = model.separation(p["pointing_az"][sel], p["pointing_alt"][sel], p["reco_az"][sel], p["reco_alt"][sel])

    def rel(mask: np.ndarray) -> tuple[float, int]:
        return float(np.sqrt(np.sum(w[mask] ** 2)) / max(np.sum(w[mask]), 1e-300)), int(mask.sum())

    inside = (e_reco >= edges[0]) & (e_reco <= edges[-1])
    out = {"total": rel(inside),
           "energy": [rel((e_reco >= a) & (e_reco < b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]}
    if offset_edges is not None:
        out["ring"] = [rel(inside & (off >= a) & (off < b)) for a, b in zip(offset_edges[:-1], offset_edges[1:],
                                                                             strict=True)]
    return out


def _compare(label: str, got: float, want: float, rel_err: float, n: int, bound: float) -> float:
    pull = (got / want - 1) / rel_err
    print(f"{label}: product {got:.5g} s-1, injected {want:.5g} s-1, ratio {got / want:.4f}, "
          f"MC error {100 * rel_err:.2f} % ({n} protons), pull {pull:+.2f}")
    assert abs(pull) < bound, (label, got, want, rel_err)
    return pull


def _check_bkg_2d(data: dict, path: Path, tag: str) -> None:
    with fits.open(path) as hdul:
        b = hdul["BACKGROUND"]
        assert b.header["HDUCLAS4"] == "BKG_2D"
        edges = np.append(b.data["ENERG_LO"][0], b.data["ENERG_HI"][0][-1])
        t0, t1 = b.data["THETA_LO"][0], b.data["THETA_HI"][0]
        bkg = b.data["BKG"][0].astype(float)  # (offset, energy): FITS order
    de = np.diff(edges) * MEV_PER_TEV
    domega = 2 * np.pi * (np.cos(np.radians(t0)) - np.cos(np.radians(t1)))
    cell = bkg * de[None, :] * domega[:, None]  # s-1 per (offset, energy) cell
    per_e = _expected_per_energy(edges, _hadron_efficiency(path, len(edges) - 1))
    ring = _ring_solid_angle(t0, t1)
    err = _mc_errors(data, path, edges, np.append(t0, t1[-1]))
    _compare(f"BKG_2D {tag} total", cell.sum(), per_e.sum() * ring.sum(), *err["total"], bound=3)
    for i, (re, n) in enumerate(err["energy"]):
        if n >= 100:
            _compare(f"BKG_2D {tag} E_reco bin {i}", cell[:, i].sum(), per_e[i] * ring.sum(), re, n, bound=4)
    for j, (re, n) in enumerate(err["ring"]):
        if n >= 100:
            _compare(f"BKG_2D {tag} offset {t0[j]:.2f}-{t1[j]:.2f} deg", cell[j].sum(), per_e.sum() * ring[j], re, n,
                     bound=4)


def _check_bkg_3d(data: dict, path: Path, tag: str) -> None:
    with fits.open(path) as hdul:
        b = hdul["BACKGROUND"]
        assert b.header["HDUCLAS4"] == "BKG_3D"
        edges = np.append(b.data["ENERG_LO"][0], b.data["ENERG_HI"][0][-1])
        fov = np.append(b.data["DETX_LO"][0], b.data["DETX_HI"][0][-1])
        bkg = b.data["BKG"][0].astype(float)  # (lat, lon, energy): FITS order
    assert fov[0] <= -VIEWCONE and fov[-1] >= VIEWCONE  # the grid holds the whole viewcone
    de = np.diff(edges) * MEV_PER_TEV
    pix = irf.fov_pixel_solid_angle(fov).to_value("sr").T  # (lat, lon)
    per_e_got = np.einsum("yxe,yx,e->e", bkg, pix, de)  # s-1 per energy bin, whole field of view
    per_e = _expected_per_energy(edges, _hadron_efficiency(path, len(edges) - 1))
    full = _ring_solid_angle(np.array([0.0]), np.array([VIEWCONE]))[0]
    err = _mc_errors(data, path, edges, None)
    _compare(f"BKG_3D {tag} total", per_e_got.sum(), per_e.sum() * full, *err["total"], bound=3)
    for i, (re, n) in enumerate(err["energy"]):
        if n >= 100:
            _compare(f"BKG_3D {tag} E_reco bin {i}", per_e_got[i], per_e[i] * full, re, n, bound=4)


@pytest.mark.parametrize("background", ["2d", "3d"])
def test_background_matches_the_injected_proton_rate_global_cut(data: dict, background: str) -> None:
    path = _convert(data, f"dl3-{background}-global", "--gammaness-cut", "0.3", background=background)
    (_check_bkg_2d if background == "2d" else _check_bkg_3d)(data, path, "gammaness>0.3")


@pytest.mark.parametrize("background", ["2d", "3d"])
def test_background_matches_the_injected_proton_rate_energy_dependent_cut(data: dict, background: str) -> None:
    path = _convert(data, f"dl3-{background}-eff", "--gammaness-efficiency", "0.95", background=background)
    assert fits.getheader(path, "EVENTS")["GH_EFF"] == 0.95
    (_check_bkg_2d if background == "2d" else _check_bkg_3d)(data, path, "gamma efficiency 0.95")


def test_the_expectation_is_the_generators_injected_hadron_rate(data: dict) -> None:
    """The data's hadrons (every DL2 event that is not a source gamma) against livetime x the analytic rate."""
    ev = io.read_table(data["events"], "events", io.EVENTS)
    gti = io.read_table(data["events"], "gti", io.GTI)
    obs = io.read_table(data["events"], "observation", io.OBSERVATION)
    live = float(np.sum(gti["stop"] - gti["start"]) * obs["deadc"][0])
    n_hadrons = len(ev["event_id"]) - data["truth"]["n_source_events"]
    edges = np.array([1e-6, 1e6])  # every reco energy, no cut
    rate = _expected_per_energy(edges, np.ones(1))[0] * _ring_solid_angle(np.array([0.0]), np.array([VIEWCONE]))[0]
    want = live * rate
    pull = (n_hadrons - want) / np.sqrt(want)
    print(f"injected hadrons: {n_hadrons} in {live:.1f} s live, expected {want:.1f} ({rate:.2f} s-1), pull {pull:+.2f}")
    assert abs(pull) < 3
