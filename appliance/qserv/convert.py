"""LSST catalogs (afw FITS, or Parquet / plain FITS with a column mapping) to Qserv input tables.

What changes on the way, every rule explicit and counted in the result:

* angles: afw ``Angle`` columns (TUNIT ``rad``) become degrees; RA is reduced to [0, 360);
* names: ``coord_ra``/``coord_dec`` stay (now in degrees, as in Rubin's DP0.2 Qserv schema;
  ``dec`` would be an SQL reserved word), ``id`` becomes ``<table>Id``
  (``objectId``, ``sourceId``); a mapping can rename anything else;
* flags: the packed ``flags`` bits become one BOOLEAN column per ``TFLAGn`` name;
* NaN and +-inf in floating columns become NULL (MariaDB/Qserv cannot store NaN); the number
  per column is reported; integers and booleans never hold NULL unless the input had them;
* strings become fixed-width CHAR (Qserv forbids variable-length columns in director tables).

Output per table: ``<Table>.parquet`` (typed, nulls explicit; what ``partition`` and ``load``
read) and one Felis ``schema.yaml`` for the catalog. Each input file is converted in memory
(afw catalogs are per patch or visit, 1e4-1e6 rows); the Parquet output is appended file by file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.fsutil import atomic_open
from appliance.qserv.afw import Catalog, ColumnInfo, read_afw_catalog
from appliance.qserv.errors import CatalogError, MissingColumnsError
from appliance.qserv.felis_schema import (
    DEC_UCD,
    RA_UCD,
    CatalogSchema,
    ColumnSchema,
    TableSchema,
    write_schema,
)

RA, DEC = "coord_ra", "coord_dec"  # names kept from afw, as in Rubin's Qserv schemas (DP0.2)

FELIS_TYPES = {
    "f4": "float", "f8": "double", "i1": "byte", "i2": "short", "i4": "int", "i8": "long",
    "u1": "short", "u2": "int", "u4": "long", "b1": "boolean",
}


@dataclass
class TableInput:
    """One table to convert: its name, files, and how its columns map."""

    name: str
    files: list[str]
    fmt: str = "afw"  # afw | parquet | fits
    rename: dict[str, str] = field(default_factory=dict)  # input column -> output column
    angle_unit: str | None = None  # for parquet/fits: unit of the RA/Dec columns (deg or rad)
    director: str | None = None  # for a child table: the director table's name
    director_key: str | None = None  # child: column referencing the director's primary key


@dataclass
class TableResult:
    name: str
    rows: int = 0
    files: int = 0
    columns: int = 0
    flags_unpacked: int = 0
    nan_to_null: dict[str, int] = field(default_factory=dict)
    ra_reduced: int = 0  # RA values outside [0, 360) brought into it (counted: a silent change otherwise)
    output: str = ""


@dataclass
class ConvertResult:
    database: str
    tables: list[TableResult]
    schema_path: str
    seconds: float

    @property
    def ok(self) -> bool:
        return all(t.rows > 0 for t in self.tables)

    def to_json(self) -> dict:
        return {"ok": self.ok, **asdict(self)}

    def report(self) -> str:
        lines = [f"converted catalog '{self.database}' in {self.seconds:.1f} s; schema {self.schema_path}"]
        for t in self.tables:
            nn = sum(t.nan_to_null.values())
            lines.append(
                f"  {t.name}: {t.rows} rows from {t.files} file(s), {t.columns} columns "
                f"({t.flags_unpacked} flag bits unpacked), {nn} NaN/inf -> NULL, "
                f"{t.ra_reduced} RA value(s) reduced into [0, 360) -> {t.output}"
            )
        return "\n".join(lines)


def _read_plain(path: str, fmt: str) -> Catalog:
    try:
        if fmt == "parquet":
            table = pq.read_table(path)
            cols = {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}
            return Catalog(columns=cols, info={n: ColumnInfo() for n in cols})
        from astropy.table import Table

        t = Table.read(path)
        cols, info = {}, {}
        for n in t.colnames:
            arr = np.asarray(t[n].filled() if hasattr(t[n], "filled") else t[n])
            cols[n] = arr
            info[n] = ColumnInfo(unit=str(t[n].unit or ""), doc=str(t[n].description or ""))
        return Catalog(columns=cols, info=info)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise CatalogError(path, f"cannot read {fmt} table: {err}") from err


def _default_rename(table: str) -> dict[str, str]:
    return {"id": table[0].lower() + table[1:] + "Id"}


def convert_catalog(cat: Catalog, spec: TableInput, path: str, result: TableResult):
    """One input catalog -> (arrow table, column schemas). Pure apart from the error's path."""
    rename = {**_default_rename(spec.name), **spec.rename}
    if spec.director is None:
        _require_positions(cat, rename, path)
    arrays: dict[str, pa.Array] = {}
    schemas: list[ColumnSchema] = []
    for name, arr in cat.columns.items():
        info = cat.info.get(name, ColumnInfo())
        out = rename.get(name, name).replace(".", "_")
        unit = info.unit
        ucd = None
        if out in (RA, DEC):
            ucd = RA_UCD if out == RA else DEC_UCD
            in_unit = spec.angle_unit or unit or "deg"
            if in_unit not in ("rad", "deg"):
                raise CatalogError(path, f"angle unit '{in_unit}' is neither rad nor deg", name)
        if info.afw_class == "Angle" or (out in (RA, DEC) and (spec.angle_unit or unit) == "rad"):
            arr = np.degrees(np.asarray(arr, dtype=np.float64))
            unit = "deg"
        elif out in (RA, DEC):
            arr = np.asarray(arr, dtype=np.float64)
            unit = "deg"
        if out == RA:
            outside = (arr < 0.0) | (arr >= 360.0)
            result.ra_reduced += int(np.count_nonzero(outside & np.isfinite(arr)))
            arr = np.mod(arr, 360.0)
            arr[arr >= 360.0] = 0.0
        if out in (RA, DEC):
            _refuse_rows(path, name, arr, ~np.isfinite(arr), "non-finite position (Qserv cannot place the row)")
        if out == DEC:
            _refuse_rows(path, name, arr, np.abs(arr) > 90.0, "declination outside [-90, 90] deg")
        arr = np.asarray(arr)
        if arr.dtype.kind in "fiub":
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if arr.ndim != 1:
            raise CatalogError(path, "array-valued columns are not supported (flatten them first)", name)
        kind = arr.dtype.kind
        if kind == "f":
            bad = ~np.isfinite(arr)
            nbad = int(bad.sum())
            if nbad:
                result.nan_to_null[out] = result.nan_to_null.get(out, 0) + nbad
            a = pa.array(arr, mask=bad if nbad else None)
            dtype = FELIS_TYPES[arr.dtype.str[1:]]
            schemas.append(ColumnSchema(out, dtype, True, unit, info.doc, ucd=ucd))
        elif kind in "iub":
            a = pa.array(arr)
            is_key = out in (rename["id"], spec.director_key)
            schemas.append(ColumnSchema(out, FELIS_TYPES[arr.dtype.str[1:]], not is_key, unit, info.doc))
        elif kind in "US":
            s = arr.astype(str)
            width = max(1, int(np.char.str_len(s).max()) if s.size else 1)
            a = pa.array(s)
            schemas.append(ColumnSchema(out, "char", True, unit, info.doc, length=width))
        else:
            raise CatalogError(path, f"unsupported column type {arr.dtype}", name)
        arrays[out] = a
    for name, bits in cat.flags.items():
        out = rename.get(name, name).replace(".", "_")
        arrays[out] = pa.array(np.asarray(bits, dtype=bool))
        schemas.append(ColumnSchema(out, "boolean", False, "", cat.flag_docs.get(name, "")))
        result.flags_unpacked = len(cat.flags)
    for c in schemas:
        if c.name in (RA, DEC):
            c.nullable = False
    return pa.table(arrays), schemas


