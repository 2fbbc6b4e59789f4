"""The local content-addressed store (CAS): every input and output, kept by its sha256.

Layout: ``<root>/objects/sha256/<2 hex>/<64 hex>``; objects are read-only (0444) and immutable.
Writes go to ``<root>/tmp`` first and are renamed into place only after the hash is known, so a
crash never leaves a wrong object under a hash name, and the same content is stored once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from appliance.errors import ChecksumMismatch
from appliance.fsutil import fsync_dir
from appliance.hashing import BLOCK


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    size: int
    path: Path


class _HashingWriter:
    """File-like sink that hashes as it writes (used by transfers streaming into the store)."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._f.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)


class ContentStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        (self.root / "objects" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        return self.root / "objects" / "sha256" / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def get(self, sha256: str) -> StoredObject:
        p = self.path_of(sha256)
        return StoredObject(sha256, p.stat().st_size, p)

    @contextlib.contextmanager
    def writer(self, expected_sha256: str | None = None, what: str = "object") -> Iterator[_HashingWriter]:
        """Stream bytes in; on clean exit the object is committed (``writer.result``)."""
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                w = _HashingWriter(f)
                yield w
                f.flush()
                os.fsync(f.fileno())
            digest = w.hash.hexdigest()
            if expected_sha256 and digest != expected_sha256:
                raise ChecksumMismatch(what, expected_sha256, digest)
            w.result = self._commit(tmp, digest, w.size)  # type: ignore[attr-defined]
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def add_file(self, src: str | os.PathLike[str], expected_sha256: str | None = None) -> StoredObject:
        with self.writer(expected_sha256, what=str(src)) as w, open(src, "rb") as f:
            while chunk := f.read(BLOCK):
                w.write(chunk)
        return w.result  # type: ignore[attr-defined]

    def add_bytes(self, data: bytes) -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        if self.has(digest):  # already stored: no temp file, no fsync
            return self.get(digest)
        with self.writer() as w:
            w.write(data)
        return w.result  # type: ignore[attr-defined]

    def _commit(self, tmp: str, digest: str, size: int) -> StoredObject:
        final = self.path_of(digest)
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        return StoredObject(digest, size, final)

    def export(self, sha256: str, dest: str | os.PathLike[str]) -> None:
        """Copy an object out (atomically) to ``dest``, as a normal writable file."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".tmp-{dest.name}")
        shutil.copyfile(self.path_of(sha256), tmp)
        os.replace(tmp, dest)
