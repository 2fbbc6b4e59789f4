"""WebDAV XML and HTTP header helpers (pure): PROPFIND multistatus, RFC 3230 digests, ranges.

Kept apart from the request handler so that the exact bytes gfal2/davix depend on (the
collection first in a Depth 1 listing, ``HTTP/1.1 200 OK`` in every propstat, ``adler32`` as 8
lowercase hex digits) are easy to read and to test.
"""

from __future__ import annotations

import base64
import datetime as dt
from email.utils import formatdate
from urllib.parse import quote
from xml.sax.saxutils import escape

from archive.catalog import DirEntry, FileEntry
from archive.paths import name_of


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def iso_date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def href(path: str, collection: bool) -> str:
    h = quote(path, safe="/")
    return h + "/" if collection and not h.endswith("/") else h


def _response(path: str, collection: bool, size: int, mtime: float, ctime: float, owner: str,
              etag: str | None, locality: str | None) -> str:
    name = name_of(path) if path != "/" else ""
    props = [f"<D:displayname>{escape(name)}</D:displayname>",
             f"<D:getlastmodified>{http_date(mtime)}</D:getlastmodified>",
             f"<D:creationdate>{iso_date(ctime)}</D:creationdate>",
             f"<D:owner>{escape(owner)}</D:owner>",
             f"<D:group>{escape(owner)}</D:group>"]
    if collection:
        props.append("<D:resourcetype><D:collection/></D:resourcetype>")
        props.append("<D:getcontentlength>0</D:getcontentlength>")
    else:
        props.append("<D:resourcetype/>")
        props.append(f"<D:getcontentlength>{size}</D:getcontentlength>")
        props.append("<D:getcontenttype>application/octet-stream</D:getcontenttype>")
        if etag:
            props.append(f"<D:getetag>\"{etag}\"</D:getetag>")
        if locality:
            props.append(f"<L:locality>{locality}</L:locality>")
    return (f"<D:response><D:href>{escape(href(path, collection))}</D:href><D:propstat>"
            f"<D:prop>{''.join(props)}</D:prop><D:status>HTTP/1.1 200 OK</D:status>"
            "</D:propstat></D:response>")


def multistatus(dir_entry: DirEntry | None, file_entry: FileEntry | None,
                children: tuple[list[DirEntry], list[FileEntry]] | None,
                localities: dict[str, str] | None = None) -> bytes:
    """The 207 body: the resource itself first, then (Depth 1) its children."""
    localities = localities or {}
    parts = ['<?xml version="1.0" encoding="utf-8"?>'
             '<D:multistatus xmlns:D="DAV:" xmlns:L="http://lta.example/ns">']
    if dir_entry:
        parts.append(_response(dir_entry.path, True, 0, dir_entry.created, dir_entry.created,
                               dir_entry.owner, None, None))
    if file_entry:
        parts.append(_response(file_entry.path, False, file_entry.size, file_entry.modified,
                               file_entry.created, file_entry.owner, file_entry.adler32,
                               localities.get(file_entry.file_id)))
    if children:
        dirs, files = children
        for d in dirs:
            parts.append(_response(d.path, True, 0, d.created, d.created, d.owner, None, None))
        for f in files:
            parts.append(_response(f.path, False, f.size, f.modified, f.created, f.owner,
                                   f.adler32, localities.get(f.file_id)))
    parts.append("</D:multistatus>")
    return "".join(parts).encode()


def want_digest(header: str | None, f: FileEntry) -> str | None:
    """RFC 3230 ``Digest`` answer for a ``Want-Digest`` request (adler32, sha-256)."""
    if not header:
        return None
    out = []
    for item in header.split(","):
        algo = item.split(";")[0].strip().lower()
        if algo == "adler32" and not any(o.startswith("adler32=") for o in out):
            out.append(f"adler32={int(f.adler32, 16):08x}")
        elif algo in ("sha-256", "sha256") and not any(o.startswith("sha-256=") for o in out):
            out.append("sha-256=" + base64.b64encode(bytes.fromhex(f.sha256)).decode())
    return ",".join(out) or None


def parse_digest(header: str | None) -> dict[str, str]:
    """``Digest: adler32=0a1b2c3d, sha-256=...`` -> {'adler32': ..., 'sha-256': ...}."""
    out: dict[str, str] = {}
    if not header:
        return out
    for item in header.split(","):
        algo, sep, value = item.strip().partition("=")
        if sep:
            out[algo.strip().lower()] = value.strip()
    return out


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """One byte range -> (start, end inclusive); None: whole file; 'unsatisfiable'."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.split("=", 1)[1].strip()
    if "," in spec:
        return None  # multipart ranges: serve the whole file (allowed by RFC 7233)
    first, _, last = spec.partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or start > end:
        return "unsatisfiable"
    return start, min(end, size - 1)
