"""Synthetic IACT data with a known response: a Crab-like source, hadrons, wobble pointings, MC.

Drawn from ``appliance.dl3.model`` only, so every figure the converter produces has an analytic
expectation (effective area, energy resolution, PSF, background rate, source spectrum).
Data: ``n_obs`` wobble observations 0.4 deg around the Crab (position angles 0, 90, 180, 270 deg),
each two GTIs with a 30 s gap, dead-time fraction 3 %. MC: a diffuse gamma sample (viewcone
0-2.5 deg, power law E**-1.6 as MAGIC simulates, thrown over a disc of 350 m) and a diffuse proton
sample for the background IRF; only triggered showers are stored, ``num_showers`` counts all.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from appliance.dl3 import io, model

T0_UNIX = 1731628800.0  # 2024-11-15T00:00:00 UTC
DEADC = 0.97


@dataclass(frozen=True)
class Simulation:
    """One CORSIKA-like run: what pyirf's SimulatedEventsInfo needs."""

    num_showers: int
    energy_min: float  # TeV
    energy_max: float  # TeV
    spectral_index: float  # sign included
    max_scatter: float  # m
    viewcone_min: float  # deg
    viewcone_max: float  # deg


GAMMA_SIM = Simulation(4_000_000, 0.02, 50.0, -1.6, 350.0, 0.0, 2.5)
PROTON_SIM = Simulation(4_000_000, 0.05, 100.0, -2.0, 500.0, 0.0, 3.0)
MC_POINTING = (180.0, 70.0)  # az, alt (deg)


@dataclass(frozen=True)
class GenerateOptions:
    out: Path
    seed: int = 1
    n_obs: int = 4
    obs_time: float = 600.0  # s per observation (wall clock)
    gamma_showers: int = GAMMA_SIM.num_showers
    proton_showers: int = PROTON_SIM.num_showers
    formats: tuple[str, ...] = ("fits", "hdf5")


def _inverse_cdf(rng: np.random.Generator, x: np.ndarray, pdf: np.ndarray, n: int) -> np.ndarray:
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(x))])
    return np.interp(rng.random(n) * cdf[-1], cdf, x)


def _integral(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.trapezoid(y, x))


def _gti(i: int, obs_time: float) -> list[tuple[float, float]]:
    start = T0_UNIX + i * (obs_time + 300.0)
    half = obs_time / 2
    return [(start, start + half - 15.0), (start + half + 15.0, start + obs_time)]


def _observation(rng: np.random.Generator, obs_id: int, i: int, obs_time: float) -> dict:
    pa = 90.0 * (i % 4)
    ra_pnt, dec_pnt = model.offset_by(model.CRAB_RA, model.CRAB_DEC, pa, model.WOBBLE_OFFSET)
    gtis = _gti(i, obs_time)
    live = DEADC * sum(b - a for a, b in gtis)
    # source gammas: dN/dE = phi(E) * A(E, 0.4 deg) * livetime (phi in cm-2, A in m2)
    e = np.geomspace(GAMMA_SIM.energy_min, GAMMA_SIM.energy_max, 4000)
    rate = model.CRAB(e) * 1e4 * model.GAMMA.area(e, model.WOBBLE_OFFSET)
    n_g = rng.poisson(live * _integral(e, rate))
    e_g = _inverse_cdf(rng, e, rate, n_g)
    r = rng.rayleigh(model.GAMMA.psf_sigma(e_g))
    ra_g, dec_g = model.offset_by(model.CRAB_RA, model.CRAB_DEC, rng.uniform(0, 360, n_g), r)
    g_g = rng.beta(4, 1, n_g)
    # hadrons: dN/dE dOmega = F_p(E) * A_p(E, theta) * livetime, reconstructed where they came from
    ep = np.geomspace(PROTON_SIM.energy_min, PROTON_SIM.energy_max, 4000)
    th = np.linspace(0, PROTON_SIM.viewcone_max, 600)
    e_rate = model.proton_flux(ep) * model.PROTON.area(ep, 0.0)
    t_pdf = 2 * np.pi * np.sin(np.radians(th)) * np.radians(1) * np.exp(-0.5 * (th / model.PROTON.fov_sigma) ** 2)
    n_h = rng.poisson(live * _integral(ep, e_rate) * _integral(th, t_pdf))
    e_h = _inverse_cdf(rng, ep, e_rate, n_h)
    ra_h, dec_h = model.offset_by(ra_pnt, dec_pnt, rng.uniform(0, 360, n_h), _inverse_cdf(rng, th, t_pdf, n_h))
    g_h = rng.beta(1, 4, n_h)
    n = n_g + n_h
    true_e = np.concatenate([e_g, e_h])
    reco_e = true_e * np.exp(rng.normal(0, model.MIGRA_SIGMA, n))
    # arrival times uniform over the GTIs
    lengths = np.array([b - a for a, b in gtis])
    which = rng.choice(len(gtis), n, p=lengths / lengths.sum())
    t = np.array([a for a, _ in gtis])[which] + rng.random(n) * lengths[which]
    order = np.argsort(t)
    events = {
        "obs_id": np.full(n, obs_id, np.int64), "event_id": np.arange(1, n + 1, dtype=np.int64),
        "time": t[order], "reco_energy": reco_e[order].astype(np.float32),
        "reco_ra": np.concatenate([ra_g, ra_h])[order], "reco_dec": np.concatenate([dec_g, dec_h])[order],
        "gammaness": np.concatenate([g_g, g_h])[order].astype(np.float32),
    }
    obs = {"obs_id": np.array([obs_id]), "ra_pnt": np.array([ra_pnt]), "dec_pnt": np.array([dec_pnt]),
           "deadc": np.array([DEADC]), "geolon": np.array([model.GEOLON]),
           "geolat": np.array([model.GEOLAT]), "altitude": np.array([model.ALTITUDE])}
    gti = {"obs_id": np.full(len(gtis), obs_id), "start": np.array([a for a, _ in gtis]),
           "stop": np.array([b for _, b in gtis])}
    return {"events": (events, io.EVENTS), "observation": (obs, io.OBSERVATION), "gti": (gti, io.GTI)}, n_g


