"""The tape loop: the engine's event loop over the simulated tape library.

Everything that takes time on a real tape system is an *operation* on a drive that ends at a clock
time; :meth:`TapeLoop.step` completes due operations (doing the actual file I/O then), starts
migrations and recalls, expires pins and evicts, and returns the time of the next event. With a
simulated clock, :meth:`run_until` jumps from event to event; with a real clock (optionally sped
up) :meth:`start` runs the same loop in a background thread. The decisions are pure functions
(``scheduler.plan_recalls``, ``cache.plan_eviction``); this module does the I/O they ask for.

Concurrency: see ``archive.engine`` (the one rule). This module owns the engine state and
changes it only under :attr:`TapeLoop.lock`.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archive.cache import plan_eviction
from archive.catalog import CatalogStore, FileEntry, TapeReplica
from archive.clock import Clock, SimClock
from archive.config import ArchiveConfig
from archive.errors import ChecksumError, TapeError
from archive.planning import migration_due_at, pool_work, write_drive
from archive.scheduler import CopyLoc, DriveState, QueuedRecall, Read, plan_recalls
from archive.tape import Drive, TapeLibrary

log = logging.getLogger("archive.engine")
OPEN_STATES = ("SUBMITTED", "STARTED")


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
    """Counters. Writers call :meth:`add` (request threads and the engine thread add to them
    at once; ``x += n`` from two threads can lose one of the additions); readers read fields."""

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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        """Add to named counters, all under one lock: ``metrics.add(mounts=1)``."""
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class TapeLoop:
    """Drives, migration, recalls, pins and eviction on a clock; the engine thread runs it."""

    def __init__(self, cfg: ArchiveConfig, clock: Clock, catalog: CatalogStore,
                 library: TapeLibrary, disk_dir: Path, tmp_dir: Path, metrics: Metrics,
                 flush_access_times: Callable[[], int]):
        self.cfg = cfg
        self.clock = clock
        self.catalog = catalog
        self.library = library
        self.disk_dir = disk_dir
        self.tmp_dir = tmp_dir
        self.metrics = metrics
        #: writes the namespace's batched GET access times (before eviction ranks files)
        self.flush_access_times = flush_access_times
        self.lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_housekeeping = 0.0  # engine thread only (under lock)
        #: set by request threads (under _cand_lock) when disk usage changed: the next step does
        #: the housekeeping (watermark check) at once, whatever _next_housekeeping says
        self._housekeeping_soon = False
        #: the recall scheduling policy (pure); benchmarks swap in ``scheduler.plan_fifo``
        self.recall_policy = plan_recalls
        self._candidates: list[tuple[FileEntry, list[int]]] | None = None
        #: guards _candidates, _cand_gen and _housekeeping_soon (request threads change them)
        self._cand_lock = threading.Lock()
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
        self._next_access_flush = 0.0

    def disk_path(self, file_id: str) -> Path:
        return self.disk_dir / file_id[:2] / file_id

    # -- the thread --------------------------------------------------------------------------
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
            with self._cand_lock:
                soon, self._housekeeping_soon = self._housekeeping_soon, False
            if soon or now >= self._next_housekeeping:
                self._housekeeping(now)
                # every 5 s of wall time (real clock), every simulated minute (simulated clock)
                self._next_housekeeping = now + self._housekeeping_period()
            events = [d.op.end for d in self.library.drives if d.op]
            due = self._migration_due_at(now)
            if due is not None:
                events.append(max(due, now + 1e-3) if due > now else now + 1.0)
            with self._cand_lock:  # a PUT during this step: its housekeeping is due now
                events.append(now if self._housekeeping_soon else self._next_housekeeping)
            return min(events) if events else None

    def _complete_due(self, now: float) -> bool:
        progressed = False
        for d in self.library.drives:
            if d.op and d.op.end <= now:
                op, d.op = d.op, None
                self.metrics.add(drive_busy_seconds=op.end - op.start)
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
            self.metrics.add(mounts=1)
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
        self.metrics.add(recall_failures=1)

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
            self.metrics.add(recall_failures=1)
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
            self.metrics.add(recall_failures=1)
            log.warning("recall of %s from %s failed: %s", f.path, r.tape, err)
            d.head = r.offset
            return
        d.head = r.offset + r.size
        self.metrics.add(tape_bytes_read=f.size, tape_files_read=1)
        with self.catalog.tx():  # one transaction: a DELETE commits before it or after it
            gone = self.catalog.get_file_by_id(f.file_id) is None  # deleted while it was read
            self.catalog.drop_recall(f.file_id)
            rows = []
            if not gone:
                self.catalog.add_disk_replica(f.file_id, f.size, now)
                rows = self.catalog.update_stage_files(None, f.file_id, "COMPLETED", None, now,
                                                       only_states=OPEN_STATES)
                for sf in rows:
                    self.catalog.add_pin(f.file_id, sf.request_id, now + sf.lifetime)
            self.catalog.finish_requests({sf.request_id for sf in rows}, now)
        if gone:  # its namespace entry went first: the recalled copy goes too
            with contextlib.suppress(FileNotFoundError):
                final.unlink()

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
        with self._cand_lock:
            self._candidates = None
            self._cand_gen += 1
            self._housekeeping_soon = True  # disk usage changed: check the watermark soon

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
            elif any(f.file_id == entry.file_id for f, _ in self._candidates):
                pass  # a scan that ran after the commit listed it already (once is once on tape)
            else:
                new = list(self._candidates)
                bisect.insort(new, (entry, []), key=lambda c: c[0].modified)
                self._candidates = new
            self._housekeeping_soon = True  # disk usage changed: check the watermark soon

    def _migration_pending(self) -> bool:
        return bool(self._migration_candidates() or self.catalog.pending_log())

    def _migration_due_at(self, now: float) -> float | None:
        """When the next migration must start: now if a batch is full, else by age."""
        due = migration_due_at(self._migration_candidates(), self.catalog.pending_log(),
                               self.cfg.migration, now, self._force_migration)
        if due is None:  # nothing waits: a forced migration is done
            self._force_migration = False
        return due

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
            files, pool_logs = pool_work(cands, logs, copy_no, pool, self._log_pools)
            if not files and not pool_logs:
                continue
            size = sum(f.size for f, _ in files)
            cart = self.library.write_tape(pool, size + 4096 * (len(files) + len(pool_logs)))
            if cart.tape in busy_tapes:
                continue
            idle = [d for d in self.library.drives if d.idle]
            if not idle:
                break
            d = write_drive(idle, cart.tape)
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
            except FileNotFoundError:
                continue  # deleted during the copy (the next append drops the cut record)
            self.catalog.add_tape_replica(TapeReplica(f.file_id, copy_no, pool, op.tape, fseq,
                                                      offset // 262144, offset, rsize))
            self.metrics.add(tape_bytes_written=f.size, tape_files_written=1)
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
        """Evict down to the low watermark if usage passed the high one (hysteresis)."""
        with self.lock:  # _draining is engine state; admin and tests call this directly
            return self._evict(self.clock.now() if now is None else now)

    def _evict(self, now: float) -> list[str]:
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
            self.metrics.add(evicted_files=1, evicted_bytes=sizes[fid])
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

    def evict_file(self, f: FileEntry) -> bool:
        """Drop the disk copy of one file now, if it is safely on tape and not pinned (admin,
        demo and tests: makes a file NEARLINE without filling the cache)."""
        with self.lock:  # eviction is engine work: not between a migration's check and read
            return self._evict_file(f)

    def _evict_file(self, f: FileEntry) -> bool:
        if len(self.catalog.tape_replicas(f.file_id)) < self.cfg.tape.copies:
            return False
        if self.catalog.pins(self.clock.now()).get(f.file_id):
            return False
        self.catalog.remove_disk_replica(f.file_id)
        with contextlib.suppress(FileNotFoundError):
            self.disk_path(f.file_id).unlink()
        self.metrics.add(evicted_files=1, evicted_bytes=f.size)
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
