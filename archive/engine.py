"""The archive service: catalog + disk cache + tape library + migration + recalls, on a clock.

This is the imperative shell around the pure parts (``scheduler``, ``cache``). Everything that
takes time on a real tape system is an *operation* on a drive that ends at a clock time; the
engine's :meth:`Archive.step` completes due operations (doing the actual file I/O then), starts
migrations and recalls, expires pins and evicts, and returns the time of the next event. With a
simulated clock, :meth:`run_until` jumps from event to event; with a real clock (optionally sped
up) :meth:`start` runs the same loop in a background thread.

Durability: uploads go to ``disk/.tmp``, are checksummed on the fly, fsynced and renamed before
the catalog commit; on start-up, anything on disk the catalog does not know is an orphan of a
crash and is removed, and catalog rows whose disk file vanished are dropped.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.fsutil import fsync_dir
from archive import fitsmeta
from archive.cache import parse_duration, plan_eviction
from archive.catalog import (
    CatalogStore,
    FileEntry,
    Product,
    StageFile,
    StageRequest,
    TapeReplica,
)
from archive.catalogs import open_catalog
from archive.clock import Clock, RealClock, SimClock
from archive.config import ArchiveConfig
from archive.errors import (
    BadPath,
    BadRequest,
    ChecksumError,
    DigestMismatch,
    NearlineOnly,
    NotFound,
    TapeError,
)
from archive.paths import is_reserved, normalize
from archive.scheduler import CopyLoc, DriveState, QueuedRecall, Read, plan_recalls
from archive.sink import THREAD_MIN, ReadAdapter, ReadInto, Sink
from archive.tape import Drive, TapeLibrary

log = logging.getLogger(__name__)
OPEN_STATES = ("SUBMITTED", "STARTED")


def _lock_dir(root: Path) -> int:
    """One process owns an archive directory (its tapes, disk cache and recovery)."""
    import fcntl

    from archive.errors import ArchiveError

    fd = os.open(root / "archive.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        raise ArchiveError(f"{root}: archive is in use by another process (pid {holder or '?'}); "
                           "stop it, or talk to it over HTTP") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def make_clock(cfg: ArchiveConfig, persist: bool = True) -> Clock:
    """The configured clock; a real one continues from the archive time persisted in
    ``ROOT/clock.json`` (monotonic across restarts); ``persist``: this process owns it."""
    if cfg.clock.mode == "simulated":
        return SimClock()
    return RealClock(cfg.clock.speed, state=cfg.root_path / "clock.json", persist=persist)


@dataclass
class Op:
    """One drive operation: a read of one record, or a write of a batch of records."""

    kind: str  # read | write
    tape: str
    start: float
    end: float
    read: Read | None = None
    files: list[tuple[FileEntry, int]] = field(default_factory=list)  # (file, copy_no) to write
    log_seqs: list[int] = field(default_factory=list)


@dataclass
class Metrics:
    mounts: int = 0
    tape_bytes_read: int = 0
    tape_bytes_written: int = 0
    tape_files_read: int = 0
    tape_files_written: int = 0
    recall_failures: int = 0
    evicted_files: int = 0
    evicted_bytes: int = 0
    ingested_files: int = 0
    ingested_bytes: int = 0
    http_bytes_sent: int = 0
    http_bytes_received: int = 0
    drive_busy_seconds: float = 0.0


class Archive:
    """One archive instance. Thread-safe: HTTP threads call the public methods concurrently."""

    def __init__(self, cfg: ArchiveConfig, clock: Clock | None = None,
                 catalog: CatalogStore | None = None, exclusive: bool = True):
        """``exclusive``: own the archive directory (lock, crash recovery, engine); the CLI's
        read-only and staging commands open it shared, next to a running server."""
        self.cfg = cfg
        self.clock = clock or make_clock(cfg, persist=exclusive)
        self.root = cfg.root_path
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        if exclusive:
            self._lock_fd = _lock_dir(self.root)
        self.catalog = catalog or open_catalog(cfg)
        self.disk_dir = self.root / "disk"
        self.tmp_dir = self.disk_dir / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.library = TapeLibrary(self.root / "tapes", cfg.tape)
        self.metrics = Metrics()
        self.lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_housekeeping = 0.0
        #: the recall scheduling policy (pure); benchmarks swap in ``scheduler.plan_fifo``
        self.recall_policy = plan_recalls
        self._candidates: list[tuple[FileEntry, list[int]]] | None = None
        self._cand_lock = threading.Lock()  # guards _candidates and _cand_gen (PUT threads)
        self._cand_gen = 0  # bumped at every invalidation: a scan older than that is not kept
        self._next_rescan = 0.0  # the periodic housekeeping also rescans the candidates
        # Watermark hysteresis: once usage passed the high watermark, eviction goes on at every
        # housekeeping until usage is down to the low one, also when the files that would get it
        # there were not on tape yet at the first pass (they become evictable as they migrate).
        self._draining = False
        self._force_migration = False  # `archive migrate`: write what waits now, not by age
        #: pools that already hold a pending namespace record (seq -> pools); a record leaves
        #: the catalog's log once every pool has it, so each pool's cartridges alone rebuild
        #: the namespace (lost on restart: the records are then written again, harmlessly)
        self._log_pools: dict[int, set[str]] = {}
        #: GETs' last-access times not yet in the catalog (file id -> time). A catalog write per
        #: GET serialised the GETs behind the PUTs' transactions (SQLite has one writer); the
        #: housekeeping writes them in one transaction every few seconds, and eviction writes
        #: them before it ranks files. A crash loses only these times (a file may then be
        #: evicted a little earlier than LRU says), never a file or a replica.
        self._accessed: dict[str, float] = {}
        self._accessed_lock = threading.Lock()
        self._next_access_flush = 0.0
        self.exclusive = exclusive
        if exclusive:
            self.recover()

    # -- lifecycle ---------------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Remove crash leftovers: temp uploads, disk files unknown to the catalog, dead rows."""
        removed_tmp = 0
        for p in self.tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                p.unlink()
                removed_tmp += 1
        known = {r.file_id for r in self.catalog.disk_replicas()}
        orphans = 0
        for sub in self.disk_dir.iterdir():
            if sub.name == ".tmp" or not sub.is_dir():
                continue
            for p in sub.iterdir():
                if p.name not in known:
                    with contextlib.suppress(OSError):
                        p.unlink()
                        orphans += 1
        dead = 0
        for fid in known:
            if not self.disk_path(fid).exists():
                self.catalog.remove_disk_replica(fid)
                dead += 1
        for rec in self.catalog.recalls(("active",)):
            rec.state = "queued"
            self.catalog.update_recall(rec)
        if removed_tmp or orphans or dead:
            log.warning("recovery: removed %d temp uploads, %d orphan disk files, %d dead replica "
                        "rows", removed_tmp, orphans, dead)
        return {"tmp": removed_tmp, "orphans": orphans, "dead_rows": dead}

    def start(self) -> None:
        """Run the engine loop in a background thread (real or sped-up clock)."""
        if self._thread:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="archive-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
            self._thread = None

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(Exception):  # times only: closing must not fail on them
            self.flush_access_times()
        if self.exclusive and hasattr(self.clock, "save"):
            self.clock.save()  # a restart continues archive time from here
        self.catalog.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                nxt = self.step()
            except Exception:  # noqa: BLE001 - the engine must survive one bad event
                log.exception("engine step failed")
                nxt = self.clock.now() + 5 * getattr(self.clock, "speed", 1.0)
            if self._stop.is_set():
                break
            self._wake.clear()
            self.clock.wait_until(nxt if nxt is not None else self.clock.now() + 3600 *
                                  getattr(self.clock, "speed", 1.0), self._wake)

    def run_until(self, when: float) -> None:
        """Simulated clock: process every event up to ``when``, jumping between events."""
        assert isinstance(self.clock, SimClock), "run_until needs a simulated clock"
        while True:
            nxt = self.step()
            if nxt is None or nxt > when:
                self.clock.set(when)
                self.step()
                return
            self.clock.set(max(nxt, self.clock.now()))

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now() + seconds)

    def run_until_idle(self, limit: float = 30 * 86400) -> float:
        """Simulated clock: run until no drive is busy and no recall waits; returns the time."""
        assert isinstance(self.clock, SimClock)
        end = self.clock.now() + limit
        while self.clock.now() < end:
            nxt = self.step()
            busy = any(d.op or d.batch for d in self.library.drives)
            if nxt is None or (not busy and not self.catalog.recalls(("queued",))
                               and not self._migration_pending()):
                break
            self.clock.set(max(nxt, self.clock.now()))
        return self.clock.now()

    # -- namespace operations ------------------------------------------------------------------
    def disk_path(self, file_id: str) -> Path:
        return self.disk_dir / file_id[:2] / file_id

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
        self.metrics.ingested_files += 1
        self.metrics.ingested_bytes += h.size
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
        disk = self.catalog.disk_replica(f.file_id) is not None
        tapes = self.catalog.tape_replicas(f.file_id)
        rec = self.catalog.get_recall(f.file_id)
        if disk and tapes:
            return "DISK_AND_TAPE"
        if disk:
            return "DISK"
        if not tapes or (rec and rec.state == "lost"):
            return "LOST"
        if all(d.failed for d in self.library.drives):
            return "UNAVAILABLE"
        return "TAPE"

    # -- staging -------------------------------------------------------------------------------
    def pin_lifetime(self, text: str | None) -> float:
        default = parse_duration(self.cfg.cache.default_pin_lifetime)
        if not text:
            return default
        try:
            value = parse_duration(text)
        except ValueError as err:
            raise BadRequest(f"diskLifetime: {err}") from err
        return min(value, parse_duration(self.cfg.cache.max_pin_lifetime))

    def stage(self, files: Iterable[tuple[str, str | None]], owner: str) -> str:
        """Create a stage request for ``(path, diskLifetime)`` items; returns the request id.

        Files already on disk complete at once (and are pinned); missing files fail with an
        error; the rest are queued for recall.
        """
        now = self.clock.now()
        rid = str(uuid.uuid4())
        items: list[StageFile] = []
        seen: set[str] = set()
        recalls: list[str] = []
        pins: list[tuple[str, float]] = []
        for raw, lifetime_text in files:
            if raw in seen:
                continue
            seen.add(raw)
            lifetime = self.pin_lifetime(lifetime_text)
            try:
                f = self.catalog.get_file(normalize(raw, decoded=True))
            except BadPath as err:
                items.append(StageFile(rid, raw, None, "FAILED", str(err), lifetime, now))
                continue
            if f is None:
                items.append(StageFile(rid, raw, None, "FAILED", "no such file", lifetime, now))
            elif self.catalog.disk_replica(f.file_id):
                items.append(StageFile(rid, raw, f.file_id, "COMPLETED", None, lifetime, now))
                pins.append((f.file_id, now + lifetime))
            elif not self.catalog.tape_replicas(f.file_id):
                items.append(StageFile(rid, raw, f.file_id, "FAILED", "file has no copy on disk "
                                       "or tape (LOST)", lifetime, now))
            else:
                items.append(StageFile(rid, raw, f.file_id, "SUBMITTED", None, lifetime, None))
                recalls.append(f.file_id)
        done = all(i.state not in OPEN_STATES for i in items)
        req = StageRequest(rid, owner, now, now, now if done else None, items)
        with self.catalog.tx():
            self.catalog.create_stage_request(req)
            for fid in recalls:
                self.catalog.enqueue_recall(fid, now)
            for fid, exp in pins:
                self.catalog.add_pin(fid, rid, exp)
        self.wake()
        return rid

    def stage_status(self, rid: str) -> StageRequest:
        req = self.catalog.get_stage_request(rid)
        if not req:
            raise NotFound(rid, "no such stage request")
        return req

    def cancel(self, rid: str, paths: list[str]) -> None:
        req = self.stage_status(rid)
        known = {f.path for f in req.files}
        missing = [p for p in paths if p not in known]
        if missing:
            raise BadRequest(f"paths not part of request {rid}: {missing[:5]}")
        now = self.clock.now()
        with self.catalog.tx():
            changed = self.catalog.update_stage_files(rid, None, "CANCELLED", None, now,
                                                      paths=paths, only_states=OPEN_STATES)
            for sf in changed:
                if sf.file_id and not self.catalog.open_stage_count(sf.file_id):
                    rec = self.catalog.get_recall(sf.file_id)
                    if rec and rec.state == "queued":
                        self.catalog.drop_recall(sf.file_id)
            self.catalog.finish_requests({rid}, now)

    def release(self, rid: str, paths: list[str] | None) -> int:
        """Drop pins of request ``rid`` (only ``paths`` if given); unknown ids release by path."""
        req = self.catalog.get_stage_request(rid)
        file_ids = None
        if paths is not None:
            file_ids = []
            for p in paths:
                with contextlib.suppress(BadPath):
                    f = self.catalog.get_file(normalize(p, decoded=True))
                    if f:
                        file_ids.append(f.file_id)
        n = self.catalog.release_pins(rid if req else None, file_ids)
        self.wake()
        return n

    def delete_request(self, rid: str) -> None:
        req = self.stage_status(rid)
        open_paths = [f.path for f in req.files if f.state in OPEN_STATES]
        if open_paths:
            self.cancel(rid, open_paths)
        self.catalog.release_pins(rid, None)
        self.catalog.delete_stage_request(rid)

    # -- fault injection (simulator only) ------------------------------------------------------
    def fail_drive(self, drive_id: str) -> None:
        with self.lock:
            self.library.drive(drive_id).failed = True
        self.wake()

    def repair_drive(self, drive_id: str) -> None:
        with self.lock:
            d = self.library.drive(drive_id)
            d.failed, d.tape, d.head = False, None, 0
        self.wake()

    # -- the engine ----------------------------------------------------------------------------
    def step(self) -> float | None:
        """Do everything due at the current time; return the time of the next event (or None)."""
        with self.lock:
            now = self.clock.now()
            for _ in range(10_000):
                progressed = self._complete_due(now)
                progressed |= self._schedule(now)
                if not progressed:
                    break
            if now >= self._next_housekeeping:
                self._housekeeping(now)
                # every 5 s of wall time (real clock), every simulated minute (simulated clock)
                self._next_housekeeping = now + self._housekeeping_period()
            events = [d.op.end for d in self.library.drives if d.op]
            due = self._migration_due_at(now)
            if due is not None:
                events.append(max(due, now + 1e-3) if due > now else now + 1.0)
            events.append(self._next_housekeeping)
            return min(events) if events else None

    def _complete_due(self, now: float) -> bool:
        progressed = False
        for d in self.library.drives:
            if d.op and d.op.end <= now:
                op, d.op = d.op, None
                self.metrics.drive_busy_seconds += op.end - op.start
                if op.kind == "read":
                    self._finish_read(d, op, now)
                else:
                    self._finish_write(d, op, now)
                progressed = True
        return progressed

    def _start(self, d: Drive, op: Op, position: int) -> None:
        m = self.library.model
        t = m.switch(d.tape, op.tape)
        if d.tape != op.tape:
            d.mounts += 1
            self.metrics.mounts += 1
            d.tape, d.head = op.tape, 0
        t += m.locate(d.head, position)
        size = op.read.size if op.read else sum(f.size for f, _ in op.files)
        t += m.transfer(size)
        op.end = op.start + t
        d.busy_until = op.end
        d.op = op

    def _schedule(self, now: float) -> bool:
        progressed = False
        # continue batches already assigned to drives
        for d in self.library.drives:
            if d.op is None and d.batch and not d.failed:
                r = d.batch.pop(0)
                self._start(d, Op("read", r.tape, now, now, read=r), r.offset)
                progressed = True
        # migration first when due (ingest must reach tape promptly), then recalls
        progressed |= self._schedule_migration(now)
        queued = self.catalog.recalls(("queued",)) if any(
            d.idle for d in self.library.drives) else []
        if queued:
            qr = []
            all_copies = self.catalog.queued_recall_copies()
            for rec in queued:
                copies = tuple(CopyLoc(t.tape, t.offset, t.record_size)
                               for t in all_copies.get(rec.file_id, []))
                qr.append(QueuedRecall(rec.file_id, rec.requested, copies,
                                       frozenset(rec.bad_tapes)))
            states = [DriveState(d.drive_id, d.tape, d.head, d.idle, d.failed)
                      for d in self.library.drives]
            plan = self.recall_policy(qr, states, now)
            for fid in plan.lost:
                self._mark_lost(fid, now)
            for drive_id, reads in plan.assignments.items():
                d = self.library.drive(drive_id)
                d.batch = list(reads)
                self.catalog.recall_started([r.file_id for r in reads], now)
                r = d.batch.pop(0)
                self._start(d, Op("read", r.tape, now, now, read=r), r.offset)
                progressed = True
        return progressed

    def _mark_lost(self, file_id: str, now: float) -> None:
        rec = self.catalog.get_recall(file_id)
        tried = ", ".join(rec.bad_tapes) if rec else ""
        with self.catalog.tx():
            if rec:
                rec.state = "lost"
                self.catalog.update_recall(rec)
            rows = self.catalog.update_stage_files(
                None, file_id, "FAILED", f"every tape copy failed ({tried}); file is LOST", now,
                only_states=OPEN_STATES)
            self.catalog.finish_requests({r.request_id for r in rows}, now)
        self.metrics.recall_failures += 1

    def _finish_read(self, d: Drive, op: Op, now: float) -> None:
        r = op.read
        assert r is not None
        f = self.catalog.get_file_by_id(r.file_id)
        rec = self.catalog.get_recall(r.file_id)
        if f is None or rec is None:  # deleted or cancelled meanwhile
            if rec:
                self.catalog.drop_recall(r.file_id)
            return
        if d.failed:
            # drive fault: requeue this read and the rest of the batch; eject the cartridge
            for x in [r, *d.batch]:
                again = self.catalog.get_recall(x.file_id)
                if again:
                    again.state, again.attempts = "queued", again.attempts + 1
                    self.catalog.update_recall(again)
            d.batch, d.tape, d.head = [], None, 0
            self.metrics.recall_failures += 1
            log.warning("drive %s failed during read of %s; requeued", d.drive_id, f.path)
            return
        tmp = self.tmp_dir / f"recall-{f.file_id}"
        try:
            with open(tmp, "wb") as out:
                self.library.read_into(r.tape, r.offset, out, f.sha256)
                out.flush()
                os.fsync(out.fileno())
            final = self.disk_path(f.file_id)
            final.parent.mkdir(exist_ok=True)
            os.rename(tmp, final)
        except (TapeError, ChecksumError, OSError) as err:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            rec.bad_tapes.append(r.tape)
            rec.attempts += 1
            rec.state = "queued"
            self.catalog.update_recall(rec)
            self.metrics.recall_failures += 1
            log.warning("recall of %s from %s failed: %s", f.path, r.tape, err)
            d.head = r.offset
            return
        d.head = r.offset + r.size
        self.metrics.tape_bytes_read += f.size
        self.metrics.tape_files_read += 1
        with self.catalog.tx():
            self.catalog.add_disk_replica(f.file_id, f.size, now)
            self.catalog.drop_recall(f.file_id)
            rows = self.catalog.update_stage_files(None, f.file_id, "COMPLETED", None, now,
                                                   only_states=OPEN_STATES)
            for sf in rows:
                self.catalog.add_pin(f.file_id, sf.request_id, now + sf.lifetime)
            self.catalog.finish_requests({sf.request_id for sf in rows}, now)

    # -- migration -----------------------------------------------------------------------------
    def _migration_candidates(self) -> list[tuple[FileEntry, list[int]]]:
        """Cached between namespace/replica changes (``_dirty``): the engine asks every step."""
        cands = self._candidates
        if cands is None:
            gen = self._cand_gen
            cands = self.catalog.migration_candidates(self.cfg.tape.copies)
            with self._cand_lock:
                if gen == self._cand_gen:  # no change committed while the scan ran
                    self._candidates = cands
        return cands

    def _invalidate_candidates(self) -> None:
        with self._cand_lock:
            self._candidates = None
            self._cand_gen += 1

    def _dirty(self) -> None:
        self._invalidate_candidates()
        self._next_housekeeping = 0.0  # disk usage changed: check the watermark soon

    def _ingested(self, entry: FileEntry, replaced: bool) -> None:
        """A new file was committed: it joins the cached candidates in ``modified`` order, as
        the catalog's scan would list it. Rescanning every waiting file after each PUT (and in
        the housekeeping that PUT forced) was a quarter of the server's CPU under load."""
        if replaced or self._candidates is None:
            self._dirty()
            return
        with self._cand_lock:
            if self._candidates is None:  # invalidated meanwhile: the next scan lists it
                self._cand_gen += 1
            else:
                new = list(self._candidates)
                bisect.insort(new, (entry, []), key=lambda c: c[0].modified)
                self._candidates = new
        self._next_housekeeping = 0.0  # disk usage changed: check the watermark soon

    def _migration_pending(self) -> bool:
        return bool(self._migration_candidates() or self.catalog.pending_log())

    def _migration_due_at(self, now: float) -> float | None:
        """When the next migration must start: now if a batch is full, else by age."""
        cands = self._migration_candidates()
        logs = self.catalog.pending_log()
        if not cands and not logs:
            self._force_migration = False
            return None
        if self._force_migration:
            return now
        m = self.cfg.migration
        if len(cands) >= m.batch_files or sum(f.size for f, _ in cands) >= m.batch_bytes:
            return now
        oldest = min([f.modified for f, _ in cands] + [r.at for r in logs])
        return oldest + m.max_age_seconds

    def _schedule_migration(self, now: float) -> bool:
        due = self._migration_due_at(now)
        if due is None or due > now:
            return False
        cands = self._migration_candidates()
        logs = self.catalog.pending_log()
        started = False
        busy_tapes = {d.tape for d in self.library.drives if d.op or d.batch}
        for copy_no, pool in enumerate(self.library.pools):
            if any(d.op and d.op.kind == "write" and self.library.tapes[d.op.tape].pool == pool
                   for d in self.library.drives):
                continue  # one writer per pool
            files = [(f, copy_no) for f, held in cands if copy_no not in held]
            pool_logs = [r for r in logs if pool not in self._log_pools.get(r.seq, ())]
            if not files and not pool_logs:
                continue
            size = sum(f.size for f, _ in files)
            cart = self.library.write_tape(pool, size + 4096 * (len(files) + len(pool_logs)))
            if cart.tape in busy_tapes:
                continue
            idle = [d for d in self.library.drives if d.idle]
            if not idle:
                break
            d = next((x for x in idle if x.tape == cart.tape), None) or next(
                (x for x in idle if x.tape is None), idle[0])
            op = Op("write", cart.tape, now, now, files=files,
                    log_seqs=[r.seq for r in pool_logs])
            self._start(d, op, cart.used)
            busy_tapes.add(cart.tape)
            started = True
        return started

    def _header(self, f: FileEntry, at_seq: int) -> dict[str, Any]:
        """The self-describing header of a file record.

        ``seq`` is the file's upload sequence number; ``at_seq`` is a fresh number reserved in
        the same transaction that read ``path``: the record says "this file was at ``path`` at
        event ``at_seq``". A file migrated after a rename of its collection carries the new path,
        so the rebuild must place it after the rename, not at its upload (measured before: 740
        of 977 files came back, the rest missing or resurrected at old paths).
        """
        prod = self.catalog.get_product(f.file_id)
        return {"kind": "file", "file_id": f.file_id, "path": f.path, "size": f.size,
                "adler32": f.adler32, "sha256": f.sha256, "owner": f.owner, "created": f.created,
                "modified": f.modified, "seq": f.seq, "at_seq": at_seq,
                "meta": prod.to_json() if prod else None}

    def _finish_write(self, d: Drive, op: Op, now: float) -> None:
        if d.failed:
            d.tape, d.head = None, 0
            log.warning("drive %s failed during migration; will retry", d.drive_id)
            return
        pool = self.library.tapes[op.tape].pool
        logs = {r.seq: r for r in self.catalog.pending_log()}
        written_logs = []
        for seq in op.log_seqs:
            r = logs.get(seq)
            if r:
                self.library.append(op.tape, {"kind": r.kind, "path": r.path, "target": r.target,
                                              "seq": r.seq, "at": r.at, "owner": r.owner,
                                              "size": 0}, None)
                written_logs.append(seq)
        for f, copy_no in op.files:
            with self.catalog.tx():  # the path and its event number, read together
                current = self.catalog.get_file_by_id(f.file_id)
                at_seq = self.catalog.next_seq() if current else 0
            src = self.disk_path(f.file_id)
            if current is None or not src.exists():
                continue  # deleted meanwhile
            try:
                fseq, offset, rsize = self.library.append(op.tape, self._header(current, at_seq),
                                                          src)
            except ChecksumError as err:
                log.error("not migrated: %s", err)
                continue
            self.catalog.add_tape_replica(TapeReplica(f.file_id, copy_no, pool, op.tape, fseq,
                                                      offset // 262144, offset, rsize))
            self.metrics.tape_bytes_written += f.size
            self.metrics.tape_files_written += 1
        self._dirty()
        cart = self.library.tapes[op.tape]
        d.head = cart.used
        # a log record is done once every pool has it (each pool writes it in its own op)
        everywhere = set(self.library.pools)
        done = []
        for seq in written_logs:
            held = self._log_pools.setdefault(seq, set())
            held.add(pool)
            if held >= everywhere:
                done.append(seq)
                del self._log_pools[seq]
        if done:
            self.catalog.drop_log(done)

    # -- housekeeping --------------------------------------------------------------------------
    def _housekeeping_period(self) -> float:
        """Archive seconds between housekeeping passes (5 s of wall time)."""
        return getattr(self.clock, "speed", 12.0) * 5.0

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_rescan:  # not when a PUT forced it: that file is in the cache
            self._invalidate_candidates()  # other processes (CLI) may have changed the catalog
            self._next_rescan = now + self._housekeeping_period()
        if now >= self._next_access_flush:  # not at every forced (PUT) housekeeping
            self.flush_access_times()
            self._next_access_flush = now + self._housekeeping_period()
        self.catalog.expire_pins(now)
        self.evict(now)

    def evict(self, now: float | None = None) -> list[str]:
        now = self.clock.now() if now is None else now
        c = self.cfg.cache
        used = self.catalog.disk_usage()
        if used > c.high_watermark * c.capacity_bytes:
            self._draining = True
        if not self._draining or used <= c.low_watermark * c.capacity_bytes:
            self._draining = False
            return []
        self.flush_access_times()  # least recently used: by every access noted so far
        replicas = self.catalog.disk_replicas()
        counts = self.catalog.tape_copy_counts()
        on_tape = {fid for fid, n in counts.items() if n >= self.cfg.tape.copies}
        plan = plan_eviction(replicas, self.catalog.pins(now), on_tape, c.capacity_bytes,
                             c.low_watermark, c.low_watermark, now)  # draining: down to low
        if plan.used_after <= c.low_watermark * c.capacity_bytes:
            self._draining = False
        sizes = {r.file_id: r.size for r in replicas}
        for fid in plan.evict:
            self.catalog.remove_disk_replica(fid)
            with contextlib.suppress(FileNotFoundError):
                self.disk_path(fid).unlink()
            self.metrics.evicted_files += 1
            self.metrics.evicted_bytes += sizes[fid]
        if plan.evict:
            log.info("evicted %d files (%d -> %d bytes)", len(plan.evict), plan.used_before,
                     plan.used_after)
        return plan.evict

    def migrate_now(self) -> int:
        """Start writing every file that waits for tape now, whatever its age or the batch
        size (admin: ``archive migrate``); returns how many files wait."""
        with self.lock:
            self._invalidate_candidates()
            n = len(self._migration_candidates())
            self._force_migration = True
        self.wake()
        return n

    def evict_path(self, path: str) -> bool:
        """Drop the disk copy of one file now, if it is safely on tape and not pinned (admin,
        demo and tests: makes a file NEARLINE without filling the cache)."""
        f = self.stat(path)
        if len(self.catalog.tape_replicas(f.file_id)) < self.cfg.tape.copies:
            return False
        if self.catalog.pins(self.clock.now()).get(f.file_id):
            return False
        self.catalog.remove_disk_replica(f.file_id)
        with contextlib.suppress(FileNotFoundError):
            self.disk_path(f.file_id).unlink()
        self.metrics.evicted_files += 1
        self.metrics.evicted_bytes += f.size
        return True

    def drive_report(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        out = []
        for d in self.library.drives:
            op = d.op
            out.append({"drive": d.drive_id, "mounted": d.tape, "failed": d.failed,
                        "state": "failed" if d.failed else ("busy" if op else "idle"),
                        "operation": op.kind if op else None,
                        "seconds_left": max(0.0, op.end - now) if op else 0.0,
                        "queued_reads": len(d.batch), "mounts": d.mounts})
        return out

    def tape_report(self) -> list[dict[str, Any]]:
        mounted = {d.tape: d.drive_id for d in self.library.drives if d.tape}
        return [{"tape": c.tape, "pool": c.pool, "records": c.records, "used_bytes": c.used,
                 "capacity_bytes": c.capacity, "full": c.full, "drive": mounted.get(c.tape)}
                for c in sorted(self.library.tapes.values(), key=lambda c: c.tape)]
