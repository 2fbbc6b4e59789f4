"""Source detection on the uncorrected image, fluxes on the corrected one: three detectors.

Why detect on the uncorrected image: its noise is flat, so one threshold (5 sigma, sigma from the
median absolute deviation) means the same everywhere; the corrected image's noise grows towards
the edge as 1/beam. Fluxes come from the corrected image, where a source has its true brightness.

* ``sextractor`` - the real ``source-extractor`` binary in dual-image mode (detect on the first
  image, measure on the second), absolute thresholds, no background (interferometric images have
  none); flux = FLUX_MAX on the corrected image (Jy/beam = Jy for a point source).
* ``aegean`` - AegeanTools' ``SourceFinder`` on the uncorrected image (rms given, background 0),
  then priorized fitting of the same sources on the corrected image with an rms map rms/beam.
* ``emcee`` - peaks above 5 sigma in the uncorrected image, each fitted on the corrected image as
  a point source (the synthesized beam from BMAJ/BMIN) by MCMC: amplitude and position, Gaussian
  likelihood with the per-pixel noise rms/beam, flat priors; flux = posterior median.

Every detector returns a list of ``Detection`` in world coordinates.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.pipeline.errors import PipelineError
from appliance.pipeline.fitsimage import Image, write_image

DETECTORS = ("sextractor", "aegean", "emcee")
SNR = 5.0


@dataclass
class Detection:
    detector: str
    ra: float
    dec: float
    x: float
    y: float
    flux: float  # Jy (peak Jy/beam on the corrected image)
    flux_err: float = float("nan")


def noise_rms(data: np.ndarray) -> float:
    """Robust rms (1.4826 x MAD) of the finite pixels; sources barely move it."""
    v = data[np.isfinite(data)]
    if v.size < 10:
        raise PipelineError("image", "fewer than 10 finite pixels")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def _beam_sigma(im: Image) -> float:
    b = im.beam_pix()
    if b is None:
        raise PipelineError(im.path, "no BMAJ/BMIN in the header: the synthesized beam is unknown")
    return math.sqrt(b[0] * b[1]) / 2.3548


def _world(im: Image, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = im.wcs.pixel_to_world(x, y)
    return np.atleast_1d(c.ra.deg), np.atleast_1d(c.dec.deg)


# -- SExtractor -----------------------------------------------------------------------------------

def sextractor(det: Path, meas: Path, rms: float, tmp: Path) -> np.ndarray:
    """Rows (x, y, flux_max) with 0-based pixels, from ``source-extractor det,meas``."""
    exe = shutil.which("source-extractor") or shutil.which("sex")
    if exe is None:
        raise PipelineError("source-extractor", "program not found (Debian package source-extractor)")
    params = tmp / "sex.param"
    params.write_text("X_IMAGE\nY_IMAGE\nFLUX_MAX\n")
    cat = tmp / "sex.cat"
    cmd = [exe, f"{det},{meas}", "-c", "/dev/null", "-PARAMETERS_NAME", str(params),
           "-CATALOG_NAME", str(cat), "-CATALOG_TYPE", "ASCII_HEAD", "-FILTER", "N",
           "-THRESH_TYPE", "ABSOLUTE", "-DETECT_THRESH", f"{SNR * rms:.6g}",
           "-ANALYSIS_THRESH", f"{SNR * rms:.6g}", "-DETECT_MINAREA", "3",
           "-BACK_TYPE", "MANUAL", "-BACK_VALUE", "0", "-CHECKIMAGE_TYPE", "NONE", "-VERBOSE_TYPE", "QUIET"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise PipelineError(det, f"source-extractor exit {r.returncode}: {r.stderr.strip()[-200:]}")
    lines = [ln for ln in cat.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    rows = np.loadtxt(lines, ndmin=2) if lines else np.zeros((0, 3))
    if rows.size == 0:
        return np.zeros((0, 3))
    rows[:, :2] -= 1.0  # FITS 1-based -> 0-based
    return rows


# -- Aegean ---------------------------------------------------------------------------------------

def aegean(det: Path, meas: Path, rms: float, pb: np.ndarray, header: object, tmp: Path) -> list[tuple]:
    """(ra, dec, peak_flux, err) per source: found on ``det``, fluxes fitted on ``meas``."""
    import logging

    from AegeanTools.source_finder import SourceFinder

    log = logging.getLogger("aegean")
    log.setLevel(logging.ERROR)
    for name in list(logging.root.manager.loggerDict):  # AegeanTools logs INFO lines of its own
        if "source_finder" in name or name.startswith("AegeanTools"):
            logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sf = SourceFinder(log=log)
        found = sf.find_sources_in_image(str(det), rms=rms, bkg=0.0, innerclip=SNR, outerclip=4,
                                         cores=1, progress=False)
        found = [s for s in found if type(s).__name__ == "ComponentSource"]
        if not found:
            return []
        rms_map, bkg_map = tmp / "rms.fits", tmp / "bkg.fits"
        write_image(rms_map, np.where(np.isfinite(pb) & (pb > 0), rms / np.where(pb > 0, pb, 1), np.nan), header)
        write_image(bkg_map, np.zeros_like(pb), header)
        sf2 = SourceFinder(log=log)
        fitted = sf2.priorized_fit_islands(str(meas), catalogue=found, rmsin=str(rms_map), bkgin=str(bkg_map),
                                           stage=1, outerclip=3, cores=1, progress=False, doregroup=False)
    fitted = [s for s in fitted if type(s).__name__ == "ComponentSource"]
    return [(s.ra, s.dec, s.peak_flux, s.err_peak_flux) for s in fitted]


# -- emcee ----------------------------------------------------------------------------------------

def peaks(data: np.ndarray, threshold: float, sep: int = 3) -> list[tuple[int, int]]:
    from scipy.ndimage import maximum_filter

    d = np.nan_to_num(data, nan=-np.inf)
    m = (d == maximum_filter(d, size=2 * sep + 1)) & (d > threshold)
    ys, xs = np.nonzero(m)
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def emcee_fit(cor: np.ndarray, noise: np.ndarray, x0: int, y0: int, sigma: float, seed: int,
              half: int = 5, walkers: int = 16, steps: int = 300) -> tuple[float, float, float, float] | None:
    """Posterior median (x, y, amplitude) and amplitude std of a point source near (x0, y0)."""
    import emcee

    ny, nx = cor.shape
    ys, xs = slice(max(0, y0 - half), min(ny, y0 + half + 1)), slice(max(0, x0 - half), min(nx, x0 + half + 1))
    data, err = cor[ys, xs], noise[ys, xs]
    yy, xx = np.mgrid[ys, xs]
    ok = np.isfinite(data) & np.isfinite(err) & (err > 0)
    if ok.sum() < 9:
        return None
    d, e, X, Y = data[ok], err[ok], xx[ok].astype(float), yy[ok].astype(float)
    a0 = float(cor[y0, x0])

    def logp(theta: np.ndarray) -> np.ndarray:
        x, y, a = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
        model = a * np.exp(-((X - x) ** 2 + (Y - y) ** 2) / (2 * sigma**2))
        lp = -0.5 * np.sum(((d - model) / e) ** 2, axis=1)
        bad = (np.abs(x[:, 0] - x0) > 2) | (np.abs(y[:, 0] - y0) > 2) | (a[:, 0] <= 0)
        return np.where(bad, -np.inf, lp)

    rng = np.random.default_rng(seed)
    start = np.column_stack([x0 + rng.normal(0, 0.1, walkers), y0 + rng.normal(0, 0.1, walkers),
                             abs(a0) * (1 + rng.normal(0, 0.05, walkers)) + 1e-12])
    sampler = emcee.EnsembleSampler(walkers, 3, logp, vectorize=True)
    sampler.random_state = np.random.RandomState(seed).get_state()  # reproducible chains
    sampler.run_mcmc(start, steps, progress=False)
    chain = sampler.get_chain(discard=steps // 2, flat=True)
    med = np.median(chain, axis=0)
    return float(med[0]), float(med[1]), float(med[2]), float(np.std(chain[:, 2]))


# -- all three ------------------------------------------------------------------------------------

def detect(unc: Image, cor: Image, pb: np.ndarray, detectors: tuple[str, ...] = DETECTORS,
           seed: int = 0) -> list[Detection]:
    """Run the chosen detectors; detection on ``unc``, fluxes on ``cor``."""
    unknown = set(detectors) - set(DETECTORS)
    if unknown:
        raise PipelineError(",".join(sorted(unknown)), f"unknown detector (known: {', '.join(DETECTORS)})")
    rms = noise_rms(unc.data)
    out: list[Detection] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-image-") as t:
        tmp = Path(t)
        det, meas = tmp / "det.fits", tmp / "meas.fits"
        write_image(det, np.nan_to_num(unc.data, nan=0.0), unc.header)
        write_image(meas, np.nan_to_num(cor.data, nan=0.0), unc.header)
        if "sextractor" in detectors:
            rows = sextractor(det, meas, rms, tmp)
            if len(rows):
                ra, dec = _world(unc, rows[:, 0], rows[:, 1])
                out += [Detection("sextractor", float(r), float(d), float(x), float(y), float(f))
                        for r, d, (x, y, f) in zip(ra, dec, rows, strict=True)]
        if "aegean" in detectors:
            for ra, dec, f, err in aegean(det, meas, rms, pb, unc.header, tmp):
                x, y = unc.wcs.world_to_pixel_values(ra, dec)
                out.append(Detection("aegean", float(ra), float(dec), float(x), float(y), float(f), float(err)))
        if "emcee" in detectors:
            sigma = _beam_sigma(unc)
            noise = rms / pb
            for i, (x0, y0) in enumerate(peaks(unc.data, SNR * rms)):
                fit = emcee_fit(cor.data, noise, x0, y0, sigma, seed + i)
                if fit is None:
                    continue
                x, y, a, sa = fit
                ra, dec = _world(unc, np.array([x]), np.array([y]))
                out.append(Detection("emcee", float(ra[0]), float(dec[0]), x, y, a, sa))
    return out
