"""Read one FITS image as a 2-D array with its celestial WCS, or say clearly why not.

ALMA images are often 4-D (RA, Dec, frequency, Stokes) with degenerate axes; the pipeline works on
the celestial plane only. A file that is not FITS, has no image data or no celestial WCS raises
``BadInput`` naming the file: the caller flags the observation and the run goes on.

A plain file (``SIMPLE = T``, float data in the primary HDU, one plane, no scaling or blanking) is
read with numpy alone (``_read_plain``: astropy's ``fits.open`` costs ten times more than reading a
small image); every other file, and every error's wording, is astropy's as before. The header is
parsed on first use; a few keywords are taken from their cards before that (``Image.get``).
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
_SIMPLE = b"SIMPLE  =                    T"
_END_CARD = b"END" + b" " * 77
_INT = re.compile(rb"[-+]?\d+")
# a card's value that is a string with no quote and no colon in it (so no record-valued keyword),
# then blanks and at most a comment: astropy's value is the text (right-stripped by its default)
_PLAIN_STRING = re.compile(rb"= '([ -&(-9;-~]*)' *(?:/[ -~]*)?")
_FAST_DECLINES = (b"BSCALE", b"BZERO", b"BLANK", b"GROUPS", b"HIERARCH")
_FIRST_READ = 2880 * 8  # a small image in one read; a large one's header blocks first


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

    def get(self, key: str) -> Any:
        """``header.get(key)`` for a standard keyword (up to 8 characters), from its one card while
        the header is not parsed yet (a plain string read directly, any other value by astropy's
        Card); anything the raw cards do not settle plainly (a keyword spelt another way, HIERARCH,
        CONTINUE, a record-valued card) asks the parsed header."""
        if self._header is _UNSET and self._raw_header:
            v = _raw_get(self._raw_header, key)
            if v is not _UNSET:
                return v
        return self.header.get(key)

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


def _raw_get(raw: bytes, key: str) -> Any:
    """What ``Header.fromstring(raw).get(key)`` gives, from the key's first card alone, or _UNSET
    when that is not plain (then the caller parses the whole header)."""
    k = key.upper().encode("ascii")
    k8 = k.ljust(8)
    if len(k) > 8 or not raw.isascii() or b"HIERARCH" in raw.upper():
        return _UNSET
    n = len(raw) - 80  # the END card is last
    for i in range(0, n, 80):
        card = raw[i:i + 80]
        if not card.upper().startswith(k):
            continue
        if card[:8].upper() != k8 or card[8:10] != b"= " or raw[i + 80:i + 88] == b"CONTINUE":
            return _UNSET  # another spelling, no value indicator, a long string: the header decides
        m = _PLAIN_STRING.fullmatch(card, 8)
        if m is not None:  # 'text' with no quote or colon inside: what astropy's Card gives
            from astropy.io.fits import conf

            text = m.group(1).decode("ascii")
            return text.rstrip() if conf.strip_header_whitespace else text
        from astropy.io.fits import Card
        from astropy.io.fits.card import UNDEFINED

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = Card.fromstring(card.decode("ascii"))
            if c.keyword != key.upper():
                return _UNSET  # a record-valued keyword card
            value = c.value
        return None if value == UNDEFINED else value
    return None


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


def _plain_text(raw: bytes) -> bytes | None:
    """The cards before END, or None if there is no END card or one of them makes astropy's WCS do
    more than wcslib alone (``_NOT_PLAIN`` at the start of a card)."""
    cards = [raw[i:i + 80] for i in range(0, len(raw) - 79, 80)]
    end = next((i for i, c in enumerate(cards) if c.rstrip() == b"END"), None)
    if end is None:
        return None
    # the pattern looks at a card's first 8 bytes: the keywords alone unless a card holds a newline
    lines = b"\n".join(cards[:end]) if b"\n" in raw else b"\n".join(c[:8] for c in cards[:end])
    if _NOT_PLAIN.search(lines):
        return None
    return raw[:end * 80]


def _plainly_celestial(raw: bytes) -> bool:
    """True if wcslib alone finds celestial axes in a raw header with nothing astropy's ``WCS``
    would treat differently; False means: undecided, ask the full WCS."""
    from astropy.wcs import Wcsprm

    text = _plain_text(raw)
    if text is None:
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

    text = _plain_text(raw)
    if text is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            w = Wcsprm(header=text, key=" ", relax=True)
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


def _card_int(card: bytes) -> int | None:
    """The integer value of a ``KEY     = n / comment`` card, or None if it is anything else."""
    if card[8:10] != b"= ":
        return None
    v = card[10:].split(b"/", 1)[0].strip()
    return int(v) if _INT.fullmatch(v) else None


def _read_plain(path: Path) -> tuple[bytes, np.ndarray] | None:
    """The primary header's cards (up to END) and its image as 2-D float64, read with numpy alone,
    for the plain case only: ``SIMPLE = T``, BITPIX -32 or -64, two or more axes of which only the
    first two exceed 1, no scaling or blanking keyword, an ASCII header with one END card and the
    whole data in the file. Anything else is None: astropy reads it (and words any error) as before.
    The values are astropy's: the same big-endian IEEE floats, converted to float64."""
    try:
        with open(path, "rb") as f:
            buf = f.read(_FIRST_READ)
            end = -1
            while end < 0:
                i = buf.find(_END_CARD)
                while i >= 0 and i % 80:
                    i = buf.find(_END_CARD, i + 1)
                if i >= 0:
                    end = i
                    break
                if len(buf) % 2880 or len(buf) > 2880 * 1000:
                    return None  # no END card in a whole number of blocks: astropy says why
                more = f.read(_FIRST_READ)
                if not more:
                    return None
                buf += more
            raw = buf[:end + 80]
            if not raw.isascii() or not raw.startswith(_SIMPLE) or raw[30:80].strip()[:1] not in (b"", b"/"):
                return None
            up = raw.upper()  # astropy's keywords are case-blind
            if any(k in up for k in _FAST_DECLINES):
                return None  # scaling, blanking, random groups, long-keyword cards anywhere
            cards = [raw[i:i + 80] for i in range(0, end, 80)]
            if any(c[:3].upper() == b"END" for c in cards):
                return None  # an END-like card before the END: astropy's reading may differ
            first: dict[bytes, bytes] = {}
            for c in cards:
                first.setdefault(c[:8], c)
            bitpix = _card_int(first.get(b"BITPIX  ", b""))
            naxis = _card_int(first.get(b"NAXIS   ", b""))
            if bitpix not in (-32, -64) or naxis is None or not 2 <= naxis <= 9:
                return None
            axes = [_card_int(first.get(f"NAXIS{k:<3d}".encode(), b"")) for k in range(1, naxis + 1)]
            if any(n is None or n < 1 for n in axes) or any(n != 1 for n in axes[2:]):
                return None
            nx, ny = axes[0], axes[1]
            start = (end // 2880 + 1) * 2880
            nbytes = nx * ny * (-bitpix // 8)
            if len(buf) < start + nbytes:
                buf += f.read(start + nbytes - len(buf))
                if len(buf) < start + nbytes:
                    return None  # truncated: astropy's words
    except OSError:
        return None  # astropy's words
    dtype = ">f4" if bitpix == -32 else ">f8"
    data = np.frombuffer(buf, dtype=dtype, count=nx * ny, offset=start).reshape(ny, nx)
    return raw, data.astype(np.float64)


def read_data(path: Path) -> np.ndarray:
    """The data of the image HDU ``read_image`` would use, as it reads it (numpy alone for a plain
    file, astropy otherwise), without the header's WCS checks: the bench's plain loop."""
    plain = _read_plain(Path(path))
    if plain is not None:
        return plain[1]
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path, memmap=False) as hdul:
            hdu = next((h for h in hdul if getattr(h, "data", None) is not None and h.data.ndim >= 2), None)
            if hdu is None:
                raise BadInput(path, "no image data in any HDU")
            return np.asarray(hdu.data, dtype=np.float64)


def read_image(path: Path, need_wcs: bool = True) -> Image:
    plain = _read_plain(Path(path))
    if plain is not None:
        raw_header, data = plain
        header: Any = _UNSET
    else:
        raw_header, data, header = _read_astropy(path)
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


def _read_astropy(path: Path) -> tuple[bytes, np.ndarray, Any]:
    """Any FITS file astropy reads: (raw primary header or b"", data as float64, header or _UNSET)."""
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
    return raw_header, data, header


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
