"""The namespace service: files and collections (PUT, GET, DELETE, MKCOL, COPY, MOVE, locality).

Durability: uploads go to ``disk/.tmp``, are checksummed on the fly, fsynced and renamed before
the catalog commit. A committed file tells the tape loop (it joins the migration candidates);
a removed one invalidates them. GETs' last-access times are batched here and written by the tape
loop's housekeeping (:meth:`NamespaceService.flush_access_times`).

Concurrency: see ``archive.engine`` (the one rule). Request threads call these methods
concurrently; they never take the engine's lock, and their file I/O runs under no lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from appliance.fsutil import fsync_dir
from archive import fitsmeta
from archive.catalog import CatalogStore, FileEntry, Product
from archive.clock import Clock
from archive.errors import BadPath, BadRequest, DigestMismatch, NearlineOnly, NotFound
from archive.paths import is_reserved, normalize
from archive.planning import locality_of
from archive.sink import THREAD_MIN, ReadAdapter, ReadInto, Sink
from archive.tapeloop import TapeLoop


class NamespaceService:
    """Files and collections in the catalog, their disk copies and the upload path."""

    def __init__(self, catalog: CatalogStore, clock: Clock, loop: TapeLoop, exclusive: bool):
        """``exclusive``: this process runs the engine (else access times go straight to the
        catalog: a CLI process next to the server has no housekeeping)."""
        self.catalog = catalog
        self.clock = clock
        self.loop = loop
        self.library = loop.library
        self.metrics = loop.metrics
        self.tmp_dir = loop.tmp_dir
        self.disk_path = loop.disk_path
        self.exclusive = exclusive
        #: GETs' last-access times not yet in the catalog (file id -> time). A catalog write per
        #: GET serialised the GETs behind the PUTs' transactions (SQLite has one writer); the
        #: housekeeping writes them in one transaction every few seconds, and eviction writes
        #: them before it ranks files. A crash loses only these times (a file may then be
        #: evicted a little earlier than LRU says), never a file or a replica.
        self._accessed: dict[str, float] = {}
        self._accessed_lock = threading.Lock()

    def _ingested(self, entry: FileEntry, replaced: bool) -> None:
        self.loop._ingested(entry, replaced)

    def _dirty(self) -> None:
        self.loop._dirty()

    def wake(self) -> None:
        self.loop.wake()

    def _check_writable(self, path: str) -> str:
        path = normalize(path, decoded=True)
        if path == "/" or is_reserved(path):
            raise BadPath(path, "reserved path")
        return path

    def put_stream(self, path: str, stream: ReadInto | Callable[[int], bytes],
                   length: int | None, owner: str,
                   digests: dict[str, str] | None = None,
                   product: Product | None = None) -> FileEntry:
        """Store a file from a stream: temp file, hashes on the fly, fsync, rename, commit.

        ``stream`` is anything with ``readinto`` (a socket file, an open file) or a ``read(n)``
        callable. ``digests`` maps ``adler32`` / ``sha-256`` (as the client sent them) to
        expected values; a mismatch aborts before the catalog sees the file. ``length`` None
        reads to EOF.
        """
        path = self._check_writable(path)
        source: ReadInto = stream if hasattr(stream, "readinto") else ReadAdapter(stream)  # type: ignore[arg-type]
        file_id = uuid.uuid4().hex
        tmp = self.tmp_dir / file_id
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        h = Sink(fd, threaded=length is None or length >= THREAD_MIN)
        try:
            missing = h.pump(source, length)
            if missing:
                raise BadRequest(f"{path}: upload ended after {h.size} bytes, {missing} missing")
            os.fsync(fd)
            os.close(fd)
            fd = -1
            self._verify_digests(path, h, digests or {})
            final = self.disk_path(file_id)
            final.parent.mkdir(exist_ok=True)
            os.rename(tmp, final)
            fsync_dir(final.parent)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        if product is None and fitsmeta.is_fits_name(path):
            product = fitsmeta.extract(final, path)
        now = self.clock.now()
        entry = FileEntry(file_id, path, h.size, h.adler32, h.sha.hexdigest(), owner, now, now)
        try:
            old = self.catalog.commit_file(entry, disk=True, product=product)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
            raise
        if old:
            with contextlib.suppress(FileNotFoundError):
                self.disk_path(old).unlink()
        self._ingested(entry, replaced=bool(old))
        self.metrics.add(ingested_files=1, ingested_bytes=h.size)
        self.wake()
        return entry

    @staticmethod
    def _verify_digests(path: str, h: Sink, digests: dict[str, str]) -> None:
        import base64

        for algo, value in digests.items():
            a = algo.lower()
            if a == "adler32":
                actual = h.adler32
                ok = value.lower().zfill(8) == actual
            elif a in ("sha-256", "sha256"):
                actual = base64.b64encode(h.sha.digest()).decode()
                ok = value == actual or value.lower() == h.sha.hexdigest()
            else:
                continue
            if not ok:
                raise DigestMismatch(path, a, value, actual)

    def ingest_local(self, src: str | os.PathLike[str], path: str, owner: str,
                     follow_symlinks: bool = False) -> FileEntry:
        src = Path(src)
        if src.is_symlink() and not follow_symlinks:
            raise BadPath(str(src), "is a symbolic link (use --follow-symlinks to ingest it)")
        with open(src, "rb") as f:
            return self.put_stream(path, f, None, owner)

    def stat(self, path: str) -> FileEntry:
        f = self.catalog.get_file(normalize(path, decoded=True))
        if not f:
            raise NotFound(path)
        return f

    def open_for_read(self, path: str) -> tuple[FileEntry, Path]:
        """The disk copy of ``path``; NearlineOnly if it is only on tape (never blocks)."""
        f = self.stat(path)
        if not self.catalog.disk_replica(f.file_id):
            raise NearlineOnly(f.path)
        p = self.disk_path(f.file_id)
        if not p.exists():
            self.catalog.remove_disk_replica(f.file_id)
            raise NearlineOnly(f.path)
        self._accessed_now(f.file_id)
        return f, p

    def _accessed_now(self, file_id: str) -> None:
        now = self.clock.now()
        if not self.exclusive:  # a CLI process next to the server: no housekeeping here
            self.catalog.touch_disk(file_id, now)
            return
        with self._accessed_lock:
            if now > self._accessed.get(file_id, -1.0):
                self._accessed[file_id] = now

    def flush_access_times(self) -> int:
        """Write the batched last-access times to the catalog in one transaction; returns how
        many files. On a catalog error they are kept for the next flush."""
        with self._accessed_lock:
            batch, self._accessed = self._accessed, {}
        if not batch:
            return 0
        try:
            self.catalog.touch_disk_many(batch.items())
        except BaseException:
            with self._accessed_lock:
                for fid, when in batch.items():
                    if when > self._accessed.get(fid, -1.0):
                        self._accessed[fid] = when
            raise
        return len(batch)

    def delete(self, path: str) -> None:
        path = self._check_writable(path)
        if self.catalog.get_dir(path):
            # recursive (RFC 4918 9.6.1): each member's namespace entry goes, as a file DELETE
            for f in self.catalog.remove_tree(path, self.clock.now()):
                with contextlib.suppress(FileNotFoundError):
                    self.disk_path(f.file_id).unlink()
            self._dirty()
            self.wake()
            return
        old = self.catalog.delete_file(path, self.clock.now())
        if not old:
            raise NotFound(path)
        with contextlib.suppress(FileNotFoundError):
            self.disk_path(old.file_id).unlink()
        self._dirty()
        self.wake()

    def mkdir(self, path: str, owner: str, parents: bool = False) -> None:
        from archive.errors import AlreadyExists, Conflict
        from archive.paths import parent_of

        path = self._check_writable(path)
        if self.catalog.get_dir(path) or self.catalog.get_file(path):
            raise AlreadyExists(path)
        if not parents and not self.catalog.get_dir(parent_of(path)):
            raise Conflict(path, "parent collection does not exist")
        self.catalog.make_dirs(path, owner, self.clock.now())

    def copy(self, src: str, dst: str, owner: str, depth_infinity: bool = True) -> None:
        """WebDAV COPY inside the archive: each file is a new file (new id, its own tape
        copies later), streamed from the source's disk copy and verified against its adler32.

        A file whose only copies are on tape is refused before anything is written (423, as a
        GET of it): sharing the source's tape copy would give two catalog entries one tape
        record, which a rebuild from tape could not tell apart. Stage it, then copy."""
        from archive.errors import AlreadyExists, Conflict
        from archive.paths import parent_of

        src, dst = self._check_writable(src), self._check_writable(dst)
        if dst == src or dst.startswith(src + "/"):
            raise Conflict(dst, "cannot copy a resource onto or into itself")
        if not self.catalog.get_dir(parent_of(dst)):
            raise Conflict(dst, "parent collection does not exist")
        if self.catalog.get_dir(dst) or self.catalog.get_file(dst):
            raise AlreadyExists(dst)
        f = self.catalog.get_file(src)
        if f:
            plan: list[tuple[str, FileEntry | None]] = [(src, f)]
        elif self.catalog.get_dir(src):
            plan = [(src, None)]
            todo = [src] if depth_infinity else []
            while todo:
                dirs, files = self.catalog.list_dir(todo.pop())
                plan += [(d.path, None) for d in dirs] + [(x.path, x) for x in files]
                todo += [d.path for d in dirs]
        else:
            raise NotFound(src)
        for _, x in plan:
            if x and not self.catalog.disk_replica(x.file_id):
                raise NearlineOnly(x.path)
        for p, x in plan:
            target = dst + p[len(src):]
            if x is None:
                self.catalog.make_dirs(target, owner, self.clock.now())
            else:
                with open(self.disk_path(x.file_id), "rb") as fh:
                    self.put_stream(target, fh, x.size, owner, {"adler32": x.adler32},
                                    self.catalog.get_product(x.file_id))
            self.catalog.copy_props(p, target)

    def move(self, src: str, dst: str) -> None:
        dst = self._check_writable(dst)
        self.catalog.move(self._check_writable(src), dst, self.clock.now())
        self._describe_renamed(dst)

    def _describe_renamed(self, path: str) -> None:
        """A file renamed to a FITS name gets its product metadata, as a PUT to that name would:
        clients upload to a temporary name and MOVE it into place (the transfer layer, rclone,
        davix), and a catalog search must find those files too."""
        if not fitsmeta.is_fits_name(path):
            return
        f = self.catalog.get_file(path)
        if f is None or self.catalog.get_product(f.file_id) is not None:
            return
        if self.catalog.disk_replica(f.file_id) is None:
            return  # tape only: described when it is next written or rebuilt
        product = fitsmeta.extract(self.disk_path(f.file_id), path)
        if product is not None:
            self.catalog.set_product(f.file_id, product)

    def locality(self, path: str) -> str:
        """WLCG Tape REST locality: DISK, TAPE, DISK_AND_TAPE, LOST, NONE or UNAVAILABLE."""
        path = normalize(path, decoded=True)
        f = self.catalog.get_file(path)
        if not f:
            if self.catalog.get_dir(path):
                return "NONE"
            raise NotFound(path)
        rec = self.catalog.get_recall(f.file_id)
        return locality_of(self.catalog.disk_replica(f.file_id) is not None,
                           len(self.catalog.tape_replicas(f.file_id)),
                           rec is not None and rec.state == "lost",
                           not all(d.failed for d in self.library.drives))
