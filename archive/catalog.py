"""The catalog-store seam: what the archive needs from a catalog database, and its value types.

Why a seam: SQLite (WAL) is the embedded default and PostgreSQL serves when the catalog outgrows
one machine; the engine, the server and the CLI depend only on :class:`CatalogStore`. Both
backends share one SQL implementation (``catalog_sql``); a new backend is one new file that
supplies connections and a dialect.

Contract: every method is safe to call from any thread; a method that changes several rows does
so in one transaction; paths are normalised absolute logical paths (``/a/b``, see ``paths``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class FileEntry:
    file_id: str
    path: str
    size: int
    adler32: str
    sha256: str
    owner: str
    created: float
    modified: float
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DirEntry:
    path: str
    owner: str
    created: float


@dataclass
class TapeReplica:
    file_id: str
    copy_no: int
    pool: str
    tape: str
    fseq: int  # file sequence number on the cartridge (0-based)
    block: int  # block position of the record (for locate distance)
    offset: int  # byte offset of the record in the cartridge file
    record_size: int  # bytes of header + data


@dataclass
class DiskReplica:
    file_id: str
    size: int
    created: float
    last_access: float


@dataclass
class Product:
    """Searchable metadata of one file (from FITS headers on ingest, or supplied)."""

    file_id: str
    telescope: str | None = None
    instrument: str | None = None
    object: str | None = None
    ra: float | None = None
    dec: float | None = None
    date_obs: str | None = None
    t_obs: float | None = None  # date_obs as Unix seconds, for range queries
    exptime: float | None = None
    project: str | None = None
    observation: str | None = None
    product_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("file_id")
        return {k: v for k, v in d.items() if v not in (None, {})}


@dataclass
class StageFile:
    request_id: str
    path: str
    file_id: str | None
    state: str  # SUBMITTED, STARTED, COMPLETED, FAILED, CANCELLED
    error: str | None = None
    lifetime: float = 0.0  # pin lifetime in seconds
    finished: float | None = None


@dataclass
class StageRequest:
    request_id: str
    owner: str
    created: float
    started: float | None = None
    completed: float | None = None
    files: list[StageFile] = field(default_factory=list)


@dataclass
class Recall:
    file_id: str
    requested: float
    bad_tapes: list[str] = field(default_factory=list)
    attempts: int = 0
    state: str = "queued"  # queued | active | lost


@dataclass
class SearchQuery:
    path_prefix: str = "/"
    project: str | None = None
    observation: str | None = None
    instrument: str | None = None
    telescope: str | None = None
    object: str | None = None
    product_type: str | None = None
    time_min: float | None = None
    time_max: float | None = None
    ra: float | None = None
    dec: float | None = None
    radius: float | None = None  # degrees
    limit: int = 100
    after: str = ""  # paging: paths greater than this


@dataclass
class LogRecord:
    """A namespace change that tapes must carry so ``catalog rebuild`` can replay it."""

    seq: int
    kind: str  # mkdir | rmdir | delete | move
    path: str
    target: str = ""
    at: float = 0.0
    owner: str = ""


class CatalogStore(Protocol):
    backend: str

    def close(self) -> None: ...
    def next_seq(self, count: int = 1) -> int: ...

    # namespace
    def get_file(self, path: str) -> FileEntry | None: ...
    def get_file_by_id(self, file_id: str) -> FileEntry | None: ...
    def get_dir(self, path: str) -> DirEntry | None: ...
    def make_dirs(self, path: str, owner: str, now: float, log: bool = True) -> None: ...
    def remove_dir(self, path: str, now: float) -> None: ...
    def list_dir(self, path: str) -> tuple[list[DirEntry], list[FileEntry]]: ...
    def commit_file(self, entry: FileEntry, disk: bool, product: Product | None) -> str | None: ...
    def delete_file(self, path: str, now: float) -> FileEntry | None: ...
    def move(self, src: str, dst: str, now: float) -> None: ...
    def bulk_insert(self, entries: Iterable[tuple[FileEntry, Product | None]]) -> int: ...
    def all_file_ids(self) -> set[str]: ...
    def count_files(self) -> int: ...

    # replicas
    def disk_replica(self, file_id: str) -> DiskReplica | None: ...
    def disk_replicas(self) -> list[DiskReplica]: ...
    def add_disk_replica(self, file_id: str, size: int, now: float) -> None: ...
    def remove_disk_replica(self, file_id: str) -> None: ...
    def touch_disk(self, file_id: str, now: float) -> None: ...
    def touch_disk_many(self, accessed: Iterable[tuple[str, float]]) -> None: ...
    def replica_flags(self, parent: str | None = None,
                      file_id: str | None = None) -> dict[str, tuple[bool, bool]]: ...
    def listing_props(self, path: str) -> dict[str, dict[tuple[str, str], str]]: ...
    def tape_replicas(self, file_id: str) -> list[TapeReplica]: ...
    def add_tape_replica(self, rep: TapeReplica) -> None: ...
    def migration_candidates(self, copies: int) -> list[tuple[FileEntry, list[int]]]: ...
    def pending_log(self) -> list[LogRecord]: ...
    def drop_log(self, seqs: list[int]) -> None: ...

    # products and search
    def get_product(self, file_id: str) -> Product | None: ...
    def set_product(self, file_id: str, product: Product) -> None: ...
    def search(self, q: SearchQuery) -> list[tuple[FileEntry, Product | None]]: ...

    # staging, recalls, pins
    def create_stage_request(self, req: StageRequest) -> None: ...
    def get_stage_request(self, request_id: str) -> StageRequest | None: ...
    def update_stage_files(self, request_id: str | None, file_id: str | None, state: str,
                           error: str | None, now: float, paths: list[str] | None = None,
                           only_states: tuple[str, ...] = ()) -> list[StageFile]: ...
    def set_request_times(self, request_id: str, started: float | None,
                          completed: float | None) -> None: ...
    def delete_stage_request(self, request_id: str) -> None: ...
    def open_stage_files(self) -> list[StageFile]: ...
    def enqueue_recall(self, file_id: str, now: float) -> None: ...
    def recalls(self, states: tuple[str, ...] = ("queued", "active")) -> list[Recall]: ...
    def get_recall(self, file_id: str) -> Recall | None: ...
    def update_recall(self, rec: Recall) -> None: ...
    def drop_recall(self, file_id: str) -> None: ...
    def add_pin(self, file_id: str, request_id: str, expires: float) -> None: ...
    def release_pins(self, request_id: str | None, file_ids: list[str] | None) -> int: ...
    def pins(self, now: float) -> dict[str, float]: ...
    def expire_pins(self, now: float) -> int: ...
    def stats(self) -> dict[str, float]: ...
    def iter_files(self) -> Iterator[FileEntry]: ...
    def tape_copy_counts(self) -> dict[str, int]: ...
    def analyze(self) -> None: ...
    def disk_usage(self) -> int: ...
    def bulk_load(self) -> contextlib.AbstractContextManager[None]: ...
    def queued_recall_copies(self) -> dict[str, list[TapeReplica]]: ...
    def bump_seq(self, at_least: int) -> None: ...
    def recall_started(self, file_ids: list[str], now: float) -> None: ...
    def finish_requests(self, request_ids: set[str], now: float) -> None: ...
    def open_stage_count(self, file_id: str) -> int: ...
