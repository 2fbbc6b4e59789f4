"""Local files (``file:///path`` or a bare path) behind the transfer seam.

Used for the local end of every get/put and for copies between local directories. The storage
"reports" a checksum by reading the file, which is what a disk is expected to do.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from appliance.transfer.base import Progress, RemoteStat
from appliance.transfer.checksum import BLOCK, file_checksum, new_digester
from appliance.transfer.credentials import Credentials
from appliance.transfer.errors import NotFound, PermissionDenied, TransferError


def local_path(url: str) -> Path:
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise TransferError(url, "file URLs must name a local path (file:///path)")
        return Path(unquote(parts.path))
    return Path(url)


def _os_error(url: str, err: OSError) -> TransferError:
    if err.errno == errno.ENOENT:
        return NotFound(url)
    if err.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(url)
    return TransferError(url, err.strerror or str(err), transient=err.errno in (errno.EAGAIN, errno.EINTR))


class LocalBackend:
    name = "local"
    schemes = frozenset({"file", ""})
    supports_resume = True

    def __init__(self, credentials: Credentials | None = None):
        self.credentials = credentials

    def stat(self, url: str) -> RemoteStat:
        try:
            st = local_path(url).stat()
        except OSError as err:
            raise _os_error(url, err) from err
        return RemoteStat(url, st.st_size, os.path.isdir(local_path(url)), st.st_mtime)

    def checksum(self, url: str, algorithm: str) -> str | None:
        try:
            return file_checksum(local_path(url), algorithm)
        except OSError as err:
            raise _os_error(url, err) from err

    def download(self, url: str, dest: Path, offset: int, progress: Progress,
                 algorithms: Iterable[str] = (), writeback: bool = True) -> dict[str, str]:
        digesters = {a: new_digester(a) for a in algorithms}
        try:
            with open(local_path(url), "rb") as src, open(dest, "r+b" if offset else "wb") as out:
                if offset and digesters:
                    while chunk := out.read(BLOCK):
                        for d in digesters.values():
                            d.update(chunk)
                out.seek(offset)
                out.truncate()
                src.seek(offset)
                while chunk := src.read(BLOCK):
                    out.write(chunk)
                    for d in digesters.values():
                        d.update(chunk)
                    progress(len(chunk))
        except OSError as err:
            raise _os_error(url, err) from err
        return {a: d.hexdigest() for a, d in digesters.items()}

    def upload(self, src: Path, url: str, progress: Progress) -> None:
        target = local_path(url)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(src, "rb") as f, open(target, "wb") as out:
                while chunk := f.read(BLOCK):
                    out.write(chunk)
                    progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except OSError as err:
            raise _os_error(url, err) from err

    def rename(self, src_url: str, dst_url: str) -> None:
        try:
            os.replace(local_path(src_url), local_path(dst_url))
        except OSError as err:
            raise _os_error(src_url, err) from err

    def delete(self, url: str) -> None:
        try:
            local_path(url).unlink()
        except OSError as err:
            raise _os_error(url, err) from err

    def mkdir(self, url: str) -> None:
        try:
            local_path(url).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _os_error(url, err) from err

    def listdir(self, url: str) -> list[RemoteStat]:
        base = local_path(url)
        try:
            entries = sorted(base.iterdir())
        except OSError as err:
            raise _os_error(url, err) from err
        out = []
        for p in entries:
            st = p.stat()
            out.append(RemoteStat(p.as_uri(), st.st_size, p.is_dir(), st.st_mtime))
        return out