def simulate_mc(rng: np.random.Generator, sim: Simulation, response: model.Response,
                gammaness: tuple[float, float], chunk: int = 2_000_000) -> dict:
    """Throw ``sim.num_showers`` showers, keep those detected with probability A / (pi R^2)."""
    parts: list[dict[str, np.ndarray]] = []
    thrown_area = np.pi * sim.max_scatter**2
    k = sim.spectral_index + 1
    for start in range(0, sim.num_showers, chunk):
        m = min(chunk, sim.num_showers - start)
        e = (sim.energy_min**k + rng.random(m) * (sim.energy_max**k - sim.energy_min**k)) ** (1 / k)
        cmin, cmax = np.cos(np.radians(sim.viewcone_min)), np.cos(np.radians(sim.viewcone_max))
        off = np.degrees(np.arccos(cmax + rng.random(m) * (cmin - cmax)))
        keep = rng.random(m) < response.area(e, off) / thrown_area
        e, off = e[keep], off[keep]
        n = len(e)
        az, alt = model.offset_by(MC_POINTING[0], MC_POINTING[1], rng.uniform(0, 360, n), off)
        if response.psf_sigma_1tev > 0:
            reco_az, reco_alt = model.offset_by(az, alt, rng.uniform(0, 360, n), rng.rayleigh(response.psf_sigma(e)))
        else:
            reco_az, reco_alt = az, alt
        parts.append({
            "true_energy": e, "reco_energy": e * np.exp(rng.normal(0, model.MIGRA_SIGMA, n)),
            "true_alt": alt, "true_az": az, "reco_alt": reco_alt, "reco_az": reco_az,
            "pointing_alt": np.full(n, MC_POINTING[1]), "pointing_az": np.full(n, MC_POINTING[0]),
            "gammaness": rng.beta(*gammaness, n),
        })
    events = {c: np.concatenate([p[c] for p in parts]).astype(np.float32 if c in ("gammaness",) else np.float64)
              for c in io.MC_EVENTS}
    simtab = {"num_showers": np.array([sim.num_showers], np.int64), "shower_reuse": np.array([1], np.int64),
              "energy_range_min": np.array([sim.energy_min]), "energy_range_max": np.array([sim.energy_max]),
              "max_scatter_range": np.array([sim.max_scatter]), "spectral_index": np.array([sim.spectral_index]),
              "min_viewcone_radius": np.array([sim.viewcone_min]), "max_viewcone_radius": np.array([sim.viewcone_max])}
    return {"events": (events, io.MC_EVENTS), "simulation": (simtab, io.SIMULATION)}


def generate(opts: GenerateOptions) -> dict:
    """Write the data set under ``opts.out/<format>/`` and ``truth.json``; returns the truth."""
    rng = np.random.default_rng(opts.seed)
    out = Path(opts.out)
    files: dict[str, dict] = {}
    n_source = 0
    for i in range(opts.n_obs):
        obs_id = 5000 + i
        tables, n_g = _observation(rng, obs_id, i, opts.obs_time)
        files[f"dl2_obs{obs_id}"] = tables
        n_source += n_g
    gsim = Simulation(**{**asdict(GAMMA_SIM), "num_showers": opts.gamma_showers})
    psim = Simulation(**{**asdict(PROTON_SIM), "num_showers": opts.proton_showers})
    files["mc_gamma"] = simulate_mc(rng, gsim, model.GAMMA, (4, 1))
    files["mc_proton"] = simulate_mc(rng, psim, model.PROTON, (1, 4))
    for fmt in opts.formats:
        (out / fmt).mkdir(parents=True, exist_ok=True)
        for stem, tables in files.items():
            io.write_tables(out / fmt / f"{stem}.{'h5' if fmt == 'hdf5' else 'fits'}", tables)
    truth = {
        "source": {"ra": model.CRAB_RA, "dec": model.CRAB_DEC, **asdict(model.CRAB)},
        "n_source_events": int(n_source), "obs_ids": [5000 + i for i in range(opts.n_obs)],
        "gamma_simulation": asdict(gsim), "proton_simulation": asdict(psim),
        "gammaness_cut": model.GAMMANESS_CUT, "theta_cut": model.THETA_CUT,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth
