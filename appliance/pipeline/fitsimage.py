"""Read one FITS image as a 2-D array with its celestial WCS, or say clearly why not.

ALMA images are often 4-D (RA, Dec, frequency, Stokes) with degenerate axes; the pipeline works on
the celestial plane only. A file that is not FITS, has no image data or no celestial WCS raises
``BadInput`` naming the file: the caller flags the observation and the run goes on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.pipeline.errors import BadInput

FITS_SUFFIXES = (".fits", ".fit", ".fts")


def is_fits(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


@dataclass
class Image:
    path: Path
    data: np.ndarray  # 2-D float, NaN where blanked
    header: Any  # astropy Header of the first HDU
    wcs: Any  # celestial astropy WCS

    def beam_pix(self) -> tuple[float, float] | None:
        """Synthesized beam FWHM (major, minor) in pixels, if the header says."""
        bmaj, bmin = self.header.get("BMAJ"), self.header.get("BMIN")
        cdelt = abs(float(self.header.get("CDELT2", 0) or 0))
        if not bmaj or not cdelt:
            return None
        return float(bmaj) / cdelt, float(bmin or bmaj) / cdelt


def read_image(path: Path, need_wcs: bool = True) -> Image:
    from astropy.io import fits
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                hdu = next((h for h in hdul if getattr(h, "data", None) is not None and h.data.ndim >= 2), None)
                if hdu is None:
                    raise BadInput(path, "no image data in any HDU")
                data = np.asarray(hdu.data, dtype=np.float64)
                header = hdu.header.copy()
    except BadInput:
        raise
    except (OSError, ValueError, TypeError, IndexError) as e:
        raise BadInput(path, f"not a readable FITS file ({str(e).splitlines()[0][:120]})") from e
    while data.ndim > 2:
        if data.shape[0] != 1:
            raise BadInput(path, f"cube with {data.shape[0]} planes, the pipeline needs one plane")
        data = data[0]
    wcs = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            full = WCS(header)
            wcs = full.celestial if full.has_celestial else None
        except Exception:  # noqa: BLE001 - a broken WCS is reported as "no WCS" below
            wcs = None
    if need_wcs and wcs is None:
        raise BadInput(path, "no celestial WCS in the header (CTYPE1/CTYPE2 missing or invalid)")
    return Image(Path(path), data, header, wcs)


def write_image(path: Path, data: np.ndarray, header: Any) -> None:
    """A 2-D image written atomically with the celestial part of ``header``."""
    from astropy.io import fits

    from appliance.fsutil import atomic_open

    h = header.copy()
    for k in list(h):
        if k[-1:] in "34" and k[:-1] in ("CTYPE", "CRVAL", "CDELT", "CRPIX", "CUNIT", "NAXIS"):
            del h[k]
    hdu = fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=h)
    with atomic_open(path, "wb") as f:
        hdu.writeto(f)
