"""The staging service: WLCG Tape REST stage requests (stage, status, cancel, release, delete).

A stage request is catalog rows only: its files, the recalls it queued and the pins it holds.
The tape loop does the recalls and completes the files; this service creates, cancels and
releases, each change one catalog transaction.

Concurrency: see ``archive.engine`` (the one rule). Request threads call these methods
concurrently; they touch no engine state (only the catalog) and never take the engine's lock.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable

from archive.cache import parse_duration
from archive.catalog import CatalogStore, StageFile, StageRequest
from archive.clock import Clock
from archive.config import ArchiveConfig
from archive.errors import BadPath, BadRequest, NotFound
from archive.paths import normalize
from archive.tapeloop import OPEN_STATES


class StagingService:
    """Stage requests over the catalog; ``wake`` tells the tape loop there is work."""

    def __init__(self, cfg: ArchiveConfig, catalog: CatalogStore, clock: Clock,
                 wake: Callable[[], None]):
        self.cfg = cfg
        self.catalog = catalog
        self.clock = clock
        self.wake = wake

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
        with self.catalog.tx():  # cancel, unpin and forget together (the transactions nest)
            if open_paths:
                self.cancel(rid, open_paths)
            self.catalog.release_pins(rid, None)
            self.catalog.delete_stage_request(rid)
