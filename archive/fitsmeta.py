"""Searchable metadata from FITS headers, extracted on ingest with astropy.

Why at ingest: users query the catalog (project, observation, instrument, time, sky position)
long before anything is staged from tape; reading headers later would need a recall.
A file that is not FITS, or not readable as FITS, simply has no product metadata.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from archive.catalog import Product

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz")
_PROJECT_KEYS = ("PROJECT", "PROPOSID", "PROP_ID", "PROPID", "PROGRAM", "PROGID")
_OBS_KEYS = ("OBS_ID", "OBSID", "OBSERVID", "OBSNUM")
_TYPE_KEYS = ("PRODTYPE", "PRODCATG", "HDUCLAS1", "IMAGETYP", "OBSTYPE")


def is_fits_name(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


def _first(headers: list[Any], keys: tuple[str, ...]) -> Any:
    for h in headers:
        for k in keys:
            v = h.get(k)
            if v not in (None, ""):
                return v
    return None


def _angle(value: Any, hours: bool) -> float | None:
    from astropy.coordinates import Angle

    if value is None:
        return None
    try:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip()
        unit = "hourangle" if hours and (":" in text or " " in text) else "deg"
        return float(Angle(text, unit=unit).deg)
    except Exception:  # noqa: BLE001 - a malformed keyword is just missing metadata
        return None


def _wcs_centre(header: Any) -> tuple[float, float] | None:
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = WCS(header)
            if not w.has_celestial:
                return None
            cel = w.celestial
            ny, nx = (header.get("NAXIS2", 1), header.get("NAXIS1", 1))
            sky = cel.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
            icrs = sky.icrs
            return float(icrs.ra.deg), float(icrs.dec.deg)
    except Exception:  # noqa: BLE001
        return None


def extract(path: str | Path, name: str | None = None) -> Product | None:
    """Product metadata from a FITS file's headers (primary first, then extensions)."""
    from astropy.io import fits
    from astropy.time import Time

    if not is_fits_name(name or str(path)):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                headers = [hdu.header for _, hdu in zip(range(4), hdul, strict=False)]
    except Exception as err:  # noqa: BLE001 - not FITS after all
        log.info("%s: not readable as FITS (%s); no product metadata", path, err)
        return None
    p = Product(file_id="")
    p.telescope = _first(headers, ("TELESCOP",))
    p.instrument = _first(headers, ("INSTRUME",))
    p.object = _first(headers, ("OBJECT",))
    p.project = _first(headers, _PROJECT_KEYS)
    p.observation = _first(headers, _OBS_KEYS)
    p.product_type = _first(headers, _TYPE_KEYS)
    for attr in ("telescope", "instrument", "object", "project", "observation", "product_type"):
        v = getattr(p, attr)
        if v is not None:
            setattr(p, attr, str(v).strip())
    ra = _angle(_first(headers, ("RA", "RA_OBJ", "OBJCTRA", "RA_TARG")), hours=True)
    dec = _angle(_first(headers, ("DEC", "DEC_OBJ", "OBJCTDEC", "DEC_TARG")), hours=False)
    if ra is None or dec is None:
        for h in headers:
            centre = _wcs_centre(h)
            if centre:
                ra, dec = centre
                break
    if ra is not None and dec is not None and -90 <= dec <= 90:
        p.ra, p.dec = ra % 360.0, dec
    date = _first(headers, ("DATE-OBS", "DATE_OBS", "MJD-OBS"))
    if date is not None:
        try:
            t = Time(float(date), format="mjd") if isinstance(date, (int, float)) else Time(str(date))
            p.date_obs, p.t_obs = t.utc.isot, float(t.unix)
        except Exception:  # noqa: BLE001
            p.date_obs = str(date)
    exptime = _first(headers, ("EXPTIME", "EXPOSURE", "ONTIME"))
    try:
        p.exptime = float(exptime) if exptime is not None else None
    except (TypeError, ValueError):
        p.exptime = None
    return p


def product_from_json(file_id: str, data: dict[str, Any] | None) -> Product | None:
    """Rebuild a Product from the metadata a tape record carries."""
    if not data:
        return None
    fields = {k: v for k, v in data.items() if k in Product.__dataclass_fields__ and k != "file_id"}
    return Product(file_id=file_id, **fields)
