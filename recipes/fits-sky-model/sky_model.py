"""Simulated sky: PSF-convolved point sources on noise, with WCS; plus the true source table.

Deterministic given the seed, except for the DATE keyword and the 'written at' line, which record
when the file was written (the replay policies in recipe.yaml ignore exactly those).
"""

from __future__ import annotations

import argparse
import datetime
import os

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--psf", required=True)
    p.add_argument("--n-sources", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--noise", type=float, required=True)
    p.add_argument("--ra", type=float, required=True)
    p.add_argument("--dec", type=float, required=True)
    p.add_argument("--pixel-arcsec", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    psf = fits.getdata(a.psf).astype(np.float64)
    psf /= psf.sum()
    half = psf.shape[0] // 2
    rng = np.random.default_rng(a.seed)
    x = rng.uniform(half, a.size - half - 1, a.n_sources)
    y = rng.uniform(half, a.size - half - 1, a.n_sources)
    flux = 10 ** rng.uniform(2.0, 4.0, a.n_sources)
    image = rng.normal(0.0, a.noise, (a.size, a.size))
    for xi, yi, fi in zip(x, y, flux):
        ix, iy = int(round(xi)), int(round(yi))
        image[iy - half: iy + half + 1, ix - half: ix + half + 1] += fi * psf

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [a.ra, a.dec]
    wcs.wcs.crpix = [a.size / 2 + 0.5, a.size / 2 + 0.5]
    wcs.wcs.cdelt = [-a.pixel_arcsec / 3600.0, a.pixel_arcsec / 3600.0]
    ra, dec = wcs.wcs_pix2world(x, y, 0)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    header = wcs.to_header()
    header["DATE"] = (now, "file written (UTC)")
    header["SEED"] = (a.seed, "random generator seed")
    header["NSOURCES"] = a.n_sources
    header["BUNIT"] = "adu"
    fits.PrimaryHDU(image.astype(np.float32), header=header).writeto(os.path.join(a.out, "sky.fits"))

    table = Table({"id": np.arange(1, a.n_sources + 1), "x": x, "y": y, "ra": ra, "dec": dec, "flux": flux})
    table["ra"].unit = table["dec"].unit = "deg"
    table.meta["SEED"] = a.seed
    table.write(os.path.join(a.out, "sources.fits"))

    with open(os.path.join(a.out, "summary.txt"), "w") as f:
        f.write(f"written at {now}\n")
        f.write(f"sources {a.n_sources}\nsum {image.sum():.6e}\nmax {image.max():.6e}\n")
        f.write(f"brightest_id {int(np.argmax(flux)) + 1}\n")


if __name__ == "__main__":
    main()
