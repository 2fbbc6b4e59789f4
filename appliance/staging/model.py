"""WLCG Tape REST API v1 answers as values (pure: JSON in, objects out, no I/O).

A file in a stage request is read as gfal2 reads it: an ``error`` key means failed; else
``onDisk`` true means ready; else ``state`` (SUBMITTED/STARTED wait, COMPLETED ready,
FAILED/CANCELLED terminal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

WAITING = ("SUBMITTED", "STARTED")
_HTTP = {"davs": "https", "https": "https", "dav": "http", "http": "http"}


def server_root(url: str) -> str:
    """``davs://host:8443/a/b`` -> ``https://host:8443`` (where discovery lives)."""
    parts = urlsplit(url)
    if parts.scheme not in _HTTP:
        raise ValueError(f"{url}: no WLCG Tape REST API over {parts.scheme}://")
    return urlunsplit((_HTTP[parts.scheme], parts.netloc, "", "", ""))


def path_of(url: str) -> str:
    return urlsplit(url).path or "/"


@dataclass(frozen=True)
class FileStage:
    path: str
    state: str  # SUBMITTED | STARTED | COMPLETED | FAILED | CANCELLED | UNKNOWN
    error: str | None = None

    @property
    def online(self) -> bool:
        return self.state == "COMPLETED"

    @property
    def finished(self) -> bool:
        return self.state not in WAITING

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> FileStage:
        path = str(item.get("path", ""))
        if "error" in item and item["error"] is not None:
            return cls(path, "FAILED", str(item["error"]))
        if item.get("onDisk") is True:
            return cls(path, "COMPLETED")
        state = str(item.get("state") or ("SUBMITTED" if item.get("onDisk") is False else "UNKNOWN"))
        state = {"CANCELED": "CANCELLED"}.get(state.upper(), state.upper())
        return cls(path, state, "unknown state" if state == "UNKNOWN" else None)

    def to_json(self) -> dict:
        return {"path": self.path, "state": self.state, "error": self.error}


@dataclass(frozen=True)
class StageStatus:
    request_id: str
    files: tuple[FileStage, ...] = ()
    created_at: Any = None
    started_at: Any = None
    completed_at: Any = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> StageStatus:
        return cls(str(body.get("id", "")), tuple(FileStage.from_json(f) for f in body.get("files", [])),
                   body.get("createdAt"), body.get("startedAt"), body.get("completedAt"))

    @property
    def done(self) -> bool:
        return all(f.finished for f in self.files)

    @property
    def ok(self) -> bool:
        return self.done and all(f.online for f in self.files)

    @property
    def online(self) -> list[str]:
        return [f.path for f in self.files if f.online]

    @property
    def failed(self) -> list[FileStage]:
        return [f for f in self.files if f.finished and not f.online]

    def report(self) -> str:
        counts: dict[str, int] = {}
        for f in self.files:
            counts[f.state] = counts.get(f.state, 0) + 1
        summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        lines = [f"request {self.request_id}: {summary or 'no files'}"]
        lines += [f"  {f.state:<10} {f.path}" + (f"  ({f.error})" if f.error else "") for f in self.files]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"id": self.request_id, "ok": self.ok, "done": self.done,
                "createdAt": self.created_at, "startedAt": self.started_at,
                "completedAt": self.completed_at, "files": [f.to_json() for f in self.files]}


@dataclass(frozen=True)
class ArchiveInfo:
    path: str
    locality: str | None = None  # DISK | TAPE | DISK_AND_TAPE | LOST | NONE | UNAVAILABLE
    error: str | None = None

    @property
    def online(self) -> bool:
        return self.locality in ("DISK", "DISK_AND_TAPE")

    @property
    def needs_stage(self) -> bool:
        return self.locality == "TAPE"

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> ArchiveInfo:
        return cls(str(item.get("path", "")), item.get("locality"), item.get("error"))

    def to_json(self) -> dict:
        return {"path": self.path, "locality": self.locality, "error": self.error}


@dataclass
class Backoff:
    """Poll intervals: start short (a file may already be on disk), grow to ``maximum``."""

    initial: float = 0.5
    factor: float = 1.5
    maximum: float = 30.0
    current: float = field(default=0.0, init=False)

    def next(self) -> float:
        self.current = self.initial if self.current == 0 else min(self.current * self.factor, self.maximum)
        return self.current
