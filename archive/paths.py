"""Logical path handling: one normal form, and traversal refused rather than "cleaned up".

Why refuse: a request for ``/a/../b`` (or ``%2e%2e``, or a NUL) is never a legitimate client's
intention; silently normalising it hides attacks and makes audits harder. Storage on disk and on
tape is keyed by file id, never by logical path, so no logical path can reach the host file
system at all; these checks keep the namespace itself clean.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

from archive.errors import BadPath

# One rule for percent signs (RFC 3986 2.1, 2.4): a URL path is percent-decoded exactly once;
# what remains must pass the same checks as any raw path, and a '%' followed by two hex digits
# may not remain, since it would be decoded again by the next client or proxy (%252e%252e).
DOUBLE_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
RESERVED = ("/api", "/.well-known", "/metrics", "/openapi.json", "/search")


def normalize(raw: str, *, decoded: bool = False) -> str:
    """Return ``/a/b`` for ``raw`` (URL path, percent-encoded unless ``decoded``) or raise BadPath.

    Trailing slashes are dropped (``/a/`` is ``/a``); repeated slashes are collapsed.
    """
    try:
        path = raw if decoded else unquote(raw, errors="strict")
    except UnicodeDecodeError as err:
        raise BadPath(raw, "percent-encoding that is not valid UTF-8 (RFC 3629 refuses overlong "
                           f"forms such as %c0%ae): byte {err.start}") from err
    if not path.startswith("/"):
        raise BadPath(raw, "path must be absolute")
    if "\\" in path or any(unicodedata.category(c) == "Cc" for c in path):
        raise BadPath(raw, "control characters (U+0000-001F, U+007F-009F) and backslashes are not allowed")
    if DOUBLE_ENCODED.search(path):
        raise BadPath(raw, "a name may not contain '%' followed by two hex digits after decoding "
                           "(double percent-encoding, e.g. %252e)")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise BadPath(raw, "'.' and '..' segments are refused (path traversal)")
    if len(path) > 4096 or any(len(p) > 255 for p in parts):
        raise BadPath(raw, "path too long")
    return "/" + "/".join(parts)


def parent_of(path: str) -> str:
    if path == "/":
        return "/"
    head = path.rsplit("/", 1)[0]
    return head or "/"


def name_of(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``['/a', '/a/b']`` (not the root, not the path itself)."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def is_reserved(path: str) -> bool:
    return any(path == r or path.startswith(r + "/") for r in RESERVED)


def under(path: str, prefix: str) -> bool:
    """True if ``path`` is ``prefix`` or inside it (segment-wise, so /ab is not under /a)."""
    prefix = prefix.rstrip("/") or "/"
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")
