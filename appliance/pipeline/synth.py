"""A synthetic ALMA-like archive with a known answer (ALMA cannot be reached from here).

Each observation is a folder of FITS files as a careless archive would hold them: a primary-beam
(flux profile) image, the primary-beam-corrected image, usually the uncorrected image, sometimes
calibrator products, file names from a dozen habits (ALMA's own ``member.uid___...pbcor.fits``, and
``final.fits``, ``beam_v2.fits``, ...), and headers with keywords missing at random. The sky holds
point and extended sources whose list is written to ``truth.json`` together with what every file
really is, so the ``products`` and ``image`` stages can be scored against it.

How the images relate (as CASA makes them): ``uncorrected = sky * beam + noise`` (noise flat),
``corrected = uncorrected / beam``; both are blanked (NaN) where the beam is below 0.2.
A few observations are made undecidable on purpose (the beam is missing); the truth says they
must be flagged.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance.fsutil import atomic_open, atomic_write_json

PB_CUTOFF = 0.2
BANDS = {3: 100e9, 6: 230e9, 7: 345e9}
CALIBRATORS = ("J1924-2914", "J0522-3627", "J1256-0547", "J2253+1608", "J0423-0120")
# keywords a careless pipeline may have left out (never the celestial WCS, except in bad inputs)
OPTIONAL_KEYS = ("OBJECT", "OBS_ID", "DATE-OBS", "BUNIT", "PROJECT", "TELESCOP", "RESTFRQ")


@dataclass
class Source:
    ra: float
    dec: float
    flux: float  # Jy: total flux (= peak in Jy/beam for a point source)
    kind: str  # "point" | "extended"
    size_pix: float = 0.0  # Gaussian sigma of an extended source, before the synthesized beam

    def to_json(self) -> dict:
        return {"ra": self.ra, "dec": self.dec, "flux": self.flux, "kind": self.kind,
                "size_pix": self.size_pix}


@dataclass
class ObsTruth:
    folder: str  # relative to the archive root
    project: str
    obs_id: str
    target: str
    band: int
    date: str
    ra: float
    dec: float
    files: dict[str, str] = field(default_factory=dict)  # file name -> pb|corrected|uncorrected|calibrator
    expect: str = "done"  # what `products` must conclude: done | flagged
    sources: list[Source] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"folder": self.folder, "project": self.project, "obs_id": self.obs_id,
                "target": self.target, "band": self.band, "date": self.date, "ra": self.ra,
                "dec": self.dec, "files": self.files, "expect": self.expect,
                "sources": [s.to_json() for s in self.sources]}


@dataclass
class GenerateSummary:
    out: str
    observations: int
    files: int
    sources: int
    bytes: int
    ok: bool = True

    def to_json(self) -> dict:
        return {"ok": self.ok, "out": self.out, "observations": self.observations,
                "files": self.files, "sources": self.sources, "bytes": self.bytes}

    def report(self) -> str:
        return (f"{self.observations} observations, {self.files} files ({self.bytes / 1e6:.1f} MB), "
                f"{self.sources} injected sources -> {self.out} (truth: {self.out}/truth.json)")


# -- images ---------------------------------------------------------------------------------------

def primary_beam(n: int, fwhm_pix: float) -> np.ndarray:
    """A smooth single-peaked flux profile (Gaussian), 1 at the centre, NaN below the cutoff."""
    y, x = np.mgrid[0:n, 0:n] - (n - 1) / 2
    sigma = fwhm_pix / 2.3548
    pb = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    pb[pb < PB_CUTOFF] = np.nan
    return pb.astype(np.float32)


def _gauss(n: int, x0: float, y0: float, sigma: float) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n]
    return np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))


def _smooth_noise(rng: np.random.Generator, n: int, beam_sigma: float, rms: float) -> np.ndarray:
    """White noise convolved with the synthesized beam (interferometric noise is correlated)."""
    white = rng.normal(size=(n, n))
    k = np.fft.fftfreq(n)
    kx, ky = np.meshgrid(k, k)
    smooth = np.fft.ifft2(np.fft.fft2(white) * np.exp(-2 * (math.pi * beam_sigma) ** 2 * (kx**2 + ky**2))).real
    return smooth * (rms / smooth.std())


def sky_model(rng: np.random.Generator, n: int, beam_sigma: float, n_point: int, n_ext: int,
              rms: float, pb: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float, float, str, float]]]:
    """The true sky convolved with the synthesized beam (Jy/beam), and the sources in pixels."""
    sky = np.zeros((n, n))
    found: list[tuple[float, float, float, str, float]] = []
    tries = 0
    while len(found) < n_point + n_ext and tries < 500:
        tries += 1
        x, y = rng.uniform(6, n - 7, size=2)
        if not np.isfinite(pb[int(round(y)), int(round(x))]) or pb[int(round(y)), int(round(x))] < 0.35:
            continue
        if any((x - fx) ** 2 + (y - fy) ** 2 < (4 * beam_sigma) ** 2 for fx, fy, *_ in found):
            continue
        point = len(found) < n_point
        flux = float(rms * 10 ** rng.uniform(math.log10(3), math.log10(60)))  # 3 to 60 sigma
        if point:
            sky += flux * _gauss(n, x, y, beam_sigma)
            found.append((x, y, flux, "point", 0.0))
        else:
            size = float(rng.uniform(1.5, 3.0)) * beam_sigma
            s2 = math.sqrt(size**2 + beam_sigma**2)
            # total flux `flux` spread over a Gaussian of sigma s2: peak = flux * (beam area / src area)
            sky += flux * (beam_sigma**2 / s2**2) * _gauss(n, x, y, s2)
            found.append((x, y, flux, "extended", size))
    return sky, found


def header_for(rng: np.random.Generator, t: ObsTruth, n: int, cell_deg: float, beam_sigma: float,
               kind: str, drop: float, four_d: bool) -> object:
    from astropy.io import fits

    h = fits.Header()
    h["BUNIT"] = "" if kind == "pb" else "Jy/beam"
    h["CTYPE1"], h["CTYPE2"] = "RA---SIN", "DEC--SIN"
    h["CRVAL1"], h["CRVAL2"] = t.ra, t.dec
    h["CRPIX1"] = h["CRPIX2"] = (n + 1) / 2
    h["CDELT1"], h["CDELT2"] = -cell_deg, cell_deg
    h["CUNIT1"] = h["CUNIT2"] = "deg"
    if four_d:
        h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"], h["CUNIT3"] = "FREQ", BANDS[t.band], 2e9, 1.0, "Hz"
        h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    fwhm = beam_sigma * 2.3548 * cell_deg
    h["BMAJ"], h["BMIN"], h["BPA"] = fwhm, fwhm, 0.0
    h["RADESYS"] = "ICRS"
    h["OBJECT"] = t.target
    h["OBS_ID"] = t.obs_id
    h["PROJECT"] = t.project
    h["DATE-OBS"] = t.date
    h["TELESCOP"] = "ALMA"
    h["INSTRUME"] = f"ALMA Band {t.band}"  # what `match --band` searches in the catalog
    h["RESTFRQ"] = BANDS[t.band]
    for key in OPTIONAL_KEYS:
        if rng.random() < drop:
            del h[key]
    return h


# -- names ----------------------------------------------------------------------------------------

def _names(rng: np.random.Generator, t: ObsTruth) -> dict[str, str]:
    """File names for pb / corrected / uncorrected, in one of several habits."""
    uid = t.obs_id.replace("://", "___").replace("/", "_")
    src = t.target
    habit = int(rng.integers(0, 6))
    if habit == 0:  # ALMA's own
        base = f"member.{uid}.{src}_sci.spw25_27_29_31.cont.I"
        return {"pb": f"{base}.pb.fits", "corrected": f"{base}.pbcor.fits", "uncorrected": f"{base}.image.fits"}
    if habit == 1:
        return {"pb": f"{src}_b{t.band}_flux.fits", "corrected": f"{src}_b{t.band}_final.fits",
                "uncorrected": f"{src}_b{t.band}_raw.fits"}
    if habit == 2:  # names that lie: nothing to learn from them
        return {"pb": "image_a.fits", "corrected": "image_b.fits", "uncorrected": "image_c.fits"}
    if habit == 3:
        return {"pb": "beam_v2.fits", "corrected": f"{src}.FITS", "uncorrected": f"{src}_nopb.fits"}
    if habit == 4:
        return {"pb": f"{uid}_cont_pb.fits", "corrected": f"{uid}_cont.fits", "uncorrected": f"{uid}_cont_flat.fits"}
    return {"pb": f"x{int(rng.integers(1000))}.fits", "corrected": f"x{int(rng.integers(1000, 2000))}.fits",
            "uncorrected": f"x{int(rng.integers(2000, 3000))}.fits"}


def _folder(rng: np.random.Generator, t: ObsTruth, i: int) -> str:
    habit = int(rng.integers(0, 3))
    leaf = [f"member.{t.obs_id.replace('://', '___').replace('/', '_')}", f"{t.target}_band{t.band}",
            f"obs{i:04d}"][habit]
    return f"{t.project}/{leaf}"


# -- the archive ----------------------------------------------------------------------------------

def _write(path: Path, data: np.ndarray, header: object, four_d: bool) -> int:
    from astropy.io import fits

    arr = data[np.newaxis, np.newaxis] if four_d else data
    hdu = fits.PrimaryHDU(arr.astype(np.float32), header=header)  # type: ignore[arg-type]
    with atomic_open(path, "wb") as f:
        hdu.writeto(f)
    return path.stat().st_size


def generate(out: Path, observations: int = 200, seed: int = 1, size: int = 128,
             drop: float = 0.25, missing_uncorrected: float = 0.25, calibrators: float = 0.3,
             undecidable: float = 0.03) -> GenerateSummary:
    """Write ``observations`` observation folders under ``out`` and ``out/truth.json``.

    ``drop`` is the chance for each optional header keyword to be missing, ``missing_uncorrected``
    the chance that an observation has no uncorrected image, ``calibrators`` the chance that a
    folder also holds a calibrator image, ``undecidable`` the chance that it has no beam.
    """
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truths: list[ObsTruth] = []
    nbytes = nfiles = nsrc = 0
    projects = [f"2023.1.{int(rng.integers(100, 1500)):05d}.S" for _ in range(max(1, observations // 40))]
    folders: set[str] = set()
    for i in range(observations):
        band = int(rng.choice(list(BANDS)))
        t = ObsTruth(folder="", project=str(rng.choice(projects)),
                     obs_id=f"uid://A001/X{int(rng.integers(0x100, 0xfff)):x}/X{i:x}",
                     target=f"SRC{int(rng.integers(1, 999)):03d}", band=band,
                     date=f"20{int(rng.integers(19, 25))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}T{int(rng.integers(0, 24)):02d}:00:00",
                     ra=float(rng.uniform(0, 360)), dec=float(np.degrees(np.arcsin(rng.uniform(-1, 0.4)))))
        folder = _folder(rng, t, i)
        while folder in folders:
            folder = f"{folder}_{i}"
        folders.add(folder)
        t.folder = folder
        d = out / folder
        d.mkdir(parents=True, exist_ok=True)
        cell = {3: 0.5, 6: 0.2, 7: 0.12}[band] / 3600  # degrees per pixel
        beam_sigma = float(rng.uniform(1.3, 2.0))
        fwhm_pb = size * float(rng.uniform(0.55, 0.75))
        pb = primary_beam(size, fwhm_pb)
        rms = float(rng.uniform(5e-5, 2e-4))
        sky, found = sky_model(rng, size, beam_sigma, int(rng.integers(3, 9)), int(rng.integers(0, 3)), rms, pb)
        uncorrected = sky * np.nan_to_num(pb) + _smooth_noise(rng, size, beam_sigma, rms)
        uncorrected[~np.isfinite(pb)] = np.nan
        corrected = uncorrected / pb
        from astropy.wcs import WCS

        h0 = header_for(rng, t, size, cell, beam_sigma, "image", 0.0, False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = WCS(h0).celestial
        for x, y, flux, kind, s in found:
            sky_c = w.pixel_to_world(x, y)
            t.sources.append(Source(float(sky_c.ra.deg), float(sky_c.dec.deg), flux, kind, s))
        nsrc += len(found)
        four_d = bool(rng.random() < 0.4)
        names = _names(rng, t)
        keep = {"pb": pb, "corrected": corrected, "uncorrected": uncorrected}
        if rng.random() < undecidable:
            del keep["pb"]
            t.expect = "flagged"
        elif rng.random() < missing_uncorrected:
            del keep["uncorrected"]
        for kind, data in keep.items():
            h = header_for(rng, t, size, cell, beam_sigma, "pb" if kind == "pb" else "image", drop, four_d)
            nbytes += _write(d / names[kind], data, h, four_d)
            t.files[names[kind]] = kind
            nfiles += 1
        if rng.random() < calibrators:
            cal = str(rng.choice(CALIBRATORS))
            name = str(rng.choice([f"{cal}_bp.spw25.mfs.I.pbcor.fits", f"uid___A002_X{i:x}.{cal}_ph.fits",
                                   f"calibrator_{cal}.fits"]))
            calimg = 1.0 * _gauss(size, (size - 1) / 2, (size - 1) / 2, beam_sigma) + _smooth_noise(rng, size, beam_sigma, rms)
            h = header_for(rng, t, size, cell, beam_sigma, "image", drop, four_d)
            h["OBJECT"] = cal
            nbytes += _write(d / name, calimg, h, four_d)
            t.files[name] = "calibrator"
            nfiles += 1
        truths.append(t)
    atomic_write_json(out / "truth.json", {"seed": seed, "size": size,
                                           "observations": [t.to_json() for t in truths]})
    return GenerateSummary(str(out), observations, nfiles, nsrc, nbytes)


def load_truth(root: Path) -> dict[str, dict]:
    """``truth.json`` of a generated archive, keyed by observation folder."""
    data = json.loads((Path(root) / "truth.json").read_text())
    return {o["folder"]: o for o in data["observations"]}
