"""PostgreSQL backend of the catalog store (psycopg 3), for catalogs that outgrow one machine.

Same schema and queries as SQLite (``catalog_sql``); paths use the "C" collation so that prefix
ranges compare bytes, whatever the database's default locale.
"""

from __future__ import annotations

from typing import Any

import psycopg

from archive.catalog_sql import Dialect, SqlCatalog


class PostgresCatalog(SqlCatalog):
    backend = "postgresql"
    dialect = Dialect(name="postgresql", path_type='TEXT COLLATE "C"', placeholder="%s")

    def __init__(self, dsn: str):
        self.dsn = dsn
        super().__init__()

    def _connect(self) -> Any:
        return psycopg.connect(self.dsn, autocommit=True)

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def _many(self, sql: str, rows: Any) -> None:
        rows = list(rows)
        if rows:
            with self._conn().cursor() as cur:
                cur.executemany(self._sql(sql), rows)
