"""Galaxy-cluster selection and weak-lensing shear profile from a catalog export (numpy + astropy).

Input: a FITS table exported from the catalog (``appliance qserv export``): objectId, coord_ra,
coord_dec (deg), ugriz PSF fluxes and errors (nJy), second moments shape_xx/yy/xy (arcsec^2, x
East, y North) and flags. Steps:

1. magnitudes m = -2.5 log10(f / nJy) + 31.4 (non-positive or missing fluxes are dropped);
2. red sequence: within ``core`` deg of the centre, fit g-r = a + b (r - 20) with 3-sigma clipping;
   members = galaxies within 2.5 sigma of it, r < r_max, within ``member_radius``; richness is
   the member count minus the same selection's density in an outer annulus times the area;
3. the brightest member (BCG) and the r-flux-weighted member centroid;
4. background sources: not on the red sequence, 21 < r < 25.5, resolved (xx + yy > 0.35),
   unflagged; e1 = (xx-yy)/(xx+yy), e2 = 2xy/(xx+yy); tangential e_t = -(e1 cos 2phi + e2 sin 2phi)
   and cross e_x around the given centre, phi from East towards North; mean and error per bin;
5. a singular isothermal sphere fit g_t = theta_E / (2 theta) to the binned mean e_t. The
   synthetic field adds the shear directly to the ellipticity, so mean e_t estimates g_t with no
   responsivity factor; for real data, calibrate the shear responsivity of the shape estimator.

Outputs (deterministic, no dates): members.fits, shear_profile.txt, summary.txt.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from astropy.io import fits
from astropy.table import Table

ZP = 31.4


def mag(flux):
    flux = np.asarray(flux, dtype=float)
    out = np.full(flux.shape, np.nan)
    ok = np.isfinite(flux) & (flux > 0)
    out[ok] = -2.5 * np.log10(flux[ok]) + ZP
    return out


def separation(ra, dec, ra0, dec0):
    r, d, r0, d0 = (np.radians(v) for v in (ra, dec, ra0, dec0))
    a = np.sin((d - d0) / 2) ** 2 + np.cos(d0) * np.cos(d) * np.sin((r - r0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(a)))


def position_angle(ra, dec, ra0, dec0):
    r, d, r0, d0 = (np.radians(v) for v in (ra, dec, ra0, dec0))
    east = np.sin(r - r0) * np.cos(d)
    north = np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(r - r0)
    return np.arctan2(north, east)


def column(t, name):
    c = t[name]
    return np.asarray(c.filled(np.nan) if hasattr(c, "filled") else c, dtype=float)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalog", required=True)
    p.add_argument("--ra", type=float, required=True)
    p.add_argument("--dec", type=float, required=True)
    p.add_argument("--r-max", type=float, default=23.5)
    p.add_argument("--core", type=float, default=0.05, help="deg, red-sequence fit region")
    p.add_argument("--member-radius", type=float, default=0.15, help="deg")
    p.add_argument("--bin", type=float, default=0.025, help="deg, shear profile bin width")
    p.add_argument("--nbins", type=int, default=10)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    t = Table.read(a.catalog)
    ra, dec = column(t, "coord_ra"), column(t, "coord_dec")
    g, r = mag(column(t, "g_psfFlux")), mag(column(t, "r_psfFlux"))
    gr = g - r
    xx, yy, xy = (column(t, f"shape_{k}") for k in ("xx", "yy", "xy"))
    size = xx + yy
    flagged = np.asarray(t["shape_flag"]).astype(bool) | np.asarray(t["r_psfFlux_flag"]).astype(bool)
    sep = separation(ra, dec, a.ra, a.dec)
    good = np.isfinite(r) & np.isfinite(gr) & ~flagged & (size > 0.35)

    # Red sequence fit in the core, iterative 3-sigma clipping.
    sel = good & (sep < a.core) & (r < a.r_max) & (gr > 0.7) & (gr < 1.5)
    coef, sigma = np.array([0.0, 1.0]), 0.1
    for _ in range(10):
        coef = np.polyfit(r[sel] - 20, gr[sel], 1)
        resid = gr - np.polyval(coef, r - 20)
        sigma = max(float(np.std(resid[sel])), 0.01)
        new = good & (sep < a.core) & (r < a.r_max) & (np.abs(resid) < 3 * sigma)
        if np.array_equal(new, sel):
            break
        sel = new
    resid = gr - np.polyval(coef, r - 20)
    on_rs = good & (np.abs(resid) < 2.5 * sigma) & (r < a.r_max)
    members = on_rs & (sep < a.member_radius)
    annulus = on_rs & (sep > 0.22) & (sep < 0.3)
    area_ratio = a.member_radius**2 / (0.3**2 - 0.22**2)
    richness = float(members.sum() - annulus.sum() * area_ratio)
    flux_r = np.where(members, 10 ** (-0.4 * (r - ZP)), 0.0)
    bcg = int(np.nanargmin(np.where(members, r, np.inf)))
    wx = float(np.sum(flux_r * np.cos(np.radians(dec)) * np.cos(np.radians(ra))))
    wy = float(np.sum(flux_r * np.cos(np.radians(dec)) * np.sin(np.radians(ra))))
    wz = float(np.sum(flux_r * np.sin(np.radians(dec))))
    cen_ra = float(np.degrees(np.arctan2(wy, wx)) % 360)
    cen_dec = float(np.degrees(np.arctan2(wz, np.hypot(wx, wy))))

    # Shear profile of background galaxies around the given centre.
    bg = good & ~on_rs & (r > 21) & (r < 25.5)
    e1 = (xx - yy) / size
    e2 = 2 * xy / size
    phi = position_angle(ra, dec, a.ra, a.dec)
    et = -(e1 * np.cos(2 * phi) + e2 * np.sin(2 * phi))
    ex = e1 * np.sin(2 * phi) - e2 * np.cos(2 * phi)
    rows = []
    for k in range(a.nbins):
        lo, hi = k * a.bin, (k + 1) * a.bin
        m = bg & (sep >= lo) & (sep < hi)
        n = int(m.sum())
        if n < 2:
            rows.append((lo, hi, n, np.nan, np.nan, np.nan, np.nan))
            continue
        rows.append((lo, hi, n, float(et[m].mean()), float(et[m].std(ddof=1) / np.sqrt(n)),
                     float(ex[m].mean()), float(ex[m].std(ddof=1) / np.sqrt(n))))
    prof = np.array(rows, dtype=float)
    theta = 0.5 * (prof[:, 0] + prof[:, 1]) * 3600  # arcsec
    ok = np.isfinite(prof[:, 3]) & (prof[:, 4] > 0)
    w = 1 / prof[ok, 4] ** 2
    model = 1 / (2 * theta[ok])
    theta_e = float(np.sum(w * model * prof[ok, 3]) / np.sum(w * model**2))
    theta_e_err = float(1 / np.sqrt(np.sum(w * model**2)))

    os.makedirs(a.out, exist_ok=True)
    mt = Table(
        {
            "objectId": np.asarray(t["objectId"])[members],
            "coord_ra": ra[members],
            "coord_dec": dec[members],
            "r_mag": r[members],
            "g_r": gr[members],
            "sep_deg": sep[members],
        }
    )
    mt["coord_ra"].unit = mt["coord_dec"].unit = mt["sep_deg"].unit = "deg"
    mt["r_mag"].unit = "mag"
    hdu = fits.BinTableHDU(mt, name="MEMBERS")
    hdu.header["RS_A"] = (float(coef[1]), "red sequence g-r at r=20")
    hdu.header["RS_B"] = (float(coef[0]), "red sequence slope d(g-r)/dr")
    hdu.header["RS_SIG"] = (sigma, "red sequence scatter")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(os.path.join(a.out, "members.fits"), overwrite=True)

    with open(os.path.join(a.out, "shear_profile.txt"), "w") as f:
        f.write("# r_lo_deg r_hi_deg n mean_e_t err_e_t mean_e_x err_e_x\n")
        for row in rows:
            lo, hi, n, et_m, et_e, ex_m, ex_e = row
            f.write(f"{lo:.4f} {hi:.4f} {n:d} {et_m:.6f} {et_e:.6f} {ex_m:.6f} {ex_e:.6f}\n")
    with open(os.path.join(a.out, "summary.txt"), "w") as f:
        f.write(f"catalog rows: {len(t)}\n")
        f.write(f"red sequence: g-r = {coef[1]:.4f} + {coef[0]:.4f} (r - 20), scatter {sigma:.4f}\n")
        f.write(f"members (r < {a.r_max}, within {a.member_radius} deg): {int(members.sum())}\n")
        f.write(f"background-subtracted richness: {richness:.1f}\n")
        f.write(f"BCG: objectId {int(t['objectId'][bcg])} at ({ra[bcg]:.5f}, {dec[bcg]:.5f}), r = {r[bcg]:.3f}\n")
        f.write(f"flux-weighted member centre: ({cen_ra:.5f}, {cen_dec:.5f})\n")
        f.write(f"lensing sources: {int(bg.sum())}\n")
        f.write(f"SIS fit: theta_E = {theta_e:.2f} +- {theta_e_err:.2f} arcsec\n")
        f.write(f"mean cross shear (null test): {np.nanmean(prof[:, 5]):.5f}\n")


if __name__ == "__main__":
    main()
