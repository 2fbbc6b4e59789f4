"""One SQL implementation of :class:`~archive.catalog.CatalogStore` for SQLite and PostgreSQL.

Why shared: the schema and every query are plain SQL that both engines run; a backend only
supplies a per-thread DB-API connection, its transaction start, and a few type names
(``Dialect``). Queries are written with ``?`` placeholders and translated for psycopg.
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from archive.catalog import (
    DirEntry,
    DiskReplica,
    FileEntry,
    LogRecord,
    Product,
    Recall,
    SearchQuery,
    StageFile,
    StageRequest,
    TapeReplica,
)
from archive.errors import AlreadyExists, ConfigError, Conflict, NotFound
from archive.paths import ancestors, parent_of


@dataclass(frozen=True)
class Dialect:
    name: str
    path_type: str  # text type for paths: binary ordering makes prefix ranges work
    float_type: str = "DOUBLE PRECISION"
    placeholder: str = "?"
    keyed_table: str = ""  # SQLite: " WITHOUT ROWID" (one B-tree fewer per text-keyed table)


def _tables_v1(d: Dialect) -> list[str]:
    """Version 1: the catalog as first released (namespace, replicas, products, staging, log)."""
    P, F = d.path_type, d.float_type
    return [
        f"""CREATE TABLE files (
            file_id TEXT PRIMARY KEY, path {P} NOT NULL UNIQUE, parent {P} NOT NULL,
            size BIGINT NOT NULL, adler32 TEXT NOT NULL, sha256 TEXT NOT NULL,
            owner TEXT NOT NULL, created {F} NOT NULL, modified {F} NOT NULL, seq BIGINT NOT NULL)
            {d.keyed_table}""",
        "CREATE INDEX files_parent ON files(parent)",
        f"""CREATE TABLE dirs (
            path {P} PRIMARY KEY, parent {P} NOT NULL, owner TEXT NOT NULL, created {F} NOT NULL)""",
        "CREATE INDEX dirs_parent ON dirs(parent)",
        f"""CREATE TABLE disk_replicas (
            file_id TEXT PRIMARY KEY, size BIGINT NOT NULL, created {F} NOT NULL,
            last_access {F} NOT NULL)""",
        """CREATE TABLE tape_replicas (
            file_id TEXT NOT NULL, copy_no INTEGER NOT NULL, pool TEXT NOT NULL, tape TEXT NOT NULL,
            fseq INTEGER NOT NULL, block BIGINT NOT NULL, "offset" BIGINT NOT NULL,
            record_size BIGINT NOT NULL, PRIMARY KEY (file_id, copy_no))""",
        "CREATE INDEX tape_replicas_tape ON tape_replicas(tape, fseq)",
        f"""CREATE TABLE products (
            file_id TEXT PRIMARY KEY, telescope TEXT, instrument TEXT, object TEXT,
            ra {F}, dec {F}, date_obs TEXT, t_obs {F}, exptime {F}, project TEXT,
            observation TEXT, product_type TEXT, extra TEXT, zone INTEGER){d.keyed_table}""",
        "CREATE INDEX products_zone ON products(zone, ra)",
        "CREATE INDEX products_project ON products(project)",
        "CREATE INDEX products_obs ON products(observation)",
        "CREATE INDEX products_t ON products(t_obs)",
        f"""CREATE TABLE stage_requests (
            request_id TEXT PRIMARY KEY, owner TEXT NOT NULL, created {F} NOT NULL,
            started {F}, completed {F})""",
        f"""CREATE TABLE stage_files (
            request_id TEXT NOT NULL, path {P} NOT NULL, file_id TEXT, state TEXT NOT NULL,
            error TEXT, lifetime {F} NOT NULL, finished {F}, PRIMARY KEY (request_id, path))""",
        "CREATE INDEX stage_files_file ON stage_files(file_id, state)",
        f"""CREATE TABLE recalls (
            file_id TEXT PRIMARY KEY, requested {F} NOT NULL, bad_tapes TEXT NOT NULL,
            attempts INTEGER NOT NULL, state TEXT NOT NULL)""",
        f"""CREATE TABLE pins (
            file_id TEXT NOT NULL, request_id TEXT NOT NULL, expires {F} NOT NULL,
            PRIMARY KEY (file_id, request_id))""",
        f"""CREATE TABLE tape_log (
            seq BIGINT PRIMARY KEY, kind TEXT NOT NULL, path {P} NOT NULL, target {P} NOT NULL,
            at {F} NOT NULL, owner TEXT NOT NULL)""",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO counters(name, value) VALUES ('seq', 0)",
        "INSERT INTO dirs(path, parent, owner, created) VALUES ('/', '/', 'root', 0)",
    ]


def _dead_props_v2(d: Dialect) -> list[str]:
    """Version 2: WebDAV dead properties (PROPPATCH): one row per (resource path, namespace,
    name); ``xml`` is the whole property element as the client sent it, namespaces declared."""
    return [
        f"""CREATE TABLE dead_props (
            path {d.path_type} NOT NULL, ns TEXT NOT NULL, name TEXT NOT NULL, xml TEXT NOT NULL,
            PRIMARY KEY (path, ns, name))""",
    ]


# The schema's history, oldest first: version N is MIGRATIONS[N - 1]. A catalog records the
# version it is at (table schema_version); opening it applies the missing steps, each in its own
# transaction together with the new version number, so a crash mid-upgrade leaves the catalog at
# the last whole version. Append new steps here; never edit a released one.
MIGRATIONS = [_tables_v1, _dead_props_v2]
SCHEMA_VERSION = len(MIGRATIONS)
SCHEMA_LOCK_KEY = 0x4C544153  # PostgreSQL advisory lock held while a step is checked or applied


def schema(d: Dialect) -> list[str]:
    """Every statement of the current schema (the migrations in order)."""
    return [stmt for step in MIGRATIONS for stmt in step(d)]


class SchemaTooNew(ConfigError):
    """The catalog was written by a newer release than this one (exit 2: usage/config)."""


_WRITES = ("INSERT", "UPDATE", "DELETE")  # how the statements that write begin, in this file
_FILE_COLS = "file_id, path, size, adler32, sha256, owner, created, modified, seq"
_PRODUCT_COLS = ("telescope", "instrument", "object", "ra", "dec", "date_obs", "t_obs", "exptime",
                 "project", "observation", "product_type")


ZONE_DEG = 0.5  # declination zone height: a cone is a few (zone, ra-range) index scans


def zone_of(dec: float | None) -> int | None:
    return None if dec is None else int(math.floor((dec + 90.0) / ZONE_DEG))


def _file(row: Any) -> FileEntry:
    return FileEntry(row[0], row[1], int(row[2]), row[3], row[4], row[5], float(row[6]),
                     float(row[7]), int(row[8]))


def _prefix_bounds(prefix: str) -> tuple[str, str]:
    """Range [lo, hi) of paths strictly inside ``prefix`` (binary ordering)."""
    base = prefix.rstrip("/") + "/"
    return base, base[:-1] + chr(ord("/") + 1)


class _ThreadToken:
    """A weak-referenceable marker kept in a thread's local storage (connections are not)."""


