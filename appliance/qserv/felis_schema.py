"""The catalog schema in Rubin's Felis YAML format, built from converted tables and validated by lsst-felis.

How the Qserv roles are expressed in plain Felis (which has no Qserv-specific keys):

* the **director** table is the one without a foreign key; its partitioning position is the pair of
  columns with UCDs ``pos.eq.ra;meta.main`` and ``pos.eq.dec;meta.main``; its director key is its
  primary key;
* a **child** (dependent) table has a ``ForeignKey`` constraint whose column references the
  director's primary key; it is placed in its director row's chunk.

``TableSchema`` is the small typed view the loaders and the partitioner use; ``load_schema`` reads
it back from a Felis file after validating the file with lsst-felis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from appliance.fsutil import atomic_write_bytes
from appliance.qserv.errors import SchemaError

RA_UCD = "pos.eq.ra;meta.main"
DEC_UCD = "pos.eq.dec;meta.main"

# Felis datatype -> MariaDB column type (fixed-width only: Qserv forbids VARCHAR in directors).
MYSQL_TYPES = {
    "boolean": "BOOLEAN",
    "byte": "TINYINT",
    "short": "SMALLINT",
    "int": "INT",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
}


@dataclass
class ColumnSchema:
    name: str
    datatype: str  # Felis datatype
    nullable: bool = True
    unit: str = ""
    description: str = ""
    length: int | None = None
    ucd: str | None = None

    def mysql_type(self) -> str:
        if self.datatype == "char":
            return f"CHAR({self.length or 1})"
        if self.datatype in ("string", "unicode", "text"):
            return f"CHAR({self.length or 255})"
        return MYSQL_TYPES[self.datatype]

    def mysql_definition(self) -> str:
        return f"`{self.name}` {self.mysql_type()}" + ("" if self.nullable else " NOT NULL")


@dataclass
class TableSchema:
    name: str
    columns: list[ColumnSchema]
    primary_key: str
    description: str = ""
    director: str | None = None  # for a child table: the director table's name
    director_key: str | None = None  # child: FK column; director: primary key
    ra: str | None = None
    dec: str | None = None

    @property
    def is_director(self) -> bool:
        return self.director is None

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass
class CatalogSchema:
    database: str
    tables: list[TableSchema] = field(default_factory=list)
    description: str = ""

    def table(self, name: str) -> TableSchema:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    def director(self) -> TableSchema:
        return next(t for t in self.tables if t.is_director)


def to_felis(schema: CatalogSchema) -> dict[str, Any]:
    """The Felis document (a plain dict, ready for YAML) of a catalog schema."""
    db = schema.database
    tables = []
    for t in schema.tables:
        cols = []
        for c in t.columns:
            col: dict[str, Any] = {
                "name": c.name,
                "@id": f"#{t.name}.{c.name}",
                "datatype": c.datatype,
                "description": c.description or c.name,
                "nullable": c.nullable,
            }
            if c.length is not None and c.datatype in ("char", "string", "unicode", "binary"):
                col["length"] = c.length
            if c.unit:
                col["fits:tunit"] = c.unit
            if c.ucd:
                col["ivoa:ucd"] = c.ucd
            cols.append(col)
        table: dict[str, Any] = {
            "name": t.name,
            "@id": f"#{t.name}",
            "description": t.description or t.name,
            "primaryKey": f"#{t.name}.{t.primary_key}",
            "mysql:engine": "MyISAM",
            "columns": cols,
        }
        if t.director:
            director = schema.table(t.director)
            table["constraints"] = [
                {
                    "name": f"{t.name}_{t.director_key}_fk",
                    "@id": f"#{t.name}_{t.director_key}_fk",
                    "@type": "ForeignKey",
                    "description": f"{t.name} rows are placed in their {t.director} row's chunk",
                    "columns": [f"#{t.name}.{t.director_key}"],
                    "referencedColumns": [f"#{director.name}.{director.primary_key}"],
                }
            ]
        tables.append(table)
    return {
        "name": db,
        "@id": f"#{db}",
        "description": schema.description or f"Qserv catalog {db}",
        "tables": tables,
    }


def validate_felis(doc: dict[str, Any], where: str = "<schema>") -> None:
    """Validate with lsst-felis' own data model (the same check as ``felis validate``)."""
    from felis.datamodel import Schema
    from pydantic import ValidationError

    try:
        Schema.model_validate(doc, context={"check_description": True})
    except ValidationError as err:
        msgs = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise SchemaError(where, msgs) from err
    except (TypeError, ValueError, KeyError) as err:  # some felis validators raise these directly
        raise SchemaError(where, [str(err)]) from err


def write_schema(schema: CatalogSchema, path: str | Path) -> dict[str, Any]:
    doc = to_felis(schema)
    validate_felis(doc, str(path))
    atomic_write_bytes(path, yaml.safe_dump(doc, sort_keys=False).encode())
    return doc


def _ref(ref: str) -> tuple[str, str]:
    table, _, column = ref.lstrip("#").partition(".")
    return table, column


def load_schema(path: str | Path) -> CatalogSchema:
    """Read and validate a Felis file, returning the typed view with the Qserv roles resolved."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SchemaError(str(path), [str(err)]) from err
    validate_felis(doc, str(path))
    tables = []
    for t in doc["tables"]:
        cols = [
            ColumnSchema(
                name=c["name"],
                datatype=c["datatype"],
                nullable=c.get("nullable", True),
                unit=c.get("fits:tunit") or c.get("ivoa:unit") or "",
                description=c.get("description") or "",
                length=c.get("length"),
                ucd=c.get("ivoa:ucd"),
            )
            for c in t["columns"]
        ]
        pk = t.get("primaryKey")
        pk = pk[0] if isinstance(pk, list) else pk
        ts = TableSchema(t["name"], cols, _ref(pk)[1] if pk else "", t.get("description", ""))
        for c in cols:
            if c.ucd == RA_UCD:
                ts.ra = c.name
            if c.ucd == DEC_UCD:
                ts.dec = c.name
        for con in t.get("constraints", []):
            if con.get("@type") == "ForeignKey":
                ts.director_key = _ref(con["columns"][0])[1]
                ts.director = _ref(con["referencedColumns"][0])[0]
        if ts.director is None:
            ts.director_key = ts.primary_key
            if not (ts.ra and ts.dec):
                raise SchemaError(str(path), [f"director table {ts.name} has no {RA_UCD}/{DEC_UCD} columns"])
        tables.append(ts)
    return CatalogSchema(doc["name"], tables, doc.get("description", ""))
