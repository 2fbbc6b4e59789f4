"""SQLite backend of the catalog store: the embedded default, in WAL mode.

WAL lets the HTTP threads read while the engine writes; ``BEGIN IMMEDIATE`` takes the write lock
up front so two writers never deadlock on a lock upgrade; ``synchronous=NORMAL`` in WAL mode keeps
every committed transaction across a process crash (SIGKILL), which is the failure we test.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from archive.catalog_sql import Dialect, SqlCatalog


class SqliteCatalog(SqlCatalog):
    backend = "sqlite"
    dialect = Dialect(name="sqlite", path_type="TEXT")

    def __init__(self, path: str):
        self.path = path
        super().__init__()

    def _connect(self) -> Any:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA foreign_keys=OFF")
        # a 256 MiB page cache: random-key index inserts (file ids) stay in memory at 1e6+ files
        conn.execute("PRAGMA cache_size=-262144")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def backup(self, dest: str) -> None:
        """Consistent online copy (SQLite's backup API), safe while the server runs."""
        target = sqlite3.connect(dest)
        try:
            self._conn().backup(target)
        finally:
            target.close()
