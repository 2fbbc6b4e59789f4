"""GADF conformance of a DL3 directory: HDU classes, required columns and units, index consistency.

Checks what gammapy and ctools rely on, as written in the GADF 0.3 specification (data storage:
obs-index, hdu-index; events; GTI; pointing; full-enclosure and point-like IRFs). Every problem
names the file, the HDU and the column or keyword, so a broken file fails with a clear line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

# HDU_CLASS -> (HDUCLAS1, HDUCLAS2, HDUCLAS4, {column: unit}, required header keywords)
_AXES = {"ENERG_LO": "TeV", "ENERG_HI": "TeV", "THETA_LO": "deg", "THETA_HI": "deg"}
_OBS_KEYS = ("OBS_ID", "TSTART", "TSTOP", "MJDREFI", "MJDREFF", "TIMEUNIT", "TIMESYS")
SPEC: dict[str, tuple[str, str | None, str | None, dict[str, str], tuple[str, ...]]] = {
    "events": ("EVENTS", None, None, {"EVENT_ID": "", "TIME": "s", "RA": "deg", "DEC": "deg", "ENERGY": "TeV"},
               _OBS_KEYS + ("ONTIME", "LIVETIME", "DEADC", "RA_PNT", "DEC_PNT", "EQUINOX", "RADESYS",
                            "ORIGIN", "TELESCOP", "INSTRUME", "OBS_MODE",
                            "GEOLON", "GEOLAT", "ALTITUDE", "EUNIT", "TIMEREF")),
    "gti": ("GTI", None, None, {"START": "s", "STOP": "s"}, ("MJDREFI", "MJDREFF", "TIMEUNIT", "TIMESYS")),
    "pointing": ("POINTING", None, None, {"TIME": "s", "RA_PNT": "deg", "DEC_PNT": "deg"},
                 ("MJDREFI", "MJDREFF", "TIMEUNIT", "TIMESYS")),
    "aeff_2d": ("RESPONSE", "EFF_AREA", "AEFF_2D", {**_AXES, "EFFAREA": "m2"}, ()),
    "edisp_2d": ("RESPONSE", "EDISP", "EDISP_2D", {**_AXES, "MIGRA_LO": "", "MIGRA_HI": "", "MATRIX": ""}, ()),
    "psf_table": ("RESPONSE", "PSF", "PSF_TABLE", {**_AXES, "RAD_LO": "deg", "RAD_HI": "deg", "RPSF": "sr-1"}, ()),
    "bkg_2d": ("RESPONSE", "BKG", "BKG_2D", {**_AXES, "BKG": "MeV-1 s-1 sr-1"}, ()),
    "bkg_3d": ("RESPONSE", "BKG", "BKG_3D", {"ENERG_LO": "TeV", "ENERG_HI": "TeV", "DETX_LO": "deg", "DETX_HI": "deg",
                                             "DETY_LO": "deg", "DETY_HI": "deg", "BKG": "MeV-1 s-1 sr-1"}, ("FOVALIGN",)),
    "rad_max_2d": ("RESPONSE", "RAD_MAX", "RAD_MAX_2D", {**_AXES, "RAD_MAX": "deg"}, ()),
}
HDU_TYPE = {"events": "events", "gti": "gti", "pointing": "pointing", "aeff_2d": "aeff", "edisp_2d": "edisp",
            "psf_table": "psf", "bkg_2d": "bkg", "bkg_3d": "bkg", "rad_max_2d": "rad_max"}
OBS_INDEX_COLS = {"OBS_ID": "", "RA_PNT": "deg", "DEC_PNT": "deg", "ONTIME": "s", "LIVETIME": "s",
                  "TSTART": "s", "TSTOP": "s", "DEADC": ""}
HDU_INDEX_COLS = ("OBS_ID", "HDU_TYPE", "HDU_CLASS", "FILE_DIR", "FILE_NAME", "HDU_NAME")


@dataclass
class CheckResult:
    directory: Path
    problems: list[str] = field(default_factory=list)
    hdus_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"ok": self.ok, "directory": str(self.directory), "hdus_checked": self.hdus_checked,
                "problems": self.problems}

    def report(self) -> str:
        if self.ok:
            return f"{self.directory}: GADF conformant ({self.hdus_checked} HDUs checked)"
        return "\n".join(f"{self.directory}: NOT conformant: {p}" for p in self.problems)


def _units_match(have: str | None, want: str) -> bool:
    have = (have or "").strip()
    if not want:
        return have in {"", "dimensionless"}
    try:
        return u.Unit(have) == u.Unit(want)
    except ValueError:
        return False


def _check_columns(where: str, hdu: fits.BinTableHDU, columns: dict[str, str], problems: list[str]) -> None:
    cols = {c.name: c.unit for c in hdu.columns}
    for name, unit in columns.items():
        if name not in cols:
            problems.append(f"{where}: missing column {name}")
        elif not _units_match(cols[name], unit):
            problems.append(f"{where}: column {name} has unit {cols[name]!r}, expected {unit or 'none'!r}")


def _check_header(where: str, h: fits.Header, keys: tuple[str, ...], problems: list[str]) -> None:
    for k in ("HDUCLASS", "HDUDOC", "HDUVERS", *keys):
        if k not in h:
            problems.append(f"{where}: missing header keyword {k}")
    if h.get("HDUCLASS") not in (None, "GADF"):
        problems.append(f"{where}: HDUCLASS is {h.get('HDUCLASS')!r}, expected 'GADF'")


def check_hdu(where: str, hdu: fits.BinTableHDU, hdu_class: str, problems: list[str],
              has_rad_max_hdu: bool = False) -> None:
    """One HDU against its class in ``SPEC``.

    A point-like AEFF/EDISP needs its direction cut: the RAD_MAX keyword (a global cut) or, for an
    energy-dependent one, a RAD_MAX_2D HDU of the same observation (``has_rad_max_hdu``).
    """
    c1, c2, c4, columns, keys = SPEC[hdu_class]
    h = hdu.header
    _check_header(where, h, keys, problems)
    for key, want in (("HDUCLAS1", c1), ("HDUCLAS2", c2), ("HDUCLAS4", c4)):
        if want is not None and h.get(key) != want:
            problems.append(f"{where}: {key} is {h.get(key)!r}, expected {want!r}")
    if c1 == "RESPONSE" and h.get("HDUCLAS3") not in ("POINT-LIKE", "FULL-ENCLOSURE"):
        problems.append(f"{where}: HDUCLAS3 is {h.get('HDUCLAS3')!r}, expected POINT-LIKE or FULL-ENCLOSURE")
    if c1 == "RESPONSE" and h.get("HDUCLAS3") == "POINT-LIKE" and c2 in ("EFF_AREA", "EDISP") and "RAD_MAX" not in h \
            and not has_rad_max_hdu:
        problems.append(f"{where}: point-like {c2} without RAD_MAX (the direction cut) in the header "
                        "and no RAD_MAX_2D HDU for the observation")
    _check_columns(where, hdu, columns, problems)
    if hdu_class == "events" and hdu.data is not None and len(hdu.data) and "TIME" in hdu.columns.names:
        t = hdu.data["TIME"]
        if "TSTART" in h and "TSTOP" in h and (t.min() < h["TSTART"] or t.max() > h["TSTOP"]):
            problems.append(f"{where}: column TIME outside [TSTART, TSTOP]")
        if all(k in h for k in ("ONTIME", "LIVETIME", "DEADC")) and not np.isclose(
                h["LIVETIME"], h["ONTIME"] * h["DEADC"], rtol=1e-6):
            problems.append(f"{where}: LIVETIME != ONTIME * DEADC")


def _open_index(directory: Path, name: str, kind: str, problems: list[str]) -> fits.BinTableHDU | None:
    path = directory / name
    if not path.exists():
        problems.append(f"{name}: missing")
        return None
    try:
        with fits.open(path) as hdul:
            hdu = hdul[1].copy()
    except (OSError, IndexError) as err:
        problems.append(f"{name}: not a FITS table ({err})")
        return None
    _check_header(f"{name}[1]", hdu.header, (), problems)
    if hdu.header.get("HDUCLAS1") != "INDEX" or hdu.header.get("HDUCLAS2") != kind:
        problems.append(f"{name}[1]: HDUCLAS1/2 are {hdu.header.get('HDUCLAS1')!r}/{hdu.header.get('HDUCLAS2')!r}, "
                        f"expected 'INDEX'/{kind!r}")
    return hdu


def check(directory: Path) -> CheckResult:
    directory = Path(directory)
    res = CheckResult(directory)
    p = res.problems
    obs_idx = _open_index(directory, "obs-index.fits.gz", "OBS", p)
    hdu_idx = _open_index(directory, "hdu-index.fits.gz", "HDU", p)
    if obs_idx is None or hdu_idx is None:
        return res
    _check_columns("obs-index.fits.gz[1]", obs_idx, OBS_INDEX_COLS, p)
    _check_header("obs-index.fits.gz[1]", obs_idx.header, ("MJDREFI", "MJDREFF", "TIMEUNIT", "TIMESYS"), p)
    missing = [c for c in HDU_INDEX_COLS if c not in hdu_idx.columns.names]
    if missing:
        p.append(f"hdu-index.fits.gz[1]: missing column {missing[0]}")
        return res
    if "OBS_ID" not in obs_idx.columns.names:
        return res
    obs_rows = {int(r["OBS_ID"]): r for r in obs_idx.data}
    seen: dict[int, set[str]] = {}
    for r in hdu_idx.data:
        seen.setdefault(int(r["OBS_ID"]), set()).add(r["HDU_TYPE"].strip())
    root = directory.resolve()
    for r in hdu_idx.data:
        obs_id, hclass, htype = int(r["OBS_ID"]), r["HDU_CLASS"].strip(), r["HDU_TYPE"].strip()
        path = (directory / r["FILE_DIR"].strip() / r["FILE_NAME"].strip()).resolve()
        where = f"{r['FILE_NAME'].strip()}[{r['HDU_NAME'].strip()}]"
        if root not in path.parents:
            p.append(f"hdu-index.fits.gz: {where} points outside the directory")
            continue
        if obs_id not in obs_rows:
            p.append(f"hdu-index.fits.gz: OBS_ID {obs_id} is not in obs-index.fits.gz")
        if hclass not in SPEC or HDU_TYPE[hclass] != htype:
            p.append(f"hdu-index.fits.gz: {where} has HDU_TYPE/HDU_CLASS {htype}/{hclass}, not a GADF pair")
            continue
        try:
            with fits.open(path, checksum=True) as hdul:
                hdu = hdul[r["HDU_NAME"].strip()]
                check_hdu(where, hdu, hclass, p, has_rad_max_hdu="rad_max" in seen[obs_id])
                res.hdus_checked += 1
                if "OBS_ID" in hdu.header and hdu.header["OBS_ID"] != obs_id:
                    p.append(f"{where}: header OBS_ID {hdu.header['OBS_ID']} != hdu-index OBS_ID {obs_id}")
                if hclass == "events" and obs_id in obs_rows:
                    for k in ("TSTART", "TSTOP", "LIVETIME", "RA_PNT", "DEC_PNT"):
                        if k in hdu.header and not np.isclose(hdu.header[k], obs_rows[obs_id][k], rtol=1e-9):
                            p.append(f"{where}: {k} {hdu.header[k]} != obs-index {obs_rows[obs_id][k]}")
        except FileNotFoundError:
            p.append(f"hdu-index.fits.gz: {where}: file missing")
        except KeyError:
            p.append(f"hdu-index.fits.gz: {where}: no such HDU in the file")
        except OSError as err:
            p.append(f"{where}: unreadable ({err})")
    for obs_id in obs_rows:
        for need in ("events", "gti", "aeff", "edisp"):
            if need not in seen.get(obs_id, set()):
                p.append(f"hdu-index.fits.gz: OBS_ID {obs_id} has no {need} HDU")
    return res
