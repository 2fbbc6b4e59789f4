"""Operator actions: migrate now, evict files to tape only, live drive state.

One implementation for both ways an operator reaches the archive: over the running server's
admin API (``/api/admin/...``; the usual case, since the server owns the archive directory) and
on the store itself while the server is stopped (``archive migrate --offline``). Who is an
operator: an identity with ``storage.modify`` on ``/`` (it may already delete everything; the
WLCG profile has no narrower admin scope).
"""

from __future__ import annotations

from typing import Any

from archive.auth import Identity, authorize
from archive.engine import Archive
from archive.errors import ArchiveError, BadPath, Forbidden, Unauthorized
from archive.paths import normalize


def require_operator(ident: Identity) -> None:
    """An operator holds storage.modify:/ (decided by auth.authorize; the answer says why)."""
    try:
        authorize(ident, "modify", "/")
    except Unauthorized as err:
        raise Unauthorized("operator actions need a bearer token or a client certificate") \
            from err
    except Forbidden as err:
        raise Forbidden(f"{ident.name} is not an operator (needs storage.modify:/)") from err


def _file_state(a: Archive, path: str) -> dict[str, Any]:
    f = a.stat(path)
    return {"path": f.path, "locality": a.locality(f.path),
            "tape_copies": len(a.catalog.tape_replicas(f.file_id)),
            "wanted_copies": a.cfg.tape.copies}


def migrate(a: Archive, paths: list[str]) -> dict[str, Any]:
    """Start writing everything that waits for tape now; the state of ``paths``, if given."""
    waiting = a.migrate_now()
    files = []
    for p in paths:
        try:
            files.append(_file_state(a, normalize(p, decoded=True)))
        except (ArchiveError, BadPath) as err:
            files.append({"path": p, "error": str(err)})
    return {"waiting": waiting, "files": files}


def evict(a: Archive, paths: list[str]) -> dict[str, Any]:
    """Drop the disk copies of ``paths`` that are safely on tape and not pinned."""
    out = []
    for p in paths:
        item: dict[str, Any] = {"path": p}
        try:
            f = a.stat(normalize(p, decoded=True))
            item["path"] = f.path
            if a.catalog.disk_replica(f.file_id) is None:
                item["result"] = "already tape only"
            elif len(a.catalog.tape_replicas(f.file_id)) < a.cfg.tape.copies:
                item["result"] = "kept: not yet on tape (archive migrate first)"
            elif a.catalog.pins(a.clock.now()).get(f.file_id):
                item["result"] = "kept: pinned by a stage request"
            else:
                item["result"] = "evicted" if a.evict_path(f.path) else "kept"
        except (ArchiveError, BadPath) as err:
            item["result"] = "error"
            item["error"] = str(err)
        out.append(item)
    return {"files": out, "evicted": sum(1 for i in out if i["result"] == "evicted")}


def drives(a: Archive) -> dict[str, Any]:
    """Live drive and cartridge state, in archive time."""
    return {"time": a.clock.now(), "drives": a.drive_report(), "tapes": a.tape_report()}
