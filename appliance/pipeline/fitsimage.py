"""Read one FITS image as a 2-D array with its celestial WCS, or say clearly why not.

ALMA images are often 4-D (RA, Dec, frequency, Stokes) with degenerate axes; the pipeline works on
the celestial plane only. A file that is not FITS, has no image data or no celestial WCS raises
``BadInput`` naming the file: the caller flags the observation and the run goes on.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from appliance.pipeline.errors import BadInput

FITS_SUFFIXES = (".fits", ".fit", ".fts")
_UNSET = object()
# keywords that make astropy's WCS do more than wcslib alone (distortions, SIP, SCAMP's TPV fix):
# a header with any of them is checked by the full WCS at once
_NOT_PLAIN = re.compile(rb"^(?:[AB]P?_ORDER|A_\d|B_\d|CPDIS|CPERR|DP\d|DQ\d|D2IM|PV\d|CQDIS)",
                        re.MULTILINE)


def is_fits(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


class Image:
    """A 2-D image, its header and its celestial WCS (built on first use: astropy's ``WCS`` costs
    more than reading a small file, and ``products`` needs it for one image per observation)."""

    def __init__(self, path: Path, data: np.ndarray, header: Any, wcs: Any = _UNSET) -> None:
        self.path = path
        self.data = data  # 2-D float, NaN where blanked
        self.header = header  # astropy Header of the image HDU
        self._wcs = wcs

    @property
    def wcs(self) -> Any:
        """The celestial astropy WCS, or None."""
        if self._wcs is _UNSET:
            self._wcs = _celestial_wcs(self.header)
        return self._wcs

    def beam_pix(self) -> tuple[float, float] | None:
        """Synthesized beam FWHM (major, minor) in pixels, if the header says."""
        bmaj, bmin = self.header.get("BMAJ"), self.header.get("BMIN")
        cdelt = abs(float(self.header.get("CDELT2", 0) or 0))
        if not bmaj or not cdelt:
            return None
        return float(bmaj) / cdelt, float(bmin or bmaj) / cdelt


def _celestial_wcs(header: Any) -> Any:
    """astropy's celestial WCS of ``header``, or None when it has none or it is broken."""
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            full = WCS(header)
            return full.celestial if full.has_celestial else None
        except Exception:  # noqa: BLE001 - a broken WCS is reported as "no WCS"
            return None


def _plainly_celestial(raw: bytes) -> bool:
    """True if wcslib alone finds celestial axes in a raw header with nothing astropy's ``WCS``
    would treat differently; False means: undecided, ask the full WCS."""
    from astropy.wcs import Wcsprm

    cards = [raw[i:i + 80] for i in range(0, len(raw) - 79, 80)]
    end = next((i for i, c in enumerate(cards) if c.rstrip() == b"END"), None)
    if end is None:
        return False
    text = b"".join(cards[:end])
    if _NOT_PLAIN.search(b"\n".join(cards[:end])):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            w = Wcsprm(header=text, relax=True)
            return bool(w.lng >= 0 and w.lat >= 0)
        except Exception:  # noqa: BLE001 - undecided: the full WCS decides
            return False


def _primary_header_bytes(path: Path) -> bytes:
    """The primary header's cards as in the file, up to the END card (b"" if there is none)."""
    out = b""
    with open(path, "rb") as f:
        while block := f.read(2880):
            for i in range(0, len(block) - 79, 80):
                if block[i:i + 80].rstrip() == b"END":
                    return out + block[:i + 80]
            out += block
            if len(out) > 2880 * 1000:
                break
    return b""


def read_image(path: Path, need_wcs: bool = True) -> Image:
    from astropy.io import fits

    raw_header = b""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                idx, hdu = next(((i, h) for i, h in enumerate(hdul)
                                 if getattr(h, "data", None) is not None and h.data.ndim >= 2), (None, None))
                if hdu is None:
                    raise BadInput(path, "no image data in any HDU")
                data = np.asarray(hdu.data, dtype=np.float64)
                header = hdu.header  # the file is read (memmap=False): nothing refers to it after close
            if idx == 0:
                raw_header = _primary_header_bytes(path)
    except BadInput:
        raise
    except (OSError, ValueError, TypeError, IndexError) as e:
        raise BadInput(path, f"not a readable FITS file ({str(e).splitlines()[0][:120]})") from e
    while data.ndim > 2:
        if data.shape[0] != 1:
            raise BadInput(path, f"cube with {data.shape[0]} planes, the pipeline needs one plane")
        data = data[0]
    # a header wcslib reads as celestial gets its astropy WCS on first use; any other is decided
    # by astropy's WCS now, as before
    wcs = _UNSET if _plainly_celestial(raw_header) else _celestial_wcs(header)
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
