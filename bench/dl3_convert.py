"""DL3 converter throughput: events converted per second and IRF computation, each against the bare
libraries on the same arrays (goal, issue 17: our overhead under 20 %), and the product's file sizes.

* events: 1e7 DL2 events of one observation, in memory -> EVENTS + GTI + POINTING written as
  ``.fits.gz`` by ``appliance.dl3.events`` (obs facts, MET times, selection, GADF headers), against
  astropy writing the same selected columns with a bare header (pyirf has no event-list writer; this
  is what a pyirf-based script does, e.g. lstchain's create_dl3).
* IRFs: 1e7 selected MC gammas -> ``irf.mc_table`` + ``irf.compute`` (full enclosure: AEFF_2D,
  EDISP_2D, PSF_TABLE) against pyirf alone: ``pyirf.utils`` offsets/theta (astropy separations) and the
  same three ``pyirf.irf`` calls with the same binning.
* sizes: bytes per event of our EVENTS HDU (row width, HDU on disk, gzip) against the GADF minimum (the
  required columns EVENT_ID K, TIME D, RA E, DEC E, ENERGY E: 28 B), and every IRF HDU's size with its
  binning (point-like AEFF_2D, EDISP_2D, RAD_MAX_2D; full-enclosure PSF_TABLE, BKG_2D, BKG_3D).
Run:  .venv/bin/python bench/dl3_convert.py [--events 10000000] [--mc 10000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tempfile
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.dl3 import events, gadf, generate, irf, model  # noqa: E402

GADF_MIN_ROW = {"EVENT_ID": 8, "TIME": 8, "RA": 4, "DEC": 4, "ENERGY": 4}  # K, D, E, E, E: 28 B per event


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def dl2_events(n: int, rng: np.random.Generator) -> tuple[dict, dict, dict]:
    t0 = generate.T0_UNIX
    ev = {"obs_id": np.full(n, 5000, np.int64), "event_id": np.arange(1, n + 1, dtype=np.int64),
          "time": np.sort(t0 + rng.random(n) * 3600.0), "reco_energy": rng.lognormal(-1, 1, n).astype(np.float32),
          "reco_ra": 83.6 + rng.normal(0, 1, n), "reco_dec": 22.0 + rng.normal(0, 1, n),
          "gammaness": rng.random(n).astype(np.float32)}
    obs = {"obs_id": np.array([5000]), "ra_pnt": np.array([83.2]), "dec_pnt": np.array([22.0]),
           "deadc": np.array([0.97]), "geolon": np.array([model.GEOLON]), "geolat": np.array([model.GEOLAT]),
           "altitude": np.array([model.ALTITUDE])}
    gti = {"obs_id": np.array([5000]), "start": np.array([t0]), "stop": np.array([t0 + 3600.0])}
    return ev, obs, gti


def ours_events(ev: dict, obs: dict, gti: dict, out: Path, cuts: irf.Cuts) -> None:
    info, gti_met, shift = events.observation("bench", 5000, obs, gti)
    sel = (ev["gammaness"] > cuts.gammaness) & (ev["time"] + shift >= info.tstart) & (ev["time"] + shift <= info.tstop)
    evo = {k: v[sel] for k, v in ev.items()}
    hdus = [events.events_hdu(info, evo, shift, cuts.cards(True)), events.gti_hdu(info, gti_met),
            events.pointing_hdu(info)]
    fits.HDUList([fits.PrimaryHDU(), *hdus]).writeto(out, overwrite=True, checksum=True)


def bare_events(ev: dict, obs: dict, gti: dict, out: Path, cuts: irf.Cuts) -> None:
    sel = ev["gammaness"] > cuts.gammaness
    shift = events.met(ev["time"][0]) - ev["time"][0]
    t = QTable({"EVENT_ID": ev["event_id"][sel], "TIME": (ev["time"][sel] + shift) * u.s,
                "RA": ev["reco_ra"][sel].astype(np.float32) * u.deg, "DEC": ev["reco_dec"][sel].astype(np.float32) * u.deg,
                "ENERGY": ev["reco_energy"][sel] * u.TeV, "GAMMANESS": ev["gammaness"][sel]})
    g = QTable({"START": (gti["start"] + shift) * u.s, "STOP": (gti["stop"] + shift) * u.s})
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(t), fits.table_to_hdu(g)]).writeto(out, overwrite=True)


def mc_columns(n: int, rng: np.random.Generator) -> dict:
    e = np.exp(rng.uniform(np.log(0.03), np.log(40), n))
    paz, palt = np.full(n, 180.0), np.full(n, 70.0)
    off = np.degrees(np.arccos(1 - rng.random(n) * (1 - np.cos(np.radians(2.5)))))
    az, alt = model.offset_by(paz, palt, rng.uniform(0, 360, n), off)
    raz, ralt = model.offset_by(az, alt, rng.uniform(0, 360, n), rng.rayleigh(model.GAMMA.psf_sigma(e)))
    return {"true_energy": e, "reco_energy": e * np.exp(rng.normal(0, model.MIGRA_SIGMA, n)), "true_az": az,
            "true_alt": alt, "reco_az": raz, "reco_alt": ralt, "pointing_az": paz, "pointing_alt": palt,
            "gammaness": np.ones(n, np.float32)}  # all selected: both sides compute on the same 1e7 events


def ours_irf(mc: dict, sim, binning: irf.Binning, cuts: irf.Cuts) -> None:
    irf.compute(irf.mc_table(mc, cuts), sim, point_like=False, binning=binning, cuts=cuts)


def pyirf_irf(mc: dict, sim, binning: irf.Binning) -> None:
    from pyirf.irf import effective_area_per_energy_and_fov, energy_dispersion, psf_table
    from pyirf.utils import calculate_source_fov_offset, calculate_theta

    t = QTable({k: v * (u.TeV if "energy" in k else u.deg) for k, v in mc.items() if k != "gammaness"})
    t["true_source_fov_offset"] = calculate_source_fov_offset(t)
    t["reco_source_fov_offset"] = calculate_source_fov_offset(t, prefix="reco")
    t["theta"] = calculate_theta(t, t["true_az"], t["true_alt"])
    e, off = binning.true_energy * u.TeV, binning.fov_offset * u.deg
    effective_area_per_energy_and_fov(t, sim, e, off)
    energy_dispersion(t, e, off, binning.migration)
    psf_table(t, e, binning.source_offset * u.deg, off)


def hdu_bytes(hdu: fits.BinTableHDU) -> tuple[int, int]:
    """On-disk bytes of one HDU (header + data, 2880-byte blocks) and of the same bytes gzipped."""
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    raw = buf.getvalue()[len(fits.PrimaryHDU().header.tostring()):]
    return len(raw), len(gzip.compress(raw, mtime=0))


def binning_of(hdu: fits.BinTableHDU) -> str:
    """'ENERG 34 x THETA 10 -> EFFAREA (float64)': the axes (x_LO columns) and the value column."""
    names = hdu.columns.names
    axes = [f"{n[:-3]} {len(np.atleast_1d(hdu.data[n][0]))}" for n in names if n.endswith("_LO")]
    value = [n for n in names if not n.endswith(("_LO", "_HI"))][-1]
    return f"{' x '.join(axes)} -> {value} ({hdu.data[value].dtype.name})"


def events_size(path: Path, n_events: int) -> str:
    with fits.open(path) as hdul:
        ev = hdul["EVENTS"]
        row = ev.header["NAXIS1"]
        cols = ", ".join(f"{c.name} {c.format}" for c in ev.columns)
        disk, gz = hdu_bytes(ev.copy())
        extra = " + ".join(f"{c.name} {c.format}" for c in ev.columns if c.name not in GADF_MIN_ROW)
    minimum = sum(GADF_MIN_ROW.values())
    return (f"EVENTS HDU: {row} B/event in the table ({cols}) against the GADF minimum {minimum} B "
            f"({', '.join(GADF_MIN_ROW)}): +{row - minimum} B = {extra or 'nothing'}; on disk {disk / n_events:.2f} B/event "
            f"with header and padding, gzip {gz / n_events:.2f} B/event ({n_events} events)")


def irf_sizes(mc: dict, sim, binning: irf.Binning, cuts: irf.Cuts) -> list[str]:
    """Every IRF HDU a product can hold, as ``gadf.irf_hdus`` writes it, with its size and binning."""
    with np.errstate(invalid="ignore", divide="ignore"):  # empty true-energy bins of the bench MC: aeff 0/0
        return _irf_sizes(mc, sim, binning, cuts)


def _irf_sizes(mc: dict, sim, binning: irf.Binning, cuts: irf.Cuts) -> list[str]:
    gamma = irf.mc_table(mc, cuts, fov_coords=True)
    protons = gamma[: min(len(gamma), 200_000)]  # any events do for the background's size
    hdus = gadf.irf_hdus(irf.compute(gamma, sim, point_like=True, binning=binning, cuts=cuts), 5000)
    for kind in ("2d", "3d"):
        fe = irf.compute(gamma, sim, point_like=False, binning=binning, cuts=cuts, proton=protons, proton_sim=sim,
                         background=kind)
        hdus += [h for h in gadf.irf_hdus(fe, 5000) if h.header["HDUCLAS4"] in
                 (("PSF_TABLE", "BKG_2D") if kind == "2d" else ("BKG_3D",))]
    lines = []
    for h in hdus:
        disk, gz = hdu_bytes(h)
        lines.append(f"  {h.header['HDUCLAS4']:10s} {h.header['HDUCLAS3']:14s} {disk / 1024:7.1f} KiB on disk, "
                     f"{gz / 1024:6.1f} KiB gzip: {binning_of(h)}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--mc", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--suffix", nargs="+", default=[".fits", ".fits.gz"], help="event files to time")
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    cuts, binning = irf.Cuts(), irf.Binning()
    with tempfile.TemporaryDirectory() as tmp:
        ev, obs, gti = dl2_events(a.events, rng)
        for suffix in a.suffix:
            o, b = Path(tmp) / f"ours{suffix}", Path(tmp) / f"bare{suffix}"
            t_o = best(lambda o=o: ours_events(ev, obs, gti, o, cuts), a.repeat)
            t_b = best(lambda b=b: bare_events(ev, obs, gti, b, cuts), a.repeat)
            n_sel = int(np.sum(ev["gammaness"] > cuts.gammaness))
            print(f"events {suffix:8s}: {a.events:.0e} in ({n_sel} selected): ours {t_o:.2f} s "
                  f"({a.events / t_o:.3g} ev/s), bare astropy {t_b:.2f} s ({a.events / t_b:.3g} ev/s), "
                  f"ratio {t_o / t_b:.3f}; size ours {o.stat().st_size / 1e6:.1f} MB, bare {b.stat().st_size / 1e6:.1f} MB "
                  f"({o.stat().st_size / n_sel:.1f} B/event)")
            if suffix == ".fits":
                print(events_size(o, n_sel))
        ev.clear()
        mc = mc_columns(a.mc, rng)
        sim = irf.simulation_info("bench", {
            "num_showers": np.array([10 * a.mc]), "shower_reuse": np.array([1]), "energy_range_min": np.array([0.03]),
            "energy_range_max": np.array([40.0]), "spectral_index": np.array([-2.0]),
            "max_scatter_range": np.array([350.0]), "min_viewcone_radius": np.array([0.0]),
            "max_viewcone_radius": np.array([2.5])})
        t_o = best(lambda: ours_irf(mc, sim, binning, cuts), a.repeat)
        t_p = best(lambda: pyirf_irf(mc, sim, binning), a.repeat)
        print(f"IRFs (AEFF_2D+EDISP_2D+PSF_TABLE) from {a.mc:.0e} MC events: ours {t_o:.2f} s, pyirf alone {t_p:.2f} s, "
              f"ratio {t_o / t_p:.3f} (overhead {100 * (t_o / t_p - 1):+.1f} %)")
        print(f"IRF HDUs (default irf.Binning, from {a.mc:.0e} MC events):")
        print("\n".join(irf_sizes(mc, sim, binning, cuts)))


if __name__ == "__main__":
    main()
