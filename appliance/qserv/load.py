"""MariaDB loaders: the plain reference catalog ("regular MySQL") and the per-chunk worker layout.

Reference: database ``<db>``, one table per catalog table, every row, no chunk columns.
Chunked: database ``<db>_chunks``, laid out the way a Qserv worker holds a partitioned table:
``Object_<chunk>`` and ``ObjectFullOverlap_<chunk>`` for the director, ``Source_<chunk>`` for a
child; each has the catalog columns plus ``chunkId`` and ``subChunkId``.

Rows go in with ``LOAD DATA LOCAL INFILE`` (the client streams the file; the server needs
``local_infile``), the same path Qserv's ingest uses. Any warning MariaDB raises while loading
(truncation, bad value) is an error here: a silently altered row would defeat the comparison.
The password, when needed, comes from ``QSERV_MYSQL_PASSWORD`` and is never logged.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from appliance.qserv.errors import DatabaseError
from appliance.qserv.felis_schema import CatalogSchema, TableSchema
from appliance.qserv.partition import _csv_bytes, read_summary

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class DbConfig:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    unix_socket: str | None = None
    password_env: str = "QSERV_MYSQL_PASSWORD"

    def connect(self, database: str | None = None):
        import pymysql

        try:
            return pymysql.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=os.environ.get(self.password_env, ""),
                unix_socket=self.unix_socket,
                database=database,
                local_infile=True,
                autocommit=True,
                charset="utf8mb4",
            )
        except pymysql.MySQLError as err:
            where = self.unix_socket or f"{self.host}:{self.port}"
            raise DatabaseError(f"cannot connect to MariaDB at {where} as {self.user}: {err.args[-1]}") from err


def ident(name: str) -> str:
    """A quoted SQL identifier; refuses anything that is not a plain name."""
    if not NAME_RE.match(name):
        raise DatabaseError(f"refusing SQL identifier {name!r}")
    return f"`{name}`"


def create_table_sql(table: TableSchema, name: str, chunked: bool) -> str:
    cols = [c.mysql_definition() for c in table.columns]
    if chunked:
        cols += ["`chunkId` INT NOT NULL", "`subChunkId` INT NOT NULL"]
    keys = []
    if not chunked:
        keys.append(f"PRIMARY KEY ({ident(table.primary_key)})")
        if table.director:
            keys.append(f"KEY ({ident(table.director_key or '')})")
        if table.dec:
            keys.append(f"KEY ({ident(table.dec)})")
    else:
        keys.append("KEY (`subChunkId`)")
        if table.director:
            keys.append(f"KEY ({ident(table.director_key or '')})")
    body = ",\n  ".join(cols + keys)
    return f"CREATE TABLE {ident(name)} (\n  {body}\n) ENGINE=MyISAM"


@dataclass
class LoadResult:
    database: str
    tables: dict[str, int] = field(default_factory=dict)  # table name -> rows loaded
    files: int = 0
    rows: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.warnings

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok, "rows_per_second": self.rows_per_second}

    def report(self) -> str:
        lines = [
            f"loaded {self.rows} rows from {self.files} file(s) into {len(self.tables)} table(s) of "
            f"`{self.database}` in {self.seconds:.2f} s ({self.rows_per_second:,.0f} rows/s)"
        ]
        lines += [f"  WARNING {w}" for w in self.warnings[:20]]
        return "\n".join(lines)


def _load_file(cur, path: Path, table: str, columns: list[str]) -> tuple[int, list[str]]:
    col_list = ", ".join(ident(c) for c in columns)
    sql = (
        f"LOAD DATA LOCAL INFILE %s INTO TABLE {ident(table)} CHARACTER SET utf8mb4 "
        f"FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n' ({col_list})"
    )
    cur.execute(sql, (str(path),))
    rows = cur.rowcount
    cur.execute("SHOW WARNINGS LIMIT 5")
    warnings = [f"{table} <- {path.name}: {w[2]}" for w in cur.fetchall()]
    return rows, warnings


@contextlib.contextmanager
def _loading(db: DbConfig, database: str, what: str) -> Iterator[Any]:
    """A cursor on ``database``, dropped and recreated first. A MariaDB error becomes one
    DatabaseError naming what was being loaded; the connection is closed in every case."""
    import pymysql

    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {ident(database)}")
            cur.execute(f"CREATE DATABASE {ident(database)}")
            cur.execute(f"USE {ident(database)}")
            yield cur
    except pymysql.MySQLError as err:
        raise DatabaseError(f"loading {what} database {database}: {err.args[-1]}") from err
    finally:
        conn.close()


def load_reference(db: DbConfig, schema: CatalogSchema, converted_dir: str | Path, database: str | None = None, progress: bool = False) -> LoadResult:
    """All rows of every table into plain tables of database ``<db>`` (recreated)."""
    from tqdm import tqdm

    database = database or schema.database
    res = LoadResult(database)
    t0 = time.monotonic()
    with _loading(db, database, "reference") as cur, \
            tempfile.TemporaryDirectory(prefix="qserv-ref-") as tmp:
        for table in schema.tables:
            cur.execute(create_table_sql(table, table.name, chunked=False))
            pf = pq.ParquetFile(str(Path(converted_dir) / f"{table.name}.parquet"))
            res.tables[table.name] = 0
            for i, batch in enumerate(tqdm(pf.iter_batches(batch_size=500_000), desc=f"load {table.name}", disable=not progress)):
                csv = Path(tmp) / f"{table.name}_{i}.csv"
                csv.write_bytes(_csv_bytes(pa.Table.from_batches([batch])))
                n, w = _load_file(cur, csv, table.name, table.column_names())
                csv.unlink()
                res.tables[table.name] += n
                res.rows += n
                res.files += 1
                res.warnings += w
    res.seconds = time.monotonic() - t0
    return res


def chunk_table_name(table: str, chunk: int, overlap: bool = False) -> str:
    return f"{table}FullOverlap_{chunk}" if overlap else f"{table}_{chunk}"


CHUNK_TABLE_RE = re.compile(r"^(?P<table>[A-Za-z][A-Za-z0-9]*?)(?P<ov>FullOverlap)?_(?P<chunk>\d+)$")


def load_chunked(db: DbConfig, schema: CatalogSchema, partition_dir: str | Path, database: str | None = None, progress: bool = False) -> LoadResult:
    """Every chunk file of every partitioned table into its own table of ``<db>_chunks`` (recreated).

    Tables are created from the chunk files present on disk, as a worker would hold them: a chunk
    file that is missing means a chunk table that is missing, which ``verify`` will notice.
    """
    from tqdm import tqdm

    database = database or f"{schema.database}_chunks"
    res = LoadResult(database)
    t0 = time.monotonic()
    with _loading(db, database, "chunked") as cur:
        for table in schema.tables:
            tdir = Path(partition_dir) / table.name
            summary = read_summary(tdir)
            columns = summary.columns
            files = sorted(tdir.glob("chunk_*.txt"))
            res.tables[table.name] = 0
            for path in tqdm(files, desc=f"load {table.name} chunks", unit="file", disable=not progress):
                m = re.match(r"^chunk_(\d+)(_overlap)?\.txt$", path.name)
                if not m:
                    continue
                chunk, overlap = int(m.group(1)), bool(m.group(2))
                name = chunk_table_name(table.name, chunk, overlap)
                cur.execute(create_table_sql(table, name, chunked=True))
                n, w = _load_file(cur, path, name, columns)
                if not overlap:
                    res.tables[table.name] += n
                res.rows += n
                res.files += 1
                res.warnings += w
            # Qserv workers hold an (empty) overlap table for every chunk of a director.
            if table.is_director:
                cur.execute("SHOW TABLES")
                present = {r[0] for r in cur.fetchall()}
                for name in sorted(present):
                    mm = CHUNK_TABLE_RE.match(name)
                    if mm and mm.group("table") == table.name and not mm.group("ov"):
                        ov = chunk_table_name(table.name, int(mm.group("chunk")), True)
                        if ov not in present:
                            cur.execute(create_table_sql(table, ov, chunked=True))
    res.seconds = time.monotonic() - t0
    return res
