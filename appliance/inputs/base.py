"""The input-resolver seam.

Contract of ``InputResolver.fetch(uri, store, expected_sha256, progress)``:

* ``uri`` is the recipe's input URI exactly as written (already validated as a string).
* The resolver obtains the bytes (copy, stage + transfer, ...) and puts them into ``store``
  (``appliance.store.ContentStore``) with ``store.add_file`` / ``store.writer``, which computes
  the sha256 and never exposes a partial object under its final name.
* When ``expected_sha256`` is given and the content differs, raise ``ChecksumMismatch`` naming
  the URI; nothing is left in the store under the expected name.
* It returns a ``ResolvedInput`` (sha256, size, and the path of the object in the store).
* ``checksum(uri)`` returns the sha256 without storing when that is cheap (used by ``lock``);
  it may simply fetch.

Resolvers hold no global state; the registry builds them from the appliance ``Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from appliance.store import ContentStore


@dataclass(frozen=True)
class ResolvedInput:
    uri: str
    sha256: str
    size: int
    path: Path  # the object inside the content-addressed store (read-only)


class InputResolver(Protocol):
    schemes: tuple[str, ...]

    def fetch(
        self,
        uri: str,
        store: ContentStore,
        expected_sha256: str | None = None,
    ) -> ResolvedInput: ...

    def checksum(self, uri: str, store: ContentStore) -> ResolvedInput: ...
