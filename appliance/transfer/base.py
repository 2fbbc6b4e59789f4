"""The transfer seam: what a backend must do, on plain values, and nothing more.

A backend speaks one family of protocols (gfal2, plain HTTP/WebDAV, local files). Everything every
copy needs (checksums compared end to end, retries, temporary names, parallelism, progress) lives
in ``engine.Copier``, which depends on this protocol only; a new protocol is one new file.

Contract of ``TransferBackend``:

* URLs are absolute (``scheme://host:port/path``; ``file:///path`` for local files). A backend
  is constructed with a ``Credentials`` value and uses nothing else to authenticate.
* Errors are ``appliance.transfer.errors`` types carrying the URL: ``NotFound``,
  ``PermissionDenied``, or ``TransferError(transient=...)``. ``transient`` must be True only
  when trying again can help (connection refused or reset, timeout, 5xx, server busy).
* ``stat(url)`` -> ``RemoteStat``.
* ``checksum(url, algorithm)`` -> the checksum the *storage* reports (lowercase hex, adler32 as 8
  digits) or ``None`` when it cannot tell; it must not download the file to compute one.
* ``download(url, dest, offset, progress, algorithms)``: write bytes ``[offset:]`` of ``url`` into
  the local file ``dest`` (``offset > 0`` only when ``supports_resume``; then ``dest`` already
  holds exactly ``offset`` bytes and is appended to). ``progress(n)`` is called with byte counts
  as they arrive. Returns the checksums of the *whole* ``dest`` for the requested ``algorithms``
  when the backend computed them while streaming, else an empty dict (the engine then reads the
  file). ``dest`` is always a temporary name chosen by the engine.
* ``upload(src, url, progress)``: write the local file ``src`` to ``url`` (a temporary name chosen
  by the engine), overwriting it; create missing parent collections.
* ``rename(src_url, dst_url)`` (overwrite), ``delete(url)`` (file), ``mkdir(url)`` (with
  parents, no error if it exists), ``listdir(url)`` -> ``list[RemoteStat]``.
* Thread safety: the engine calls one backend object from several threads at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

GRIDFTP_SCHEMES = frozenset({"gsiftp", "ftp"})

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RemoteStat:
    url: str
    size: int
    is_dir: bool = False
    mtime: float | None = None

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def to_json(self) -> dict:
        return {**asdict(self), "name": self.name}


class TransferBackend(Protocol):
    name: str
    schemes: frozenset[str]
    supports_resume: bool

    def stat(self, url: str) -> RemoteStat: ...

    def checksum(self, url: str, algorithm: str) -> str | None: ...

    def download(
        self, url: str, dest: Path, offset: int, progress: Progress, algorithms: Iterable[str] = (),
        writeback: bool = True,
    ) -> dict[str, str]:
        """Fetch ``url`` into ``dest`` from byte ``offset``; return the checksums of ``algorithms``
        computed on the way (empty when the backend could not). ``writeback`` starts writing
        the file to disk as it arrives (the caller will fsync it); off, the bytes stay in the
        page cache and no CPU is spent on early writeback."""
        ...

    def upload(self, src: Path, url: str, progress: Progress) -> None: ...

    def rename(self, src_url: str, dst_url: str) -> None: ...

    def delete(self, url: str) -> None: ...

    def mkdir(self, url: str) -> None: ...

    def listdir(self, url: str) -> list[RemoteStat]: ...
