"""A synthetic galaxy-cluster field in the afw FITS layout: realistic test data for the whole chain.

What is in it, and why (each ingredient is something a query or the recipe looks for):

* a field of radius ``radius`` deg around a known centre; the default centre sits at RA 0.25 deg,
  so the field straddles RA 0/360 and the partitioning's wrap-around is exercised;
* cluster members at redshift ``z``: a Plummer-like overdensity around the centre, on a red
  sequence (g-r rising slowly to fainter r) with small scatter; their shapes are intrinsic only;
* background galaxies (z > z_cluster) with intrinsic shapes plus a tangential shear
  g_t = theta_E / (2 theta) (singular isothermal sphere, capped at 0.3);
* a few per cent of close pairs (1-3 arcsec; blends) so near-neighbour joins find something;
* stars (point-like); ugriz PSF fluxes in nJy with errors from per-band depths, negative fluxes
  for faint objects and a few NaN fluxes with their failure flag set (measurement failures);
* a Source table: ``visits_per_band`` visits per band, each detecting objects above 5 sigma in
  that visit's depth, with positions scattered by 20 mas and an ``objectId`` reference.

Shapes are second moments (arcsec^2) in a sky-aligned frame, x towards East (+RA) and y towards
North: e1 = (xx - yy) / (xx + yy), e2 = 2 xy / (xx + yy). The position angle phi of a galaxy
around the centre is measured from x towards y; tangential ellipticity is
e_t = -(e1 cos 2phi + e2 sin 2phi). ``verify``'s SQL and the recipe use the same convention.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from appliance.fsutil import atomic_write_json
from appliance.qserv.afw import ColumnInfo, write_afw_catalog

BANDS = ("u", "g", "r", "i", "z")
DEPTH_5SIGMA = {"u": 24.3, "g": 25.3, "r": 25.0, "i": 24.4, "z": 23.6}  # coadd, AB mag
VISIT_DEPTH_OFFSET = 1.3  # a single visit is this much shallower than the coadd
AB_ZEROPOINT_NJY = 31.4  # m_AB = -2.5 log10(f / nJy) + 31.4


@dataclass(frozen=True)
class FieldSpec:
    ra: float = 0.25
    dec: float = -30.0
    radius: float = 0.4  # deg
    redshift: float = 0.3
    n_members: int = 400
    n_background: int = 6000
    n_stars: int = 300
    blend_fraction: float = 0.04
    theta_e_arcsec: float = 25.0
    visits_per_band: int = 2
    seed: int = 42


def position_angle(ra, dec, ra0: float, dec0: float) -> np.ndarray:
    """Angle phi (radians) of (ra, dec) seen from (ra0, dec0), from East (x) towards North (y)."""
    r, d, r0, d0 = (np.radians(v) for v in (ra, dec, ra0, dec0))
    east = np.sin(r - r0) * np.cos(d)
    north = np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(r - r0)
    return np.arctan2(north, east)


def angular_separation(ra, dec, ra0, dec0) -> np.ndarray:
    """Haversine separation in degrees (same formula as the SQL of the query suite)."""
    r, d, r0, d0 = (np.radians(v) for v in (ra, dec, ra0, dec0))
    a = np.sin((d - d0) / 2) ** 2 + np.cos(d0) * np.cos(d) * np.sin((r - r0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(a)))


def _offset(ra0, dec0, dx_deg, dy_deg):
    """Tangent-plane offsets (deg, x East, y North) to RA/Dec in [0, 360)."""
    dec = dec0 + dy_deg
    ra = ra0 + dx_deg / np.cos(np.radians(dec))
    return np.mod(ra, 360.0), dec


def _uniform_disc(rng, n, radius):
    r = radius * np.sqrt(rng.uniform(0, 1, n))
    t = rng.uniform(0, 2 * np.pi, n)
    return r * np.cos(t), r * np.sin(t)


def _shapes(rng, n, size_arcsec, e1, e2):
    t = 2 * size_arcsec**2
    return t / 2 * (1 + e1), t / 2 * (1 - e1), t / 2 * e2


def _intrinsic_e(rng, n, sigma=0.25):
    e = np.clip(np.abs(rng.normal(0, sigma, n)), 0, 0.8)
    a = rng.uniform(0, np.pi, n)
    return e * np.cos(2 * a), e * np.sin(2 * a)


def mag_to_njy(m):
    return 10 ** (-0.4 * (np.asarray(m) - AB_ZEROPOINT_NJY))


def make_field(spec: FieldSpec) -> dict[str, object]:
    """The truth: a dict of numpy arrays for all objects (no I/O)."""
    rng = np.random.default_rng(spec.seed)
    # Cluster members: Plummer profile, core 1.5 arcmin, truncated at the field radius.
    a = 1.5 / 60
    u = rng.uniform(0, 0.97, spec.n_members)
    rr = np.minimum(a / np.sqrt(u ** (-2 / 3) - 1), spec.radius * 0.98)
    tt = rng.uniform(0, 2 * np.pi, spec.n_members)
    mx, my = rr * np.cos(tt), rr * np.sin(tt)
    m_r = 17.0 + 6.0 * rng.power(1.8, spec.n_members)
    m_gr = 1.05 - 0.03 * (m_r - 20) + rng.normal(0, 0.04, spec.n_members)  # red sequence
    m_ri = 0.42 + rng.normal(0, 0.04, spec.n_members)
    # Background galaxies, uniform.
    bx, by = _uniform_disc(rng, spec.n_background, spec.radius)
    b_r = 20.0 + 6.0 * rng.power(2.5, spec.n_background)
    b_gr = rng.uniform(0.1, 1.3, spec.n_background)
    b_ri = rng.uniform(0.0, 0.6, spec.n_background)
    # Stars.
    sx, sy = _uniform_disc(rng, spec.n_stars, spec.radius)
    s_r = rng.uniform(15.5, 23.5, spec.n_stars)
    s_gr = rng.uniform(0.2, 1.4, spec.n_stars)
    s_ri = 0.3 * s_gr + rng.normal(0, 0.05, spec.n_stars)

    x = np.concatenate([mx, bx, sx])
    y = np.concatenate([my, by, sy])
    r_mag = np.concatenate([m_r, b_r, s_r])
    gr = np.concatenate([m_gr, b_gr, s_gr])
    ri = np.concatenate([m_ri, b_ri, s_ri])
    kind = np.concatenate(
        [np.full(spec.n_members, 1), np.full(spec.n_background, 2), np.full(spec.n_stars, 3)]
    ).astype(np.int8)
    # Close companions (blends) of a random subset of galaxies.
    n_gal = spec.n_members + spec.n_background
    pick = rng.choice(n_gal, int(spec.blend_fraction * n_gal), replace=False)
    sep = rng.uniform(1.0, 3.0, pick.size) / 3600
    ang = rng.uniform(0, 2 * np.pi, pick.size)
    x = np.concatenate([x, x[pick] + sep * np.cos(ang)])
    y = np.concatenate([y, y[pick] + sep * np.sin(ang)])
    r_mag = np.concatenate([r_mag, r_mag[pick] + rng.uniform(0.5, 2.5, pick.size)])
    gr = np.concatenate([gr, gr[pick] + rng.normal(0, 0.1, pick.size)])
    ri = np.concatenate([ri, ri[pick] + rng.normal(0, 0.05, pick.size)])
    kind = np.concatenate([kind, kind[pick]])
    n = x.size
    ra, dec = _offset(spec.ra, spec.dec, x, y)

    mags = {
        "r": r_mag,
        "g": r_mag + gr,
        "i": r_mag - ri,
        "u": r_mag + gr + np.where(kind == 1, 1.6, 1.0) + rng.normal(0, 0.15, n),
        "z": r_mag - ri - np.where(kind == 1, 0.25, 0.15) + rng.normal(0, 0.05, n),
    }
    # Shapes: members and blends intrinsic only, background sheared, stars PSF-like.
    e1, e2 = _intrinsic_e(rng, n)
    theta = angular_separation(ra, dec, spec.ra, spec.dec) * 3600
    gt = np.minimum(spec.theta_e_arcsec / (2 * np.maximum(theta, 1.0)), 0.3)
    phi = position_angle(ra, dec, spec.ra, spec.dec)
    sheared = kind == 2
    e1 = np.where(sheared, e1 - gt * np.cos(2 * phi), e1)
    e2 = np.where(sheared, e2 - gt * np.sin(2 * phi), e2)
    size = np.where(kind == 3, 0.0, 0.25 + 0.5 * rng.uniform(0, 1, n) * 10 ** (-0.1 * (r_mag - 20)))
    psf = 0.35  # arcsec, PSF sigma
    xx, yy, xy = _shapes(rng, n, np.sqrt(size**2 + psf**2), np.where(kind == 3, 0, e1), np.where(kind == 3, 0, e2))
    return {
        "spec": spec,
        "objectId": np.arange(n, dtype=np.int64) + 1_000_000_001,
        "ra": ra,
        "dec": dec,
        "kind": kind,
        "mags": mags,
        "shape": (xx, yy, xy),
        "rng": rng,
    }


def _measure(rng, true_mag, depth):
    true = mag_to_njy(true_mag)
    err = np.hypot(mag_to_njy(depth) / 5, 0.01 * true)
    return true + rng.normal(0, 1, true.size) * err, err


def write_field(spec: FieldSpec, out_dir: str | Path) -> dict[str, object]:
    """Write Object.fits and Source_<visit>.fits (afw layout) plus truth.json; return the truth."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f = make_field(spec)
    rng: np.random.Generator = f["rng"]  # type: ignore[assignment]
    n = len(f["ra"])  # type: ignore[arg-type]
    ra, dec = f["ra"], f["dec"]
    cols: dict[str, np.ndarray] = {
        "id": f["objectId"],  # type: ignore[dict-item]
        "coord_ra": np.radians(ra),
        "coord_dec": np.radians(dec),
        "parent": np.zeros(n, dtype=np.int64),
    }
    info = {
        "id": ColumnInfo(doc="unique id"),
        "coord_ra": ColumnInfo("rad", "position in ra/dec", "Angle"),
        "coord_dec": ColumnInfo("rad", "position in ra/dec", "Angle"),
        "parent": ColumnInfo(doc="unique ID of parent source"),
    }
    flags: list[tuple[str, str, np.ndarray]] = [
        ("detect_isPrimary", "true if the object is a primary detection", np.ones(n, dtype=bool)),
    ]
    for b in BANDS:
        flux, err = _measure(rng, f["mags"][b], DEPTH_5SIGMA[b])  # type: ignore[index]
        failed = rng.uniform(0, 1, n) < 0.004
        flux = np.where(failed, np.nan, flux)
        cols[f"{b}_psfFlux"] = flux.astype(np.float64)
        cols[f"{b}_psfFluxErr"] = np.where(failed, np.nan, err).astype(np.float32)
        info[f"{b}_psfFlux"] = ColumnInfo("nJy", f"PSF flux in band {b}")
        info[f"{b}_psfFluxErr"] = ColumnInfo("nJy", f"uncertainty of {b}_psfFlux")
        flags.append((f"{b}_psfFlux_flag", f"general failure flag for {b}_psfFlux", failed))
    xx, yy, xy = f["shape"]  # type: ignore[misc]
    noise = 0.02
    cols["shape_xx"] = (xx + rng.normal(0, noise, n)).astype(np.float32)
    cols["shape_yy"] = (yy + rng.normal(0, noise, n)).astype(np.float32)
    cols["shape_xy"] = (xy + rng.normal(0, noise, n)).astype(np.float32)
    for k in ("xx", "yy", "xy"):
        info[f"shape_{k}"] = ColumnInfo("arcsec2", f"second moment {k} (x East, y North), i band")
    shape_bad = (cols["shape_xx"] <= 0) | (cols["shape_yy"] <= 0)
    flags.append(("shape_flag", "shape measurement failed", shape_bad))
    flags.append(("deblend_skipped", "deblender skipped this object", rng.uniform(0, 1, n) < 0.01))
    meta = {"CLRA": spec.ra, "CLDEC": spec.dec, "CLZ": spec.redshift}
    write_afw_catalog(out / "Object.fits", cols, info, flags, meta)

    source_files = []
    visit = 100
    n_sources = 0
    for b in BANDS:
        for _ in range(spec.visits_per_band):
            visit += 1
            flux, err = _measure(rng, f["mags"][b], DEPTH_5SIGMA[b] - VISIT_DEPTH_OFFSET)  # type: ignore[index]
            det = np.nonzero(flux / err > 5)[0]
            m = det.size
            jitter = 0.02 / 3600
            s_dec = dec[det] + rng.normal(0, jitter, m)  # type: ignore[index]
            s_ra = np.mod(ra[det] + rng.normal(0, jitter, m) / np.cos(np.radians(s_dec)), 360.0)  # type: ignore[index]
            saturated = f["mags"][b][det] < 16.5  # type: ignore[index]
            s_cols = {
                "id": (visit * 10_000_000 + np.arange(m)).astype(np.int64),
                "coord_ra": np.radians(s_ra),
                "coord_dec": np.radians(s_dec),
                "objectId": f["objectId"][det],  # type: ignore[index]
                "visit": np.full(m, visit, dtype=np.int64),
                "band": np.full(m, b),
                "base_PsfFlux_instFlux": flux[det],
                "base_PsfFlux_instFluxErr": err[det].astype(np.float32),
            }
            s_info = {
                "id": ColumnInfo(doc="unique id"),
                "coord_ra": ColumnInfo("rad", "position in ra/dec", "Angle"),
                "coord_dec": ColumnInfo("rad", "position in ra/dec", "Angle"),
                "objectId": ColumnInfo(doc="id of the associated Object"),
                "visit": ColumnInfo(doc="visit id"),
                "band": ColumnInfo(doc="band of the visit", afw_class="String"),
                "base_PsfFlux_instFlux": ColumnInfo("nJy", "calibrated PSF flux"),
                "base_PsfFlux_instFluxErr": ColumnInfo("nJy", "uncertainty of the PSF flux"),
            }
            s_flags = [
                ("base_PsfFlux_flag", "general failure flag", np.zeros(m, dtype=bool)),
                ("base_PixelFlags_flag_saturated", "saturated pixel in footprint", saturated),
            ]
            name = f"Source_{visit}.fits"
            write_afw_catalog(out / name, s_cols, s_info, s_flags, {"VISIT": visit, "BAND": b})
            source_files.append(name)
            n_sources += m
    truth = {
        "spec": asdict(spec),
        "center": {"ra": spec.ra, "dec": spec.dec},
        "redshift": spec.redshift,
        "n_objects": int(n),
        "n_sources": int(n_sources),
        "member_ids": [int(i) for i in f["objectId"][f["kind"] == 1]],  # type: ignore[index]
        "object_file": "Object.fits",
        "source_files": source_files,
    }
    atomic_write_json(out / "truth.json", truth)
    return truth


def load_truth(directory: str | Path) -> dict:
    return json.loads((Path(directory) / "truth.json").read_text())
