"""WebDAV write locks (RFC 4918 6-7, 10.4): a lock table and the ``If`` header.

Locks live in the memory of the server process: a restart forgets them, as RFC 4918 6.6
allows (a lock is a lease with a timeout, and clients refresh or re-lock). They guard the
namespace against concurrent WebDAV clients (Finder, Windows, LibreOffice lock before they
write); they are not an archive-wide consistency mechanism (the catalog's transactions are).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field

from archive.errors import PathError
from archive.paths import under


class Locked(PathError):
    """A write to a locked resource without its lock token in the ``If`` header."""

    status = 423

    def __init__(self, path: str):
        super().__init__(path, "is locked; send the lock token in an If header (RFC 4918 10.4)")


class PreconditionFailed(PathError):
    status = 412


MAX_TIMEOUT = 3600  # seconds: a client asking for Infinite gets an hour, and refreshes


@dataclass
class Lock:
    token: str  # opaquelocktoken:<uuid>
    root: str  # the locked path
    scope: str  # exclusive | shared
    infinite: bool  # Depth: infinity (collections)
    owner_xml: str
    principal: str  # identity name of whoever took it
    timeout: int
    expires: float = field(default=0.0)

    def covers(self, path: str) -> bool:
        return path == self.root or (self.infinite and under(path, self.root))

    def activelock(self, href: str) -> str:
        depth = "infinity" if self.infinite else "0"
        return (f"<D:activelock><D:locktype><D:write/></D:locktype>"
                f"<D:lockscope><D:{self.scope}/></D:lockscope><D:depth>{depth}</D:depth>"
                f"{self.owner_xml}<D:timeout>Second-{self.timeout}</D:timeout>"
                f"<D:locktoken><D:href>{self.token}</D:href></D:locktoken>"
                f"<D:lockroot><D:href>{href}</D:href></D:lockroot></D:activelock>")


def parse_timeout(header: str | None) -> int:
    """``Timeout: Second-600, Infinite`` -> 600 (the first understood value, capped)."""
    for item in (header or "").split(","):
        item = item.strip()
        if item.lower() == "infinite":
            return MAX_TIMEOUT
        if item.lower().startswith("second-") and item[7:].isdigit():
            return max(1, min(int(item[7:]), MAX_TIMEOUT))
    return MAX_TIMEOUT


class LockTable:
    """Active locks, keyed by token; thread-safe; expired locks vanish on every look-up."""

    def __init__(self) -> None:
        self._locks: dict[str, Lock] = {}
        self._mutex = threading.Lock()

    def _purge(self) -> None:
        now = time.monotonic()
        for t in [t for t, lk in self._locks.items() if lk.expires <= now]:
            del self._locks[t]

    def covering(self, path: str) -> list[Lock]:
        """Locks on ``path`` itself or on an ancestor with depth infinity."""
        with self._mutex:
            self._purge()
            return [lk for lk in self._locks.values() if lk.covers(path)]

    def below(self, path: str) -> list[Lock]:
        """Locks on ``path`` or anything inside it (what a DELETE or MOVE of it disturbs)."""
        with self._mutex:
            self._purge()
            return [lk for lk in self._locks.values() if under(lk.root, path)]

    def get(self, token: str) -> Lock | None:
        with self._mutex:
            self._purge()
            return self._locks.get(token)

    def conflicts(self, path: str, scope: str, infinite: bool) -> list[Lock]:
        with self._mutex:
            self._purge()
            hit = [lk for lk in self._locks.values()
                   if lk.covers(path) or (infinite and under(lk.root, path))]
        return [lk for lk in hit if scope == "exclusive" or lk.scope == "exclusive"]

    def add(self, root: str, scope: str, infinite: bool, owner_xml: str, principal: str,
            timeout: int) -> Lock:
        lk = Lock(f"opaquelocktoken:{uuid.uuid4()}", root, scope, infinite, owner_xml,
                  principal, timeout, time.monotonic() + timeout)
        with self._mutex:
            self._locks[lk.token] = lk
        return lk

    def refresh(self, lk: Lock, timeout: int) -> None:
        with self._mutex:
            lk.timeout = timeout
            lk.expires = time.monotonic() + timeout

    def remove(self, token: str) -> None:
        with self._mutex:
            self._locks.pop(token, None)

    def drop_below(self, path: str) -> None:
        """A resource deleted or moved away takes its locks (and its members') with it."""
        with self._mutex:
            for t in [t for t, lk in self._locks.items() if under(lk.root, path)]:
                del self._locks[t]


# -- the If header (RFC 4918 10.4) --------------------------------------------------------------
Condition = tuple[bool, str, str]  # (negated, "token" | "etag", value)
_TOKEN = re.compile(r'\s*(<[^>]*>|\(|\)|\[[^\]]*\]|Not\b)', re.IGNORECASE)


def parse_if(header: str) -> list[tuple[str | None, list[Condition]]] | None:
    """``[(resource or None, [conditions])]``, one entry per list; None if malformed."""
    out: list[tuple[str | None, list[Condition]]] = []
    pos, resource, current, negate = 0, None, None, False
    text = header.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            return None
        tok, pos = m.group(1), m.end()
        if tok == "(":
            if current is not None:
                return None
            current = []
        elif tok == ")":
            if current is None:
                return None
            out.append((resource, current))
            current = None
        elif tok.lower() == "not":
            if current is None:
                return None
            negate = True
        elif tok.startswith("<"):
            if current is None:
                resource = tok[1:-1]
            else:
                current.append((negate, "token", tok[1:-1]))
                negate = False
        elif tok.startswith("["):
            if current is None:
                return None
            current.append((negate, "etag", tok[1:-1].strip()))
            negate = False
    if current is not None:
        return None
    return out


def submitted_tokens(lists: list[tuple[str | None, list[Condition]]]) -> set[str]:
    return {v for _, conds in lists for neg, kind, v in conds if kind == "token" and not neg}
