"""The run record (provenance: everything needed to replay) and the run store that keeps them.

Layout under the appliance home: ``runs/<run_id>/record.json`` (+ ``log.txt``), ``cache/<key>``
(the run that produced a cache key), and the content-addressed ``store/``. Records are written
atomically; a failed run still gets its record (state ``failed``, with the error). The format
is documented in docs/RUN-RECORD.md.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.errors import RunNotFound
from appliance.fsutil import atomic_write_json

SCHEMA = "appliance-run-record/1"


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id(recipe_name: str) -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{recipe_name}-{secrets.token_hex(3)}"


@dataclass
class FileEntry:
    name: str  # mount name (inputs) or path under /output (outputs)
    sha256: str
    size: int
    uri: str | None = None
    compare: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    run_id: str
    state: str  # running | succeeded | failed
    recipe: dict[str, Any]  # name, directory, definition (recipe.yaml content), code hashes
    lock: dict[str, Any]
    image: dict[str, Any]  # ref, image_id, diff_ids
    runtime: dict[str, Any]
    host: dict[str, Any]
    container: dict[str, Any]  # command, env, user, network, read_only_root, limits
    cache_key: str
    inputs: list[FileEntry]
    outputs: list[FileEntry] = field(default_factory=list)
    started_at: str = field(default_factory=utcnow)
    finished_at: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    error: str | None = None
    replay_of: str | None = None
    verdict: dict[str, Any] | None = None
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        data = dict(data)
        data["inputs"] = [FileEntry(**i) for i in data.get("inputs", [])]
        data["outputs"] = [FileEntry(**o) for o in data.get("outputs", [])]
        return cls(**data)


class RunStore:
    def __init__(self, home: Path):
        self.runs = home / "runs"
        self.cache = home / "cache"
        self.runs.mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(parents=True, exist_ok=True)

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def save(self, record: RunRecord) -> Path:
        path = self.run_dir(record.run_id) / "record.json"
        atomic_write_json(path, record.to_dict())
        return path

    def load(self, run_id: str) -> RunRecord:
        path = self.run_dir(run_id) / "record.json"
        if "/" in run_id or not path.is_file():
            matches = [p.name for p in self.runs.iterdir() if p.name.startswith(run_id)] if "/" not in run_id else []
            if len(matches) == 1:
                path = self.run_dir(matches[0]) / "record.json"
            else:
                hint = f" (ambiguous: {matches[:5]})" if matches else ""
                raise RunNotFound(f"no run '{run_id}' in {self.runs}{hint}; see `appliance runs list`")
        return RunRecord.from_dict(json.loads(path.read_text()))

    def list(self) -> list[RunRecord]:
        out = []
        for d in sorted(self.runs.iterdir()):
            f = d / "record.json"
            if f.is_file():
                out.append(RunRecord.from_dict(json.loads(f.read_text())))
        return out

    def cached_run(self, key: str) -> str | None:
        f = self.cache / key
        return json.loads(f.read_text())["run_id"] if f.is_file() else None

    def remember(self, key: str, run_id: str) -> None:
        atomic_write_json(self.cache / key, {"run_id": run_id})

    def forget(self, key: str) -> None:
        (self.cache / key).unlink(missing_ok=True)
