"""Local inputs: ``file://`` URIs and plain paths (relative paths are relative to the recipe)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from appliance.errors import InputError
from appliance.inputs.base import ResolvedInput
from appliance.store import ContentStore


class LocalFileResolver:
    schemes = ("file", "")
    always_verify = True  # hashing a local file is cheap and it may have changed since the lock

    def __init__(self, base_dir: Path):
        self.base_dir = base_dir

    def path_of(self, uri: str) -> Path:
        """The local file ``uri`` names (relative to the recipe); InputError if it is not one."""
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise InputError(f"{uri}: file:// URIs must name a local path (file:///abs/path)")
            path = Path(unquote(parsed.path))
        else:
            path = Path(uri)
        if not path.is_absolute():
            path = self.base_dir / path
        if not path.is_file():
            raise InputError(f"input {uri}: no such file ({path})")
        return path

    def fetch(self, uri: str, store: ContentStore, expected_sha256: str | None = None) -> ResolvedInput:
        obj = store.add_file(self.path_of(uri), expected_sha256=expected_sha256)
        return ResolvedInput(uri, obj.sha256, obj.size, obj.path)

    def checksum(self, uri: str, store: ContentStore) -> ResolvedInput:
        return self.fetch(uri, store)
