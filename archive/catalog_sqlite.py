"""SQLite backend of the catalog store: the embedded default, in WAL mode.

WAL lets the HTTP threads read while the engine writes; ``BEGIN IMMEDIATE`` takes the write lock
up front so two writers never deadlock on a lock upgrade; ``synchronous=NORMAL`` in WAL mode keeps
every committed transaction across a process crash (SIGKILL), which is the failure we test.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from archive.catalog_sql import Dialect, SqlCatalog


def _use_wal(conn: Any, budget: float = 60.0) -> None:
    """Switch the file to WAL, which several processes opening a new catalog at once all try.

    Converting the journal needs exclusive access and SQLite does not run the busy handler for it:
    the losers of that race got "database is locked" at once (39 of 800 opens of a fresh file by 8
    processes, measured here), whatever busy_timeout says. WAL is a property of the file, so the mode
    is read first (after the first open nothing is converted and no lock is taken); otherwise the
    switch is retried with backoff within ``budget`` seconds, and a mode another process finished
    meanwhile counts as done.
    """
    deadline = time.monotonic() + budget
    delay = 0.005
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            if str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower() == "wal":
                return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) and "busy" not in str(err):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(f"could not switch the catalog to WAL within {budget:.0f} s: database is locked")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


class SqliteCatalog(SqlCatalog):
    backend = "sqlite"
    dialect = Dialect(name="sqlite", path_type="TEXT")

    def __init__(self, path: str):
        self.path = path
        super().__init__()

    def _connect(self) -> Any:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                               check_same_thread=False)
        _use_wal(conn)
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