def _merge_schema(old: list[ColumnSchema] | None, new: list[ColumnSchema], path: str) -> list[ColumnSchema]:
    if old is None:
        return new
    if [c.name for c in old] != [c.name for c in new]:
        raise CatalogError(path, "columns differ from the table's first input file")
    for a, b in zip(old, new, strict=True):
        if a.datatype == "char":
            a.length = max(a.length or 1, b.length or 1)
    return old


def convert_tables(database: str, specs: Sequence[TableInput], out_dir: str | Path, progress: bool = False) -> ConvertResult:
    """Convert every table; write ``<Table>.parquet`` files and the Felis ``schema.yaml``."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results: list[TableResult] = []
    tables: list[TableSchema] = []
    for spec in specs:
        if not spec.files:
            raise CatalogError(spec.name, "no input files")
        res = TableResult(spec.name, output=str(out / f"{spec.name}.parquet"))
        cols: list[ColumnSchema] | None = None
        arrow_tables: list[pa.Table] = []
        writer = None
        with atomic_open(out / f"{spec.name}.parquet", "wb") as fh:
            for path in tqdm(spec.files, desc=f"convert {spec.name}", unit="file", disable=not progress):
                cat = read_afw_catalog(path) if spec.fmt == "afw" else _read_plain(path, spec.fmt)
                table, schemas = convert_catalog(cat, spec, path, res)
                cols = _merge_schema(cols, schemas, path)
                arrow_tables.append(table)
                res.rows += table.num_rows
                res.files += 1
            # Strings are cast to their final width only now, so the Parquet schema is uniform.
            unified = pa.unify_schemas([t.schema for t in arrow_tables])
            writer = pq.ParquetWriter(fh, unified)
            for t in arrow_tables:
                writer.write_table(t.cast(unified), row_group_size=1_000_000)
            writer.close()
        assert cols is not None
        res.columns = len(cols)
        pk_name = {**_default_rename(spec.name), **spec.rename}["id"]
        pk = next((c.name for c in cols if c.name == pk_name), cols[0].name)
        ts = TableSchema(spec.name, cols, pk, f"{spec.name} table converted from {spec.fmt} catalogs")
        if spec.director:
            ts.director, ts.director_key = spec.director, spec.director_key or pk
        tables.append(ts)
        results.append(res)
    schema = CatalogSchema(database, tables)
    schema_path = out / "schema.yaml"
    write_schema(schema, schema_path)
    result = ConvertResult(database, results, str(schema_path), time.monotonic() - t0)
    with atomic_open(out / "convert.json", "w") as f:
        json.dump(result.to_json(), f, indent=2)
    return result


def parse_mapping(items: Sequence[str] | None) -> Mapping[str, str]:
    """``["coord_ra=ra", ...]`` -> dict; used by the CLI's ``--rename``."""
    out: dict[str, str] = {}
    for item in items or []:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise CatalogError("--rename", f"expected OLD=NEW, got '{item}'")
        out[old] = new
    return out


