"""Per-observation EVENTS, GTI and POINTING HDUs from DL2 columns (GADF 0.3 data formats).

Times: the DL2 ``time`` column is Unix seconds (UTC, as lstchain's ``dragon_time``); GADF times are
seconds since MJDREF in TT. UTC->TT is one constant inside an observation unless a leap second
falls in it, so it is computed at TSTART and TSTOP with astropy and applied to the whole array
(a 1e7-event conversion of astropy Time per event costs ~2 s; the constant costs nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.time import Time

from appliance.dl3 import io
from appliance.dl3.errors import DL3InputError

MJDREFI, MJDREFF = 51910, 7.428703703703703e-4  # 2001-01-01 TT, the CTA / Fermi reference
_MJDREF = Time(MJDREFI + MJDREFF, format="mjd", scale="tt")
GADF = {"HDUCLASS": "GADF", "HDUDOC": "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats",
        "HDUVERS": "0.3"}
TELESCOPE = {"TELESCOP": "SYNTH-IACT", "INSTRUME": "SYNTH-IACT", "ORIGIN": "appliance dl3"}


def time_cards() -> dict[str, object]:
    return {"MJDREFI": MJDREFI, "MJDREFF": MJDREFF, "TIMEUNIT": "s", "TIMESYS": "TT", "TIMEREF": "LOCAL"}


def met(unix: np.ndarray | float) -> float:
    return float((Time(unix, format="unix", scale="utc").tt - _MJDREF).to_value("s"))


def altaz(ra: float, dec: float, unix: float, lon: float, lat: float) -> tuple[float, float]:
    """Alt/az of an ICRS direction from the GMST formula (0.01 deg; no IERS tables, no network)."""
    jd = unix / 86400.0 + 2440587.5
    gmst = (280.46061837 + 360.98564736629 * (jd - 2451545.0)) % 360.0
    ha = math.radians(gmst + lon - ra)
    d, p = math.radians(dec), math.radians(lat)
    alt = math.asin(math.sin(d) * math.sin(p) + math.cos(d) * math.cos(p) * math.cos(ha))
    az = math.atan2(-math.cos(d) * math.sin(ha), math.sin(d) * math.cos(p) - math.cos(d) * math.sin(p) * math.cos(ha))
    return math.degrees(alt), math.degrees(az) % 360.0


@dataclass(frozen=True)
class Observation:
    """One observation's header facts, derived once and shared by its HDUs and the obs-index."""

    obs_id: int
    tstart: float  # MET s
    tstop: float
    ontime: float
    livetime: float
    deadc: float
    ra_pnt: float
    dec_pnt: float
    alt_pnt: float
    az_pnt: float
    geolon: float
    geolat: float
    altitude: float
    date_obs: str
    date_end: str
    n_events: int = 0

    def cards(self) -> dict[str, object]:
        return {
            "OBS_ID": self.obs_id, "TSTART": self.tstart, "TSTOP": self.tstop, "TELAPSE": self.tstop - self.tstart,
            "ONTIME": self.ontime, "LIVETIME": self.livetime, "DEADC": self.deadc,
            "DATE-OBS": self.date_obs[:10], "TIME-OBS": self.date_obs[11:19],
            "DATE-END": self.date_end[:10], "TIME-END": self.date_end[11:19],
            "RA_PNT": self.ra_pnt, "DEC_PNT": self.dec_pnt, "ALT_PNT": self.alt_pnt, "AZ_PNT": self.az_pnt,
            "OBS_MODE": "POINTING", "RADESYS": "ICRS", "EQUINOX": 2000.0,
            "GEOLON": self.geolon, "GEOLAT": self.geolat, "ALTITUDE": self.altitude,
            "OBJECT": "Crab", "N_TELS": 2, "TELLIST": "M1,M2", "EUNIT": "TeV",
            **time_cards(), **TELESCOPE,
        }


