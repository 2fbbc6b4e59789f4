"""A query result as a FITS table: the hand-over from a live catalog to an offline recipe run.

Recipes run in containers without network, so they cannot query MariaDB or Qserv. ``export``
runs one SELECT against the reference database (or any MySQL-protocol server, Qserv's czar
included) and writes the rows with astropy, units taken from the Felis schema, rows ordered by
the first column so the file is reproducible byte for byte (no dates in the header).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from appliance.fsutil import atomic_write_bytes
from appliance.hashing import sha256_file
from appliance.qserv.errors import DatabaseError
from appliance.qserv.felis_schema import CatalogSchema
from appliance.qserv.load import DbConfig, ident
from appliance.qserv.verify import angsep_sql

BANDS = ("u", "g", "r", "i", "z")


def cluster_field_sql(table: str, ra: float, dec: float, radius: float) -> str:
    """The columns the cluster-catalog recipe needs, for Objects within ``radius`` deg."""
    cols = ["objectId", "coord_ra", "coord_dec"]
    cols += [f"{b}_psfFlux" for b in BANDS] + [f"{b}_psfFluxErr" for b in BANDS]
    cols += ["shape_xx", "shape_yy", "shape_xy", "shape_flag", "r_psfFlux_flag", "g_psfFlux_flag"]
    sep = angsep_sql("coord_ra", "coord_dec", f"({ra!r})", f"({dec!r})")
    return f"SELECT {', '.join(cols)} FROM {ident(table)} WHERE {sep} < {radius!r} ORDER BY objectId"


@dataclass
class ExportResult:
    path: str
    rows: int
    columns: list[str]
    sha256: str
    sql: str

    ok = True

    def to_json(self) -> dict:
        return {"ok": self.ok, **asdict(self)}

    def report(self) -> str:
        return f"wrote {self.rows} rows x {len(self.columns)} columns to {self.path} (sha256 {self.sha256})"


def export_query(db: DbConfig, database: str, sql: str, out: str | Path, schema: CatalogSchema | None = None, meta: dict | None = None) -> ExportResult:
    from astropy.table import MaskedColumn, Table

    if not re.match(r"^\s*SELECT\b", sql, re.I) or ";" in sql:
        raise DatabaseError("export runs exactly one SELECT statement")
    conn = db.connect(database)
    try:
        with conn.cursor() as cur:
            try:
                cur.execute(sql)
            except Exception as err:  # pymysql errors carry the server's message
                raise DatabaseError(f"export query failed: {err}") from err
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
    finally:
        conn.close()
    units = {}
    if schema:
        for t in schema.tables:
            for c in t.columns:
                units.setdefault(c.name, c.unit)
    table = Table(meta={k.upper()[:8]: v for k, v in (meta or {}).items()})
    for i, name in enumerate(names):
        values = [r[i] for r in rows]
        mask = np.array([v is None for v in values], dtype=bool)
        sample = next((v for v in values if v is not None), 0.0)
        if isinstance(sample, bool | int) and not isinstance(sample, float):
            dtype = np.int64
            fill = 0
        elif isinstance(sample, str | bytes):
            dtype, fill = str, ""
        else:
            dtype, fill = np.float64, np.nan
        arr = np.array([fill if v is None else v for v in values], dtype=dtype)
        col = MaskedColumn(arr, name=name, mask=mask) if mask.any() else arr
        table[name] = col
        if units.get(name):
            table[name].unit = units[name]
    buf = io.BytesIO()
    table.write(buf, format="fits")
    atomic_write_bytes(out, buf.getvalue())
    os.chmod(out, 0o644)  # a shareable data product (recipes read it as another user)
    return ExportResult(str(out), len(rows), names, sha256_file(out), sql)