RA_GUESSES = ("ra", "ra_deg", "radeg", "raj2000", "ra_icrs", "alpha", "ra_ps", "coord_ra", "ra_pm")
DEC_GUESSES = ("dec", "decl", "dec_deg", "decdeg", "dej2000", "dec_icrs", "delta", "decl_ps", "coord_dec", "dec_pm")


def _require_positions(cat: Catalog, rename: Mapping[str, str], path: str) -> None:
    """A director table without coord_ra/coord_dec after renaming is refused here, not at partition time."""
    outputs = {rename.get(n, n) for n in cat.columns}
    missing = [c for c in (RA, DEC) if c not in outputs]
    if not missing:
        return
    hints = []
    for want, guesses in ((RA, RA_GUESSES), (DEC, DEC_GUESSES)):
        if want in missing:
            found = next((n for g in guesses for n in cat.columns if n.lower() == g and rename.get(n, n) == n), None)
            hints.append(f"--rename {found or '<column>'}={want}")
    raise MissingColumnsError(
        path, f"the director table has no {' and no '.join(missing)} position column; name yours with "
        f"{' '.join(hints)} (columns: {', '.join(cat.columns)})",
        details={"missing": missing, "columns": list(cat.columns), "suggest": hints},
    )


def _refuse_rows(path: str, column: str, values: np.ndarray, bad: np.ndarray, what: str) -> None:
    """Refuse a column with bad rows, naming the count and the first (1-based row, its value)."""
    rows = np.flatnonzero(bad)
    if rows.size:
        first = int(rows[0])
        raise CatalogError(path, f"{what}: {rows.size} row(s), the first is row {first + 1} "
                                 f"(value {values[first]!r}, after unit conversion)", column,
                           {"row": first + 1, "value": repr(values[first]), "bad_rows": int(rows.size)})
