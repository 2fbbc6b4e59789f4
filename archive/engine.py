"""The archive: one facade over its parts, and the one concurrency rule they follow.

``Archive`` keeps the public methods and attributes every caller uses (server, HTTP handlers,
admin, CLI, rebuild, metrics, tests) and delegates to the parts:

- ``archive.namespace.NamespaceService``: files and collections, uploads, reads, locality;
- ``archive.staging.StagingService``: WLCG Tape REST stage requests;
- ``archive.tapeloop.TapeLoop``: the event loop (drives, migration, recalls, pins, eviction);
- the pure domain (``scheduler``, ``cache``, ``paths``), the catalog store (``catalog*``) and
  the tape library (``tape``) underneath.

The concurrency rule (one for every part). Request threads (HTTP, one per connection) call the
namespace and staging methods concurrently; one engine thread runs ``TapeLoop.step``; admin calls
(migrate, evict, fault injection) come from either.

1. The catalog is the shared state. A change that must be seen whole (a stage request with its
   recalls and pins, a recall's completion with its replica, pins and request states) is one
   ``catalog.tx()``; transactions nest, so a service may compose them.
2. The engine state (drives, their operations and batches, the per-pool log records, the
   watermark hysteresis, the migrate-now flag, the housekeeping times) belongs to ``TapeLoop``
   and changes only under ``Archive.lock`` (= ``TapeLoop.lock``): ``step``, fault injection,
   ``migrate_now``, ``evict`` and ``evict_path`` take it. Request threads never take it, so an
   upload, a read or a stage request never waits for tape I/O; the engine thread does the
   (simulated) drives' file I/O under it, because a drive operation in progress is engine state.
3. What request threads share with the engine is behind small locks held for in-memory updates
   only, never across file I/O or a catalog call: the migration-candidate cache and the
   "housekeeping soon" flag (``TapeLoop._cand_lock``), the batched GET access times
   (``NamespaceService._accessed_lock``), the counters (``Metrics.add``).
4. Files on disk are keyed by file id; a request thread's file I/O (upload, copy, unlink) runs
   under no lock and is ordered against the engine by the catalog: a file deleted while it was
   recalled or migrated is skipped by the engine in the transaction that would have recorded it.

Reading engine state without the lock (``drive_report``, metrics) is allowed: each value read is a
snapshot of one attribute, never a half-done change.

Durability: uploads go to ``disk/.tmp``, are checksummed on the fly, fsynced and renamed before
the catalog commit; on start-up, anything on disk the catalog does not know is an orphan of a
crash and is removed, and catalog rows whose disk file vanished are dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from archive.catalog import CatalogStore, FileEntry, Product, StageRequest
from archive.catalogs import open_catalog
from archive.clock import Clock, RealClock, SimClock
from archive.config import ArchiveConfig
from archive.namespace import NamespaceService
from archive.scheduler import Plan
from archive.sink import ReadInto
from archive.staging import StagingService
from archive.tape import TapeLibrary
from archive.tapeloop import OPEN_STATES, Metrics, Op, TapeLoop

__all__ = ["OPEN_STATES", "Archive", "Metrics", "Op", "make_clock"]
log = logging.getLogger(__name__)



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


class Archive:
    """One archive instance. Thread-safe: HTTP threads call the public methods concurrently
    (the rule is in this module's docstring)."""

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
        self.exclusive = exclusive
        self.tapeloop = TapeLoop(cfg, self.clock, self.catalog, self.library, self.disk_dir,
                                 self.tmp_dir, self.metrics, lambda: self.flush_access_times())
        self.namespace = NamespaceService(self.catalog, self.clock, self.tapeloop, exclusive)
        self.staging = StagingService(cfg, self.catalog, self.clock, self.tapeloop.wake)
        #: the engine's lock (see the rule): the tape loop's state changes only under it
        self.lock = self.tapeloop.lock
        if exclusive:
            self.recover()

    @property
    def recall_policy(self) -> Callable[..., Plan]:
        """The recall scheduling policy (pure); benchmarks swap in ``scheduler.plan_fifo``."""
        return self.tapeloop.recall_policy

    @recall_policy.setter
    def recall_policy(self, policy: Callable[..., Plan]) -> None:
        self.tapeloop.recall_policy = policy

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
        self.tapeloop.start()

    def stop(self) -> None:
        self.tapeloop.stop()

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
        self.tapeloop.wake()

    def step(self) -> float | None:
        """Do everything due at the current time; return the time of the next event (or None)."""
        return self.tapeloop.step()

    def run_until(self, when: float) -> None:
        """Simulated clock: process every event up to ``when``, jumping between events."""
        self.tapeloop.run_until(when)

    def run_for(self, seconds: float) -> None:
        self.tapeloop.run_for(seconds)

    def run_until_idle(self, limit: float = 30 * 86400) -> float:
        """Simulated clock: run until no drive is busy and no recall waits; returns the time."""
        return self.tapeloop.run_until_idle(limit)

    # -- namespace (archive.namespace) ---------------------------------------------------------
    def disk_path(self, file_id: str) -> Path:
        return self.tapeloop.disk_path(file_id)

    def put_stream(self, path: str, stream: ReadInto | Callable[[int], bytes],
                   length: int | None, owner: str,
                   digests: dict[str, str] | None = None,
                   product: Product | None = None) -> FileEntry:
        """Store a file from a stream (see :meth:`NamespaceService.put_stream`)."""
        return self.namespace.put_stream(path, stream, length, owner, digests, product)

    def ingest_local(self, src: str | os.PathLike[str], path: str, owner: str,
                     follow_symlinks: bool = False) -> FileEntry:
        return self.namespace.ingest_local(src, path, owner, follow_symlinks)

    def stat(self, path: str) -> FileEntry:
        return self.namespace.stat(path)

    def open_for_read(self, path: str) -> tuple[FileEntry, Path]:
        """The disk copy of ``path``; NearlineOnly if it is only on tape (never blocks)."""
        return self.namespace.open_for_read(path)

    def flush_access_times(self) -> int:
        """Write the batched last-access times to the catalog; returns how many files."""
        return self.namespace.flush_access_times()

    def delete(self, path: str) -> None:
        self.namespace.delete(path)

    def mkdir(self, path: str, owner: str, parents: bool = False) -> None:
        self.namespace.mkdir(path, owner, parents)

    def copy(self, src: str, dst: str, owner: str, depth_infinity: bool = True) -> None:
        """WebDAV COPY inside the archive (see :meth:`NamespaceService.copy`)."""
        self.namespace.copy(src, dst, owner, depth_infinity)

    def move(self, src: str, dst: str) -> None:
        self.namespace.move(src, dst)

    def locality(self, path: str) -> str:
        """WLCG Tape REST locality: DISK, TAPE, DISK_AND_TAPE, LOST, NONE or UNAVAILABLE."""
        return self.namespace.locality(path)

    # -- staging (archive.staging) -------------------------------------------------------------
    def pin_lifetime(self, text: str | None) -> float:
        return self.staging.pin_lifetime(text)

    def stage(self, files: Iterable[tuple[str, str | None]], owner: str) -> str:
        """Create a stage request for ``(path, diskLifetime)`` items; returns the request id."""
        return self.staging.stage(files, owner)

    def stage_status(self, rid: str) -> StageRequest:
        return self.staging.stage_status(rid)

    def cancel(self, rid: str, paths: list[str]) -> None:
        self.staging.cancel(rid, paths)

    def release(self, rid: str, paths: list[str] | None) -> int:
        """Drop pins of request ``rid`` (only ``paths`` if given); unknown ids release by path."""
        return self.staging.release(rid, paths)

    def delete_request(self, rid: str) -> None:
        self.staging.delete_request(rid)

    # -- engine, fault injection and admin (archive.tapeloop) ----------------------------------
    def fail_drive(self, drive_id: str) -> None:
        self.tapeloop.fail_drive(drive_id)

    def repair_drive(self, drive_id: str) -> None:
        self.tapeloop.repair_drive(drive_id)

    def _migration_candidates(self) -> list[tuple[FileEntry, list[int]]]:
        return self.tapeloop._migration_candidates()

    def _migration_pending(self) -> bool:
        return self.tapeloop._migration_pending()

    def evict(self, now: float | None = None) -> list[str]:
        return self.tapeloop.evict(now)

    def migrate_now(self) -> int:
        """Start writing every file that waits for tape now (admin: ``archive migrate``)."""
        return self.tapeloop.migrate_now()

    def evict_path(self, path: str) -> bool:
        """Drop the disk copy of one file now, if it is safely on tape and not pinned (admin,
        demo and tests: makes a file NEARLINE without filling the cache)."""
        return self.tapeloop.evict_file(self.stat(path))

    def drive_report(self) -> list[dict[str, Any]]:
        return self.tapeloop.drive_report()

    def tape_report(self) -> list[dict[str, Any]]:
        return self.tapeloop.tape_report()
