"""DL2 tables on disk, FITS or HDF5, as plain numpy columns in canonical units.

One schema for both containers (column -> unit; '' means dimensionless):

=============  ===========================================  =========================
table          HDF5 node (ctapipe / lstchain layout)        FITS extension
=============  ===========================================  =========================
events         /dl2/event/telescope/parameters/LST_LSTCam   EVENTS
observation    /dl2/observation                             OBSERVATION
gti            /dl2/gti                                     GTI
simulation     /simulation/run_config                       SIMULATION
=============  ===========================================  =========================

HDF5 tables are compound datasets (what PyTables, and so pandas and lstchain, write); a column's
unit is the dataset attribute ``<column>_UNIT`` as ctapipe's HDF5TableWriter stores it. FITS
units are the usual ``TUNITn``. A unit convertible to the canonical one (GeV for TeV) is
converted; anything else is a :class:`DL3InputError` naming file and column.
"""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
from astropy.io import fits

from appliance.dl3.errors import DL3InputError

EVENTS = {"obs_id": "", "event_id": "", "time": "s", "reco_energy": "TeV", "reco_ra": "deg",
          "reco_dec": "deg", "gammaness": ""}
OBSERVATION = {"obs_id": "", "ra_pnt": "deg", "dec_pnt": "deg", "deadc": "", "geolon": "deg",
               "geolat": "deg", "altitude": "m"}
GTI = {"obs_id": "", "start": "s", "stop": "s"}
MC_EVENTS = {"true_energy": "TeV", "reco_energy": "TeV", "true_alt": "deg", "true_az": "deg",
             "reco_alt": "deg", "reco_az": "deg", "pointing_alt": "deg", "pointing_az": "deg",
             "gammaness": ""}
SIMULATION = {"num_showers": "", "shower_reuse": "", "energy_range_min": "TeV",
              "energy_range_max": "TeV", "max_scatter_range": "m", "spectral_index": "",
              "min_viewcone_radius": "deg", "max_viewcone_radius": "deg"}

HDF5_NODE = {"events": "/dl2/event/telescope/parameters/LST_LSTCam", "observation": "/dl2/observation",
             "gti": "/dl2/gti", "simulation": "/simulation/run_config"}
FITS_EXT = {"events": "EVENTS", "observation": "OBSERVATION", "gti": "GTI", "simulation": "SIMULATION"}

Columns = dict[str, np.ndarray]


def is_hdf5(path: Path) -> bool:
    return path.suffix.lower() in {".h5", ".hdf5", ".hdf"}


def write_tables(path: Path, tables: dict[str, tuple[Columns, dict[str, str]]]) -> None:
    """Write named tables (columns, units) to ``path`` as HDF5 or FITS, chosen by the suffix."""
    path = Path(path)
    if is_hdf5(path):
        with h5py.File(path, "w") as h5:
            for name, (cols, units) in tables.items():
                rec = np.rec.fromarrays(list(cols.values()), names=list(cols))
                ds = h5.create_dataset(HDF5_NODE[name], data=rec)
                for col in cols:
                    if units.get(col):
                        ds.attrs[f"{col}_UNIT"] = units[col]
        return
    hdus: list[fits.hdu.base.ExtensionHDU] = []
    for name, (cols, units) in tables.items():
        fcols = [fits.Column(name=c, array=v, format=_tform(v), unit=units.get(c) or None)
                 for c, v in cols.items()]
        hdus.append(fits.BinTableHDU.from_columns(fcols, name=FITS_EXT[name]))
    fits.HDUList([fits.PrimaryHDU(), *hdus]).writeto(path, overwrite=True)


def _tform(v: np.ndarray) -> str:
    return {"f": "E" if v.dtype.itemsize == 4 else "D", "i": "J" if v.dtype.itemsize == 4 else "K",
            "u": "K", "b": "L"}[v.dtype.kind]


def read_table(path: Path, name: str, schema: dict[str, str]) -> Columns:
    """Columns of ``schema`` from table ``name`` of ``path``, checked and in canonical units."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    raw, units = _read_raw(path, name)
    out: Columns = {}
    for col, want in schema.items():
        if col not in raw:
            raise DL3InputError(path, f"missing in table {name!r} (have: {', '.join(sorted(raw)) or 'none'})", col)
        have = units.get(col, "")
        out[col] = _to_unit(path, col, raw[col], have, want)
    return out


def _read_raw(path: Path, name: str) -> tuple[Columns, dict[str, str]]:
    if is_hdf5(path):
        try:
            h5 = h5py.File(path, "r")
        except OSError as err:
            raise DL3InputError(path, f"not a readable HDF5 file ({err})") from None
        with h5:
            node = HDF5_NODE[name]
            if node not in h5:
                raise DL3InputError(path, f"no table {node} (the {name} table)")
            ds = h5[node]
            data = ds[()]
            if data.dtype.names is None:
                raise DL3InputError(path, f"{node} is not a table (compound dataset)")
            units = {k[:-5]: (v.decode() if isinstance(v, bytes) else str(v))
                     for k, v in ds.attrs.items() if k.endswith("_UNIT")}
            return {c: np.asarray(data[c]) for c in data.dtype.names}, units
    try:
        hdul = fits.open(path, memmap=False)
    except OSError as err:
        raise DL3InputError(path, f"not a readable FITS file ({err})") from None
    with hdul:
        ext = FITS_EXT[name]
        if ext not in hdul:
            raise DL3InputError(path, f"no extension {ext} (the {name} table)")
        hdu = hdul[ext]
        data = hdu.data
        names = list(hdu.columns.names) if hdu.columns is not None else []
        cols = {c: np.asarray(data[c]) if data is not None else np.zeros(0) for c in names}
        units = {c.name: (c.unit or "") for c in hdu.columns}
        return cols, units


def _to_unit(path: Path, col: str, values: np.ndarray, have: str, want: str) -> np.ndarray:
    if not want:
        if have.strip() not in {"", "dimensionless"}:
            raise DL3InputError(path, f"unit {have!r}, expected none (dimensionless)", col)
        return values
    if not have:
        raise DL3InputError(path, f"no unit, expected {want}", col)
    try:
        factor = u.Unit(have).to(want)
    except (ValueError, u.UnitsError):
        raise DL3InputError(path, f"unit {have!r} cannot be converted to {want}", col) from None
    values = np.asarray(values, dtype=np.float64)
    return values if factor == 1.0 else values * factor