class SqlCatalog:
    """Shared implementation; subclasses provide ``_connect()``, ``_begin()`` and ``dialect``."""

    backend = "sql"
    dialect: Dialect

    def __init__(self) -> None:
        self._fresh_process_state()
        # SQLite has one writer at a time, and a connection that finds the write lock taken
        # polls for it with sleeps that grow to 100 ms (its busy handler): under 50 clients
        # PUTs and stage requests queued there for most of their p95. This process's writers
        # queue on a lock instead and get the database as soon as the one before commits; the
        # busy handler is left for other processes (the CLI). PostgreSQL writes concurrently.
        self._writer = threading.Lock() if self.dialect.name == "sqlite" else None
        self._init_schema()

    def _fresh_process_state(self) -> None:
        """Connections and their locks, owned by this process.

        A catalog carried across ``fork()`` must not use, close or lock what the parent had: the
        child inherits the parent's connections (SQLite and libpq both say never to use one
        across a fork) and the parent's locks in whatever state another thread of the parent had
        them, which the child has no thread to release. A forked child hung here for good: a
        garbage collection right after the fork finalised a parent thread's connection token and
        waited on ``_conns_lock`` (fresh-clone test run, 2026-12-03). The child starts afresh.
        """
        self._conns_lock = threading.Lock()
        self._live: set[Any] = set()  # every open connection of this process, for close()
        if getattr(self, "_writer", None) is not None:
            self._writer = threading.Lock()
        # dropping the parent's thread-local storage finalises its connection tokens: _release
        # must still see the parent's pid then, and leave those connections alone
        self._local = threading.local()
        self._pid = os.getpid()

    # -- connection and transactions --------------------------------------------------------
    def _connect(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def _conn(self) -> Any:
        """This thread's connection. It is closed when the thread ends: the HTTP server runs a
        thread per client connection, and keeping them all open leaked two file descriptors per
        client until the process hit its limit (measured: 1,200 one-shot TLS clients, then every
        answer was 500 'unable to open database file')."""
        if self._pid != os.getpid():
            self._fresh_process_state()  # a forked child: the parent's connections are not ours
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            self._local.depth = 0
            token = _ThreadToken()  # lives exactly as long as this thread's local storage
            self._local.token = token
            with self._conns_lock:
                self._live.add(conn)
            weakref.finalize(token, self._release, conn)
        return conn

    def _release(self, conn: Any) -> None:
        if self._pid != os.getpid():
            return  # a parent's connection, finalised in a forked child: the parent's to close
        with self._conns_lock:
            if conn not in self._live:
                return
            self._live.discard(conn)
        with contextlib.suppress(Exception):
            conn.close()

    def _sql(self, sql: str) -> str:
        return sql if self.dialect.placeholder == "?" else sql.replace("?", "%s")

    def _x(self, sql: str, params: tuple | list = ()) -> Any:
        conn = self._conn()
        if self._writer is not None and not self._local.depth and sql[:6] in _WRITES:
            with self._writer:  # a write outside a transaction is one of its own
                return conn.execute(self._sql(sql), params)
        return conn.execute(self._sql(sql), params)

    def _many(self, sql: str, rows: Iterable[tuple]) -> None:
        conn = self._conn()
        cur = conn.cursor()
        cur.executemany(self._sql(sql), list(rows))

    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        """A transaction; nested calls join the outer one."""
        conn = self._conn()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        writer = self._writer
        if writer is not None:
            writer.acquire()
        try:
            self._begin(conn)
            self._local.depth = 1
            try:
                yield
            except BaseException:
                self._local.depth = 0
                conn.execute("ROLLBACK")
                raise
            self._local.depth = 0
            conn.execute("COMMIT")
        finally:
            if writer is not None:
                writer.release()

    def _init_schema(self) -> None:
        """Bring the catalog to SCHEMA_VERSION, one recorded migration step at a time."""
        while True:
            # one step per transaction; the version is read again inside it under the write lock
            # (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock, since two
            # concurrent CREATE TABLE IF NOT EXISTS collide there), so two processes opening a
            # catalog at once never apply a step twice
            with self.tx():
                if self.dialect.name == "postgresql":
                    self._x("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_KEY,))
                self._x("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = self._x("SELECT max(version) FROM schema_version").fetchone()
                version = int(row[0]) if row and row[0] is not None else self._unversioned()
                if version > SCHEMA_VERSION:
                    raise SchemaTooNew(
                        f"the catalog is at schema version {version}; this release knows versions "
                        f"up to {SCHEMA_VERSION}: upgrade the archive software")
                if version == SCHEMA_VERSION:
                    return
                for stmt in MIGRATIONS[version](self.dialect):
                    self._x(stmt)
                self._x("DELETE FROM schema_version")
                self._x("INSERT INTO schema_version(version) VALUES (?)", (version + 1,))

    def _unversioned(self) -> int:
        """The version of a catalog from before schema_version existed (0: an empty database),
        told by the tables each step created."""
        version = 0
        for table, n in (("files", 1), ("dead_props", 2)):
            if self._has_table(table):
                version = n
        if version:
            self._x("INSERT INTO schema_version(version) VALUES (?)", (version,))
        return version

    def _has_table(self, name: str) -> bool:
        if self.dialect.name == "sqlite":
            q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            q = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
        return self._x(q, (name,)).fetchone() is not None

    def schema_version(self) -> int:
        row = self._x("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        if self._pid != os.getpid():
            self._fresh_process_state()  # a forked child has none of its own yet
            return
        with self._conns_lock:
            live, self._live = list(self._live), set()
        for conn in live:
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()

    def next_seq(self, count: int = 1) -> int:
        """Reserve ``count`` global sequence numbers; returns the first."""
        with self.tx():
            self._x("UPDATE counters SET value = value + ? WHERE name = 'seq'", (count,))
            (value,) = self._x("SELECT value FROM counters WHERE name = 'seq'").fetchone()
        return int(value) - count + 1

    # -- namespace --------------------------------------------------------------------------
    def get_file(self, path: str) -> FileEntry | None:
        row = self._x(f"SELECT {_FILE_COLS} FROM files WHERE path = ?", (path,)).fetchone()
        return _file(row) if row else None

    def get_file_by_id(self, file_id: str) -> FileEntry | None:
        row = self._x(f"SELECT {_FILE_COLS} FROM files WHERE file_id = ?", (file_id,)).fetchone()
        return _file(row) if row else None

    def get_dir(self, path: str) -> DirEntry | None:
        row = self._x("SELECT path, owner, created FROM dirs WHERE path = ?", (path,)).fetchone()
        return DirEntry(row[0], row[1], float(row[2])) if row else None

    def _log(self, kind: str, path: str, target: str, now: float, owner: str) -> None:
        seq = self.next_seq()
        self._x("INSERT INTO tape_log(seq, kind, path, target, at, owner) VALUES (?,?,?,?,?,?)",
                (seq, kind, path, target, now, owner))

    def make_dirs(self, path: str, owner: str, now: float, log: bool = True) -> None:
        """Create ``path`` and its missing ancestors (``mkdir -p``); a file in the way is a 409."""
        if path == "/" or self.get_dir(path):
            return  # a collection exists only with its ancestors: nothing to create
        with self.tx():
            for p in [*ancestors(path), path]:
                if self.get_dir(p):
                    continue
                if self.get_file(p):
                    raise Conflict(p, "a file exists where a collection is needed")
                self._x("INSERT INTO dirs(path, parent, owner, created) VALUES (?,?,?,?)",
                        (p, parent_of(p), owner, now))
                if log:
                    self._log("mkdir", p, "", now, owner)

    def _removable_dir(self, path: str) -> tuple[str, str]:
        """The key bounds of what lies below ``path``, a collection that may be removed."""
        if not self.get_dir(path):
            raise NotFound(path)
        if path == "/":
            raise Conflict(path, "the root collection cannot be removed")
        return _prefix_bounds(path)

    def remove_dir(self, path: str, now: float) -> None:
        with self.tx():
            lo, hi = self._removable_dir(path)
            n = self._x("SELECT COUNT(*) FROM files WHERE path >= ? AND path < ?", (lo, hi)).fetchone()[0]
            m = self._x("SELECT COUNT(*) FROM dirs WHERE path >= ? AND path < ?", (lo, hi)).fetchone()[0]
            if n or m:
                raise Conflict(path, "collection is not empty")
            self._x("DELETE FROM dirs WHERE path = ?", (path,))
            self._x("DELETE FROM dead_props WHERE path = ?", (path,))
            self._log("rmdir", path, "", now, "")

    def remove_tree(self, path: str, now: float) -> list[FileEntry]:
        """Delete a collection and everything below it in one transaction (WebDAV DELETE,
        RFC 4918 9.6.1); returns the deleted files. The tape log gets a ``delete`` per file and
        an ``rmdir`` per collection, deepest first, exactly as one-by-one deletion would."""
        with self.tx():
            lo, hi = self._removable_dir(path)
            files = [_file(r) for r in self._x(
                f"SELECT {_FILE_COLS} FROM files WHERE path >= ? AND path < ? ORDER BY path",
                (lo, hi)).fetchall()]
            for f in files:
                self.delete_file(f.path, now)
            dirs = [r[0] for r in self._x("SELECT path FROM dirs WHERE path >= ? AND path < ?",
                                          (lo, hi)).fetchall()]
            for d in sorted(dirs, key=lambda p: (-p.count("/"), p)) + [path]:
                self._x("DELETE FROM dirs WHERE path = ?", (d,))
                self._x("DELETE FROM dead_props WHERE path = ?", (d,))
                self._log("rmdir", d, "", now, "")
        return files

    # -- WebDAV dead properties ---------------------------------------------------------------
    def get_props(self, path: str) -> dict[tuple[str, str], str]:
        return {(r[0], r[1]): r[2] for r in self._x(
            "SELECT ns, name, xml FROM dead_props WHERE path = ? ORDER BY ns, name", (path,))}

    def patch_props(self, path: str, ops: list[tuple[str, str, str, str | None]]) -> None:
        """Apply PROPPATCH ``(op, ns, name, xml)`` in order, all or nothing."""
        with self.tx():
            for op, ns, name, xml in ops:
                self._x("DELETE FROM dead_props WHERE path = ? AND ns = ? AND name = ?",
                        (path, ns, name))
                if op == "set":
                    self._x("INSERT INTO dead_props(path, ns, name, xml) VALUES (?,?,?,?)",
                            (path, ns, name, xml))

    def copy_props(self, src: str, dst: str) -> None:
        with self.tx():
            self._x("DELETE FROM dead_props WHERE path = ?", (dst,))
            self._x("INSERT INTO dead_props(path, ns, name, xml) "
                    "SELECT ?, ns, name, xml FROM dead_props WHERE path = ?", (dst, src))

    def replica_flags(self, parent: str | None = None, file_id: str | None = None
                      ) -> dict[str, tuple[bool, bool]]:
        """``file_id -> (on disk, on tape)`` for every file directly in the collection
        ``parent``, or for the one file ``file_id``, in one query (a PROPFIND Depth 1 listing
        asked two per member before)."""
        where, arg = ("f.parent = ?", parent) if file_id is None else ("f.file_id = ?", file_id)
        return {r[0]: (bool(r[1]), bool(r[2])) for r in self._x(
            "SELECT f.file_id, "
            "EXISTS (SELECT 1 FROM disk_replicas d WHERE d.file_id = f.file_id), "
            "EXISTS (SELECT 1 FROM tape_replicas t WHERE t.file_id = f.file_id) "
            f"FROM files f WHERE {where}", (arg,)).fetchall()}

    def listing_props(self, path: str) -> dict[str, dict[tuple[str, str], str]]:
        """The dead properties of ``path`` and of every collection and file directly in it,
        ``path -> {(ns, name): xml}``, in one query (each key ordered as :meth:`get_props`)."""
        out: dict[str, dict[tuple[str, str], str]] = {}
        for r in self._x(
                "SELECT path, ns, name, xml FROM dead_props WHERE path = ? "
                "UNION ALL SELECT p.path, p.ns, p.name, p.xml FROM dead_props p "
                "JOIN files f ON f.path = p.path WHERE f.parent = ? "
                "UNION ALL SELECT p.path, p.ns, p.name, p.xml FROM dead_props p "
                "JOIN dirs d ON d.path = p.path WHERE d.parent = ? AND d.path <> '/' "
                "ORDER BY 1, 2, 3", (path, path, path)).fetchall():
            out.setdefault(r[0], {})[(r[1], r[2])] = r[3]
        return out

    def list_dir(self, path: str) -> tuple[list[DirEntry], list[FileEntry]]:
        dirs = [DirEntry(r[0], r[1], float(r[2])) for r in self._x(
            "SELECT path, owner, created FROM dirs WHERE parent = ? AND path <> '/' ORDER BY path",
            (path,)).fetchall()]
        files = [_file(r) for r in self._x(
            f"SELECT {_FILE_COLS} FROM files WHERE parent = ? ORDER BY path", (path,)).fetchall()]
        return dirs, files

    def _put_product(self, p: Product) -> None:
        cols = ("file_id", *_PRODUCT_COLS, "extra", "zone")
        vals = (p.file_id, *(getattr(p, c) for c in _PRODUCT_COLS), json.dumps(p.extra),
                zone_of(p.dec))
        self._x("DELETE FROM products WHERE file_id = ?", (p.file_id,))
        self._x(f"INSERT INTO products({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                vals)

    def set_product(self, file_id: str, product: Product) -> None:
        """Record (or replace) the product metadata of a file that exists."""
        with self.tx():
            if self._x("SELECT 1 FROM files WHERE file_id = ?", (file_id,)).fetchone() is None:
                raise NotFound(file_id)
            product.file_id = file_id
            self._put_product(product)

    def _drop_file_rows(self, file_id: str) -> None:
        for table in ("files", "disk_replicas", "tape_replicas", "products", "recalls", "pins"):
            self._x(f"DELETE FROM {table} WHERE file_id = ?", (file_id,))

    def commit_file(self, entry: FileEntry, disk: bool, product: Product | None) -> str | None:
        """Insert (or replace) the file at ``entry.path``; returns the replaced file id, if any.

        Parents are created. The disk replica and product metadata are recorded in the same
        transaction, so a crash leaves either the old state or the whole new file.
        """
        with self.tx():
            if self.get_dir(entry.path):
                raise AlreadyExists(entry.path)
            self.make_dirs(parent_of(entry.path), entry.owner, entry.modified)
            old = self.get_file(entry.path)
            if old:
                self._drop_file_rows(old.file_id)
            if not entry.seq:
                entry.seq = self.next_seq()
            self._x(f"INSERT INTO files({_FILE_COLS}, parent) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (entry.file_id, entry.path, entry.size, entry.adler32, entry.sha256,
                     entry.owner, entry.created, entry.modified, entry.seq,
                     parent_of(entry.path)))
            if disk:
                self.add_disk_replica(entry.file_id, entry.size, entry.modified)
            if product:
                product.file_id = entry.file_id
                self._put_product(product)
        return old.file_id if old else None

    def delete_file(self, path: str, now: float) -> FileEntry | None:
        with self.tx():
            old = self.get_file(path)
            if not old:
                return None
            self._drop_file_rows(old.file_id)
            self._x("DELETE FROM dead_props WHERE path = ?", (path,))
            self._x("UPDATE stage_files SET state = 'FAILED', error = 'file deleted', finished = ? "
                    "WHERE file_id = ? AND state IN ('SUBMITTED', 'STARTED')", (now, old.file_id))
            self._log("delete", path, "", now, "")
        return old

    def move(self, src: str, dst: str, now: float) -> None:
        """Rename a file or a whole collection (catalog only: storage is keyed by file id)."""
        with self.tx():
            if self.get_file(dst) or self.get_dir(dst):
                raise AlreadyExists(dst)
            f = self.get_file(src)
            if f:
                self.make_dirs(parent_of(dst), f.owner, now)
                self._x("UPDATE files SET path = ?, parent = ?, modified = ? WHERE file_id = ?",
                        (dst, parent_of(dst), now, f.file_id))
                self._x("UPDATE dead_props SET path = ? WHERE path = ?", (dst, src))
            elif self.get_dir(src) and src != "/":
                if dst.startswith(src + "/"):
                    raise Conflict(dst, "cannot move a collection into itself")
                self.make_dirs(parent_of(dst), "", now)
                lo, hi = _prefix_bounds(src)
                for table in ("files", "dirs"):
                    rows = self._x(f"SELECT path FROM {table} WHERE path = ? OR (path >= ? AND path < ?)",
                                   (src, lo, hi)).fetchall()
                    for (p,) in rows:
                        new = dst + p[len(src):]
                        self._x(f"UPDATE {table} SET path = ?, parent = ? WHERE path = ?",
                                (new, parent_of(new), p))
                        self._x("UPDATE dead_props SET path = ? WHERE path = ?", (new, p))
            else:
                raise NotFound(src)
            self._log("move", src, dst, now, "")

    def bulk_insert(self, entries: Iterable[tuple[FileEntry, Product | None]]) -> int:
        """Fast path for catalog loads (benchmarks, rebuilds): no checks, one transaction."""
        files, prods = [], []
        product_values = operator.attrgetter(*_PRODUCT_COLS)  # one C call per product
        for e, p in entries:
            files.append((e.file_id, e.path, e.size, e.adler32, e.sha256, e.owner, e.created,
                          e.modified, e.seq, parent_of(e.path)))
            if p:
                prods.append((e.file_id, *product_values(p),
                              json.dumps(p.extra) if p.extra else None, zone_of(p.dec)))
        first = operator.itemgetter(0)
        files.sort(key=first)  # key order: B-tree inserts stay local
        prods.sort(key=first)
        with self.tx():
            self._many(f"INSERT INTO files({_FILE_COLS}, parent) VALUES (?,?,?,?,?,?,?,?,?,?)", files)
            if prods:
                cols = ("file_id", *_PRODUCT_COLS, "extra", "zone")
                self._many(f"INSERT INTO products({', '.join(cols)}) "
                           f"VALUES ({', '.join('?' * len(cols))})", prods)
        return len(files)

    def all_file_ids(self) -> set[str]:
        return {r[0] for r in self._x("SELECT file_id FROM files").fetchall()}

    def count_files(self) -> int:
        return int(self._x("SELECT COUNT(*) FROM files").fetchone()[0])

    def iter_files(self) -> Iterator[FileEntry]:
        for row in self._x(f"SELECT {_FILE_COLS} FROM files ORDER BY path").fetchall():
            yield _file(row)

    # -- replicas ---------------------------------------------------------------------------
    def disk_replica(self, file_id: str) -> DiskReplica | None:
        row = self._x("SELECT file_id, size, created, last_access FROM disk_replicas "
                      "WHERE file_id = ?", (file_id,)).fetchone()
        return DiskReplica(row[0], int(row[1]), float(row[2]), float(row[3])) if row else None

    def disk_replicas(self) -> list[DiskReplica]:
        return [DiskReplica(r[0], int(r[1]), float(r[2]), float(r[3])) for r in self._x(
            "SELECT file_id, size, created, last_access FROM disk_replicas").fetchall()]

    def add_disk_replica(self, file_id: str, size: int, now: float) -> None:
        self._x("INSERT INTO disk_replicas(file_id, size, created, last_access) VALUES (?,?,?,?) "
                "ON CONFLICT (file_id) DO UPDATE SET last_access = excluded.last_access",
                (file_id, size, now, now))

    def remove_disk_replica(self, file_id: str) -> None:
        self._x("DELETE FROM disk_replicas WHERE file_id = ?", (file_id,))

    def touch_disk(self, file_id: str, now: float) -> None:
        self._x("UPDATE disk_replicas SET last_access = ? WHERE file_id = ?", (now, file_id))

    def touch_disk_many(self, accessed: Iterable[tuple[str, float]]) -> None:
        """Record many last-access times ``(file_id, when)`` in one transaction (the engine
        batches the GETs' accesses). A time never moves back: a replica recalled again after
        the access was noted keeps its newer time."""
        rows = sorted((when, fid, when) for fid, when in accessed)
        if rows:
            with self.tx():
                self._many("UPDATE disk_replicas SET last_access = ? "
                           "WHERE file_id = ? AND last_access < ?", rows)

    def tape_replicas(self, file_id: str) -> list[TapeReplica]:
        return [TapeReplica(r[0], int(r[1]), r[2], r[3], int(r[4]), int(r[5]), int(r[6]), int(r[7]))
                for r in self._x('SELECT file_id, copy_no, pool, tape, fseq, block, "offset", '
                                 "record_size FROM tape_replicas WHERE file_id = ? ORDER BY copy_no",
                                 (file_id,)).fetchall()]

    def add_tape_replica(self, rep: TapeReplica) -> None:
        self._x('INSERT INTO tape_replicas(file_id, copy_no, pool, tape, fseq, block, "offset", '
                "record_size) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (file_id, copy_no) DO UPDATE SET "
                'pool = excluded.pool, tape = excluded.tape, fseq = excluded.fseq, '
                'block = excluded.block, "offset" = excluded."offset", '
                "record_size = excluded.record_size",
                (rep.file_id, rep.copy_no, rep.pool, rep.tape, rep.fseq, rep.block, rep.offset,
                 rep.record_size))

    def migration_candidates(self, copies: int) -> list[tuple[FileEntry, list[int]]]:
        """Files on disk with fewer than ``copies`` tape copies, oldest first, with copies held."""
        rows = self._x(
            f"SELECT {', '.join('f.' + c for c in _FILE_COLS.split(', '))} "
            "FROM files f JOIN disk_replicas d ON d.file_id = f.file_id "
            "WHERE (SELECT COUNT(*) FROM tape_replicas t WHERE t.file_id = f.file_id) < ? "
            "ORDER BY f.modified", (copies,)).fetchall()
        out = []
        for r in rows:
            f = _file(r)
            held = [] if copies == 1 else [int(x[0]) for x in self._x(
                "SELECT copy_no FROM tape_replicas WHERE file_id = ?", (f.file_id,)).fetchall()]
            out.append((f, held))
        return out

    def pending_log(self) -> list[LogRecord]:
        return [LogRecord(int(r[0]), r[1], r[2], r[3], float(r[4]), r[5]) for r in self._x(
            "SELECT seq, kind, path, target, at, owner FROM tape_log ORDER BY seq").fetchall()]

    def drop_log(self, seqs: list[int]) -> None:
        with self.tx():
            self._many("DELETE FROM tape_log WHERE seq = ?", [(s,) for s in seqs])

    # -- products and search ----------------------------------------------------------------
    def get_product(self, file_id: str) -> Product | None:
        row = self._x(f"SELECT {', '.join(_PRODUCT_COLS)}, extra FROM products WHERE file_id = ?",
                      (file_id,)).fetchone()
        if not row:
            return None
        kw = dict(zip(_PRODUCT_COLS, row[:-1], strict=True))
        return Product(file_id=file_id, extra=json.loads(row[-1]) if row[-1] else {}, **kw)

    def _search_sql(self, q: SearchQuery, after: str) -> tuple[str, list[Any], bool]:
        where: list[str] = []
        params: list[Any] = []
        prefix = q.path_prefix.rstrip("/") or "/"
        if prefix != "/":
            lo, hi = _prefix_bounds(prefix)
            where.append("(f.path = ? OR (f.path >= ? AND f.path < ?))")
            params += [prefix, lo, hi]
        if after:
            where.append("f.path > ?")
            params.append(after)
        product_filter = False
        for col in ("project", "observation", "instrument", "telescope", "object", "product_type"):
            value = getattr(q, col)
            if value is not None:
                where.append(f"p.{col} = ?")
                params.append(value)
                product_filter = True
        if q.time_min is not None:
            where.append("p.t_obs >= ?")
            params.append(q.time_min)
            product_filter = True
        if q.time_max is not None:
            where.append("p.t_obs <= ?")
            params.append(q.time_max)
            product_filter = True
        cone = q.ra is not None and q.dec is not None and q.radius is not None
        if cone:
            r = float(q.radius)
            dmin, dmax = max(-90.0, q.dec - r), min(90.0, q.dec + r)
            zones = range(zone_of(dmin), zone_of(dmax) + 1)
            where.append(f"p.zone IN ({', '.join(str(z) for z in zones)})")
            where.append("p.dec BETWEEN ? AND ?")
            params += [dmin, dmax]
            if dmax < 90 and dmin > -90:
                cosd = min(math.cos(math.radians(dmin)), math.cos(math.radians(dmax)))
                dra = r / max(cosd, 1e-9)
                if dra < 180:
                    lo_ra, hi_ra = (q.ra - dra) % 360, (q.ra + dra) % 360
                    where.append("p.ra BETWEEN ? AND ?" if lo_ra <= hi_ra
                                 else "(p.ra >= ? OR p.ra <= ?)")
                    params += [lo_ra, hi_ra]
        join = "JOIN" if (cone or product_filter) else "LEFT JOIN"
        sql = (f"SELECT {', '.join('f.' + c for c in _FILE_COLS.split(', '))}, "
               f"{', '.join('p.' + c for c in _PRODUCT_COLS)}, p.extra, p.file_id "
               f"FROM files f {join} products p ON p.file_id = f.file_id "
               + (f"WHERE {' AND '.join(where)} " if where else "")
               + "ORDER BY f.path LIMIT ?")
        return sql, params, cone

    def search(self, q: SearchQuery) -> list[tuple[FileEntry, Product | None]]:
        """Filtered, path-ordered, keyset-paged search; a cone is a dec/ra box refined exactly."""
        out: list[tuple[FileEntry, Product | None]] = []
        after = q.after
        while True:
            sql, params, cone = self._search_sql(q, after)
            batch = max(q.limit, 1) * (4 if cone else 1)
            rows = self._x(sql, (*params, batch)).fetchall()
            for row in rows:
                f = _file(row)
                prod = None
                if row[-1] is not None:
                    n = len(_PRODUCT_COLS)
                    kw = dict(zip(_PRODUCT_COLS, row[9:9 + n], strict=True))
                    extra = row[9 + n]
                    prod = Product(file_id=f.file_id, extra=json.loads(extra) if extra else {}, **kw)
                if cone and (prod is None or prod.ra is None or prod.dec is None
                             or _sep_deg(q.ra, q.dec, prod.ra, prod.dec) > q.radius):
                    continue
                out.append((f, prod))
                if len(out) >= q.limit:
                    return out
            if len(rows) < batch or not cone:
                return out
            after = _file(rows[-1]).path

    # -- staging, recalls, pins -------------------------------------------------------------
    def create_stage_request(self, req: StageRequest) -> None:
        with self.tx():
            self._x("INSERT INTO stage_requests(request_id, owner, created, started, completed) "
                    "VALUES (?,?,?,?,?)",
                    (req.request_id, req.owner, req.created, req.started, req.completed))
            self._many("INSERT INTO stage_files(request_id, path, file_id, state, error, lifetime, "
                       "finished) VALUES (?,?,?,?,?,?,?) ON CONFLICT (request_id, path) DO NOTHING",
                       [(req.request_id, f.path, f.file_id, f.state, f.error, f.lifetime,
                         f.finished) for f in req.files])

    def get_stage_request(self, request_id: str) -> StageRequest | None:
        row = self._x("SELECT request_id, owner, created, started, completed FROM stage_requests "
                      "WHERE request_id = ?", (request_id,)).fetchone()
        if not row:
            return None
        files = [StageFile(*r[:4], r[4], float(r[5]), r[6]) for r in self._x(
            "SELECT request_id, path, file_id, state, error, lifetime, finished FROM stage_files "
            "WHERE request_id = ? ORDER BY path", (request_id,)).fetchall()]
        return StageRequest(row[0], row[1], float(row[2]), row[3], row[4], files)

    def update_stage_files(self, request_id: str | None, file_id: str | None, state: str,
                           error: str | None, now: float, paths: list[str] | None = None,
                           only_states: tuple[str, ...] = ()) -> list[StageFile]:
        """Set ``state`` on matching stage files; returns the rows changed (before the change)."""
        where, params = [], []
        if request_id is not None:
            where.append("request_id = ?")
            params.append(request_id)
        if file_id is not None:
            where.append("file_id = ?")
            params.append(file_id)
        if only_states:
            where.append(f"state IN ({', '.join('?' * len(only_states))})")
            params += list(only_states)
        if paths is not None:
            if not paths:
                return []
            where.append(f"path IN ({', '.join('?' * len(paths))})")
            params += paths
        cond = " AND ".join(where) or "1=1"
        with self.tx():
            rows = [StageFile(*r[:4], r[4], float(r[5]), r[6]) for r in self._x(
                "SELECT request_id, path, file_id, state, error, lifetime, finished FROM stage_files "
                f"WHERE {cond}", params).fetchall()]
            terminal = state in ("COMPLETED", "FAILED", "CANCELLED")
            self._x(f"UPDATE stage_files SET state = ?, error = ?, finished = ? WHERE {cond}",
                    (state, error, now if terminal else None, *params))
        return rows

    def set_request_times(self, request_id: str, started: float | None,
                          completed: float | None) -> None:
        if started is not None:
            self._x("UPDATE stage_requests SET started = ? WHERE request_id = ? AND started IS NULL",
                    (started, request_id))
        if completed is not None:
            self._x("UPDATE stage_requests SET completed = ? WHERE request_id = ? "
                    "AND completed IS NULL", (completed, request_id))

    def delete_stage_request(self, request_id: str) -> None:
        with self.tx():
            self._x("DELETE FROM stage_files WHERE request_id = ?", (request_id,))
            self._x("DELETE FROM stage_requests WHERE request_id = ?", (request_id,))

    def open_stage_files(self) -> list[StageFile]:
        return [StageFile(*r[:4], r[4], float(r[5]), r[6]) for r in self._x(
            "SELECT request_id, path, file_id, state, error, lifetime, finished FROM stage_files "
            "WHERE state IN ('SUBMITTED', 'STARTED')").fetchall()]

    def enqueue_recall(self, file_id: str, now: float) -> None:
        self._x("INSERT INTO recalls(file_id, requested, bad_tapes, attempts, state) "
                "VALUES (?, ?, '', 0, 'queued') ON CONFLICT (file_id) DO NOTHING", (file_id, now))

    def _recall(self, r: Any) -> Recall:
        return Recall(r[0], float(r[1]), [t for t in r[2].split(",") if t], int(r[3]), r[4])

    def recalls(self, states: tuple[str, ...] = ("queued", "active")) -> list[Recall]:
        return [self._recall(r) for r in self._x(
            "SELECT file_id, requested, bad_tapes, attempts, state FROM recalls "
            f"WHERE state IN ({', '.join('?' * len(states))}) ORDER BY requested", states).fetchall()]

    def get_recall(self, file_id: str) -> Recall | None:
        r = self._x("SELECT file_id, requested, bad_tapes, attempts, state FROM recalls "
                    "WHERE file_id = ?", (file_id,)).fetchone()
        return self._recall(r) if r else None

    def update_recall(self, rec: Recall) -> None:
        self._x("UPDATE recalls SET bad_tapes = ?, attempts = ?, state = ? WHERE file_id = ?",
                (",".join(rec.bad_tapes), rec.attempts, rec.state, rec.file_id))

    def drop_recall(self, file_id: str) -> None:
        self._x("DELETE FROM recalls WHERE file_id = ?", (file_id,))

    def add_pin(self, file_id: str, request_id: str, expires: float) -> None:
        self._x("INSERT INTO pins(file_id, request_id, expires) VALUES (?,?,?) "
                "ON CONFLICT (file_id, request_id) DO UPDATE SET expires = excluded.expires",
                (file_id, request_id, expires))

    def release_pins(self, request_id: str | None, file_ids: list[str] | None) -> int:
        where, params = [], []
        if request_id is not None:
            where.append("request_id = ?")
            params.append(request_id)
        if file_ids is not None:
            if not file_ids:
                return 0
            where.append(f"file_id IN ({', '.join('?' * len(file_ids))})")
            params += file_ids
        cur = self._x(f"DELETE FROM pins WHERE {' AND '.join(where) or '1=1'}", params)
        return max(cur.rowcount, 0)

    def pins(self, now: float) -> dict[str, float]:
        """file_id -> latest pin expiry, for pins still valid at ``now``."""
        return {r[0]: float(r[1]) for r in self._x(
            "SELECT file_id, MAX(expires) FROM pins WHERE expires > ? GROUP BY file_id",
            (now,)).fetchall()}

    def expire_pins(self, now: float) -> int:
        # looked for first: the engine asks after every upload, and a DELETE that finds nothing
        # still queues for the write lock behind the uploads' transactions
        if self._x("SELECT 1 FROM pins WHERE expires <= ? LIMIT 1", (now,)).fetchone() is None:
            return 0
        return max(self._x("DELETE FROM pins WHERE expires <= ?", (now,)).rowcount, 0)

    def stats(self) -> dict[str, float]:
        one = lambda sql: self._x(sql).fetchone()[0] or 0  # noqa: E731
        return {
            "files": one("SELECT COUNT(*) FROM files"),
            "bytes": one("SELECT SUM(size) FROM files"),
            "disk_files": one("SELECT COUNT(*) FROM disk_replicas"),
            "disk_bytes": one("SELECT SUM(size) FROM disk_replicas"),
            "tape_copies": one("SELECT COUNT(*) FROM tape_replicas"),
            "recalls_queued": one("SELECT COUNT(*) FROM recalls WHERE state = 'queued'"),
            "recalls_active": one("SELECT COUNT(*) FROM recalls WHERE state = 'active'"),
            "recalls_lost": one("SELECT COUNT(*) FROM recalls WHERE state = 'lost'"),
            "stage_files_open": one("SELECT COUNT(*) FROM stage_files "
                                    "WHERE state IN ('SUBMITTED', 'STARTED')"),
            "pins": one("SELECT COUNT(*) FROM pins"),
        }


    def queued_recall_copies(self) -> dict[str, list[TapeReplica]]:
        """Tape copies of every queued recall, in one query (the scheduler's input)."""
        out: dict[str, list[TapeReplica]] = {}
        for r in self._x('SELECT t.file_id, t.copy_no, t.pool, t.tape, t.fseq, t.block, '
                         't."offset", t.record_size FROM recalls r JOIN tape_replicas t '
                         "ON t.file_id = r.file_id WHERE r.state = 'queued'").fetchall():
            out.setdefault(r[0], []).append(TapeReplica(r[0], int(r[1]), r[2], r[3], int(r[4]),
                                                        int(r[5]), int(r[6]), int(r[7])))
        return out

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[None]:
        """For large loads (benchmarks, migrations from another catalog): the secondary indexes
        are dropped for the duration and rebuilt at the end, one sorted build each instead of a
        million random inserts. Primary keys and the unique path stay, so errors still show."""
        stmts = [st for st in schema(self.dialect) if st.startswith("CREATE INDEX")]
        names = [st.split(" ", 3)[2] for st in stmts]
        with self.tx():
            for name in names:
                self._x(f"DROP INDEX IF EXISTS {name}")
        try:
            yield
        finally:
            with self.tx():
                for st in stmts:
                    self._x(st)

    def disk_usage(self) -> int:
        return int(self._x("SELECT COALESCE(SUM(size), 0) FROM disk_replicas").fetchone()[0])

    def analyze(self) -> None:
        """Refresh planner statistics (after bulk loads: keeps cone queries on the dec index)."""
        self._x("ANALYZE")

    def tape_copy_counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._x(
            "SELECT file_id, COUNT(*) FROM tape_replicas GROUP BY file_id").fetchall()}

    def bump_seq(self, at_least: int) -> None:
        self._x("UPDATE counters SET value = ? WHERE name = 'seq' AND value < ?",
                (at_least, at_least))

    def recall_started(self, file_ids: list[str], now: float) -> None:
        """Recalls handed to a drive: their stage files go SUBMITTED -> STARTED."""
        with self.tx():
            for fid in file_ids:
                self._x("UPDATE recalls SET state = 'active' WHERE file_id = ?", (fid,))
                rows = self._x("SELECT DISTINCT request_id FROM stage_files WHERE file_id = ? "
                               "AND state = 'SUBMITTED'", (fid,)).fetchall()
                self._x("UPDATE stage_files SET state = 'STARTED' WHERE file_id = ? "
                        "AND state = 'SUBMITTED'", (fid,))
                for (rid,) in rows:
                    self.set_request_times(rid, now, None)

    def finish_requests(self, request_ids: set[str], now: float) -> None:
        """Stamp ``completed`` on requests that have no open file left."""
        for rid in request_ids:
            (n,) = self._x("SELECT COUNT(*) FROM stage_files WHERE request_id = ? "
                           "AND state IN ('SUBMITTED', 'STARTED')", (rid,)).fetchone()
            if not n:
                self.set_request_times(rid, now, now)

    def open_stage_count(self, file_id: str) -> int:
        return int(self._x("SELECT COUNT(*) FROM stage_files WHERE file_id = ? AND state IN "
                           "('SUBMITTED', 'STARTED')", (file_id,)).fetchone()[0])

def _sep_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angular separation in degrees (haversine: accurate at small angles)."""
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    s = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(s))))

