"""WLCG Tape REST API v1, shaped by what gfal2 2.21.3 sends and expects.

Each handler takes the archive, the caller's identity and the parsed JSON body and returns
``(status, json_body)``; the HTTP layer only routes (with and without trailing slashes) and
serialises. Traps avoided on purpose (see docs/GFAL2-PROTOCOLS.md): the ``error`` key is omitted
unless there is an error (``"error": null`` crashes gfal2), a failed file always carries
``error``, a file item has ``state`` and never ``onDisk`` as well, archiveinfo answers a JSON
array and never fails as a whole for one bad path, release accepts unknown request ids.
"""

from __future__ import annotations

import re
from typing import Any

from archive.auth import AUTHENTICATED, Identity, authorize
from archive.catalog import StageRequest
from archive.engine import Archive
from archive.errors import ArchiveError, BadPath, BadRequest, NotFound
from archive.openapi import LIFETIME_PATTERN
from archive.paths import normalize


def _require(ident: Identity, action: str, paths: list[str]) -> None:
    if ident.anonymous and action != "read":
        authorize(ident, action, "/")  # 401 before looking at any path
    if len(paths) > 1:  # fast path: one check on the paths' common ancestor
        import posixpath

        try:
            common = posixpath.commonpath([normalize(p, decoded=True) for p in paths])
        except (BadPath, ValueError):
            common = None
        if common and ident.allows(action, common):
            return
    denied = []
    for p in paths:
        try:
            np = normalize(p, decoded=True)
        except BadPath:
            continue  # reported per file
        if not ident.allows(action, np):
            denied.append(p)
    if denied:
        authorize(ident, action, normalize(denied[0], decoded=True))  # the 403 naming it


def _paths(body: Any, key: str = "paths") -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise BadRequest(f"request body must be a JSON object with a '{key}' list")
    paths = body[key]
    if not all(isinstance(p, str) for p in paths):
        raise BadRequest(f"'{key}' must be a list of strings")
    return paths


def paths_of(body: Any) -> list[str]:
    """The ``paths`` list of a ``{"paths": [...]}`` body (400 otherwise)."""
    return _paths(body)


def discovery(sitename: str, base_url: str) -> dict[str, Any]:
    return {
        "sitename": sitename,
        "description": "Long Term Archive (tape simulator) WLCG Tape REST API",
        "endpoints": [{"uri": f"{base_url}/api/v1", "version": "v1", "metadata": {}}],
    }


def stage(a: Archive, ident: Identity, body: Any) -> tuple[int, dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("files"), list) or not body["files"]:
        raise BadRequest("request body must be {\"files\": [{\"path\": ...}, ...]}")
    items = []
    for f in body["files"]:
        if not isinstance(f, dict) or not isinstance(f.get("path"), str):
            raise BadRequest("every file item needs a 'path' string")
        if not isinstance(f.get("targetedMetadata", {}), dict):
            raise BadRequest("targetedMetadata must be a JSON object")
        lifetime = f.get("diskLifetime")
        if "diskLifetime" in f and (not isinstance(lifetime, str)
                                     or not re.match(LIFETIME_PATTERN, lifetime)):
            raise BadRequest(f"diskLifetime must be an ISO 8601 duration such as PT1H, P2D or "
                             f"P1DT12H, not {str(lifetime)[:40]!r}")
        items.append((f["path"], lifetime))  # targetedMetadata is accepted and ignored
    _require(ident, "stage", [p for p, _ in items])
    rid = a.stage(items, ident.name)
    return 201, {"requestId": rid}


def request_json(req: StageRequest) -> dict[str, Any]:
    files = []
    for f in req.files:
        item: dict[str, Any] = {"path": f.path, "state": f.state}
        if f.state == "FAILED":
            item["error"] = f.error or "failed"
        if f.finished is not None:
            item["finishedAt"] = int(f.finished)
        files.append(item)
    out: dict[str, Any] = {"id": req.request_id, "createdAt": int(req.created),
                           "startedAt": int(req.started if req.started is not None
                                            else req.created),
                           "files": files}
    if req.completed is not None:
        out["completedAt"] = int(req.completed)
    return out


def _own(a: Archive, ident: Identity, rid: str) -> StageRequest:
    req = a.stage_status(rid)
    if ident.anonymous or req.owner != ident.name:  # the owner may always see their request
        _require(ident, "stage", [f.path for f in req.files])
    return req


def status(a: Archive, ident: Identity, rid: str) -> tuple[int, dict[str, Any]]:
    authorize(ident, AUTHENTICATED, f"stage request {rid}")  # stage requests are not public
    return 200, request_json(_own(a, ident, rid))


def cancel(a: Archive, ident: Identity, rid: str, body: Any) -> tuple[int, dict[str, Any]]:
    paths = _paths(body)
    _own(a, ident, rid)
    a.cancel(rid, paths)
    return 200, {}


def delete(a: Archive, ident: Identity, rid: str) -> tuple[int, dict[str, Any]]:
    _own(a, ident, rid)
    a.delete_request(rid)
    return 200, {}


def release(a: Archive, ident: Identity, rid: str, body: Any) -> tuple[int, dict[str, Any]]:
    paths = _paths(body)
    _require(ident, "stage", paths)
    a.release(rid, paths)
    return 200, {}


def archiveinfo(a: Archive, ident: Identity, body: Any) -> tuple[int, list[dict[str, Any]]]:
    paths = _paths(body)
    out: list[dict[str, Any]] = []
    for p in paths:
        try:
            np = normalize(p, decoded=True)
            if not (ident.allows("read", np) or ident.allows("stage", np)):
                out.append({"path": p, "error": "permission denied"})
                continue
            out.append({"path": p, "locality": a.locality(np)})
        except NotFound:
            out.append({"path": p, "error": "USER_ERROR: file does not exist"})
        except ArchiveError as err:
            out.append({"path": p, "error": str(err)})
    return 200, out