def observation(path: object, obs_id: int, obs: io.Columns, gti: io.Columns) -> tuple[Observation, np.ndarray, float]:
    """The observation's facts, its GTIs in MET and the Unix->MET offset of its events."""
    row = np.flatnonzero(obs["obs_id"] == obs_id)
    if len(row) != 1:
        raise DL3InputError(path, f"obs_id {obs_id} has {len(row)} rows in the observation table", "obs_id")
    i = int(row[0])
    g = gti["obs_id"] == obs_id
    if not g.any():
        raise DL3InputError(path, f"obs_id {obs_id} has no good-time interval", "start")
    start, stop = gti["start"][g], gti["stop"][g]
    if np.any(stop <= start):
        raise DL3InputError(path, "a GTI stops before it starts", "stop")
    t0, t1 = float(start.min()), float(stop.max())
    shift = met(t0) - t0
    if abs((met(t1) - t1) - shift) > 1e-6:
        raise DL3InputError(path, "a leap second inside the observation is not supported", "time")
    ontime = float(np.sum(stop - start))
    deadc = float(obs["deadc"][i])
    ra, dec = float(obs["ra_pnt"][i]), float(obs["dec_pnt"][i])
    lon, lat = float(obs["geolon"][i]), float(obs["geolat"][i])
    alt, az = altaz(ra, dec, 0.5 * (t0 + t1), lon, lat)
    info = Observation(obs_id, t0 + shift, t1 + shift, ontime, ontime * deadc, deadc, ra, dec, alt, az, lon, lat,
                       float(obs["altitude"][i]), Time(t0, format="unix").isot, Time(t1, format="unix").isot)
    return info, np.column_stack([start + shift, stop + shift]), shift


def _header(hduclas1: str, info: Observation, extra: dict[str, object]) -> fits.Header:
    h = fits.Header()
    for k, v in {**GADF, "HDUCLAS1": hduclas1, **info.cards(), **extra}.items():
        h[k] = v
    return h


def events_hdu(info: Observation, ev: io.Columns, shift: float, cut_cards: dict[str, object]) -> fits.BinTableHDU:
    cols = [
        fits.Column("EVENT_ID", "K", array=ev["event_id"].astype(np.int64)),
        fits.Column("TIME", "D", unit="s", array=ev["time"] + shift),
        fits.Column("RA", "E", unit="deg", array=ev["reco_ra"]),
        fits.Column("DEC", "E", unit="deg", array=ev["reco_dec"]),
        fits.Column("ENERGY", "E", unit="TeV", array=ev["reco_energy"]),
        fits.Column("GAMMANESS", "E", array=ev["gammaness"]),
    ]
    return fits.BinTableHDU.from_columns(cols, header=_header("EVENTS", info, cut_cards), name="EVENTS")


def gti_hdu(info: Observation, gti_met: np.ndarray) -> fits.BinTableHDU:
    cols = [fits.Column("START", "D", unit="s", array=gti_met[:, 0]),
            fits.Column("STOP", "D", unit="s", array=gti_met[:, 1])]
    return fits.BinTableHDU.from_columns(cols, header=_header("GTI", info, {}), name="GTI")


def pointing_hdu(info: Observation) -> fits.BinTableHDU:
    t = np.array([info.tstart, 0.5 * (info.tstart + info.tstop), info.tstop])
    cols = [fits.Column("TIME", "D", unit="s", array=t),
            fits.Column("RA_PNT", "D", unit="deg", array=np.full(3, info.ra_pnt)),
            fits.Column("DEC_PNT", "D", unit="deg", array=np.full(3, info.dec_pnt)),
            fits.Column("ALT_PNT", "D", unit="deg", array=np.full(3, info.alt_pnt)),
            fits.Column("AZ_PNT", "D", unit="deg", array=np.full(3, info.az_pnt))]
    return fits.BinTableHDU.from_columns(cols, header=_header("POINTING", info, {}), name="POINTING")
