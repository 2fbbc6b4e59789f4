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
_SCALED = re.compile(rb"BSCALE|BZERO|BLANK")  # anywhere in the header: when in doubt, read it now


def is_fits(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


class Image:
    """A 2-D image, its header and its celestial WCS (built on first use: astropy's ``WCS`` costs
    more than reading a small file, and ``products`` needs it for one image per observation)."""

    def __init__(self, path: Path, data: np.ndarray, header: Any = _UNSET, wcs: Any = _UNSET,
                 raw_header: bytes = b"") -> None:
        self.path = path
        self.data = data  # 2-D float, NaN where blanked
        self._header = header
        self._raw_header = raw_header  # the header's cards as in the file, parsed on first use
        self._wcs = wcs

    @property
    def header(self) -> Any:
        """The astropy Header of the image HDU (parsed from the file's cards as astropy does itself
        on first access: ``products`` reads most headers only for a few keywords, or not at all)."""
        if self._header is _UNSET:
            from astropy.io import fits

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._header = fits.Header.fromstring(self._raw_header.decode("ascii"))
        return self._header

    @property
    def wcs(self) -> Any:
        """The celestial astropy WCS, or None."""
        if self._wcs is _UNSET:
            self._wcs = _celestial_wcs(self.header)
        return self._wcs

    def centre_radec(self) -> tuple[float, float] | None:
        """(RA, Dec) in degrees of the central pixel, as ``wcs.pixel_to_world(...).ra/.dec`` give
        them, or None if there is no celestial WCS. A plain equatorial header goes through wcslib
        alone (the same fix, set and p2s calls astropy's WCS makes, without its header round trips
        and SkyCoord); anything else through astropy's WCS and SkyCoord."""
        n = self.data.shape
        x, y = (n[1] - 1) / 2, (n[0] - 1) / 2
        fast = _radec_plain(self._raw_header, x, y) if self._wcs is _UNSET else None
        if fast is not None:
            return fast
        if self.wcs is None:
            return None
        c = self.wcs.pixel_to_world(x, y)
        return float(c.ra.deg), float(c.dec.deg)

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


def _radec_plain(raw: bytes, x: float, y: float) -> tuple[float, float] | None:
    from astropy.wcs import WCSSUB_CELESTIAL, Wcsprm

    cards = [raw[i:i + 80] for i in range(0, len(raw) - 79, 80)]
    end = next((i for i, c in enumerate(cards) if c.rstrip() == b"END"), None)
    if end is None or _NOT_PLAIN.search(b"\n".join(cards[:end])):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            w = Wcsprm(header=b"".join(cards[:end]), key=" ", relax=True)
            w.fix("", None)
            w.set()
            c = w.sub([WCSSUB_CELESTIAL])
            c.set()
            if (c.naxis != 2 or c.lng != 0 or c.lat != 1 or c.lngtyp != "RA" or c.lattyp != "DEC"
                    or c.radesys not in ("ICRS", "FK5", "FK4", "FK4-NO-E")):
                return None
            ra, dec = (float(v) for v in c.p2s(np.array([[x, y]], dtype=float), 0)["world"][0])
        except Exception:  # noqa: BLE001 - the full WCS decides
            return None
    if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0):
        return None  # SkyCoord would wrap it: let it
    return ra, dec


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
                if idx == 0:
                    raw_header = _primary_header_bytes(path)
                # astropy rewrites the header of scaled data as it reads the data (BITPIX, BSCALE,
                # BZERO, BLANK): such a header is taken from astropy now, any other on first use
                if not raw_header or _SCALED.search(raw_header):
                    header = hdu.header  # memmap=False: no ties to the file after close
                else:
                    header = _UNSET
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
    im = Image(Path(path), data, header, _UNSET, raw_header)
    if _plainly_celestial(raw_header):
        return im
    im._wcs = _celestial_wcs(im.header)
    if need_wcs and im._wcs is None:
        raise BadInput(path, "no celestial WCS in the header (CTYPE1/CTYPE2 missing or invalid)")
    return im


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
