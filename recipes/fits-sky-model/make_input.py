"""Writes data/psf.fits, the recipe's input: a normalised 2-D Gaussian PSF (FWHM 3 pixels).

Run with any python3 that has numpy and astropy; the output is deterministic (no DATE or CHECKSUM keywords), so the shipped file can be regenerated bit for bit.
"""

import os

import numpy as np
from astropy.io import fits

size, fwhm = 15, 3.0
sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
yy, xx = np.mgrid[:size, :size] - size // 2
psf = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
psf = (psf / psf.sum()).astype(np.float32)
hdu = fits.PrimaryHDU(psf)
hdu.header["FWHM"] = (fwhm, "pixels")
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "psf.fits")
hdu.writeto(out, overwrite=True)
print(out)
