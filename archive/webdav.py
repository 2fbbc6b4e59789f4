"""WebDAV XML and HTTP header helpers (pure): PROPFIND multistatus, RFC 3230 digests, ranges.

Kept apart from the request handler so that the exact bytes gfal2/davix depend on (the
collection first in a Depth 1 listing, ``HTTP/1.1 200 OK`` in every propstat, ``adler32`` as 8
lowercase hex digits) are easy to read and to test.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import xml.etree.ElementTree as ET
from email.utils import formatdate
from urllib.parse import quote
from xml.sax.saxutils import escape

from archive.catalog import DirEntry, FileEntry
from archive.errors import BadRequest
from archive.paths import name_of


# a PROPFIND formats two dates per member, the same ones again at every listing: cached
@functools.lru_cache(maxsize=1 << 16)
def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


@functools.lru_cache(maxsize=1 << 16)
def iso_date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def href(path: str, collection: bool) -> str:
    h = quote(path, safe="/")
    return h + "/" if collection and not h.endswith("/") else h


DAV = "DAV:"
LTA_NS = "http://lta.example/ns"
Name = tuple[str, str]  # (namespace, local name)


class Resource:
    """One resource of a multistatus: its live properties as XML elements, and its dead ones."""

    def __init__(self, path: str, collection: bool, live: dict[Name, str],
                 dead: dict[Name, str] | None = None):
        self.path, self.collection, self.live, self.dead = path, collection, live, dead or {}


def live_props(path: str, collection: bool, size: int, mtime: float, ctime: float, owner: str,
               etag: str | None, locality: str | None,
               lockdiscovery: str = "") -> dict[Name, str]:
    name = name_of(path) if path != "/" else ""
    p: dict[Name, str] = {
        (DAV, "displayname"): f"<D:displayname>{escape(name)}</D:displayname>",
        (DAV, "getlastmodified"): f"<D:getlastmodified>{http_date(mtime)}</D:getlastmodified>",
        (DAV, "creationdate"): f"<D:creationdate>{iso_date(ctime)}</D:creationdate>",
        (DAV, "owner"): f"<D:owner>{escape(owner)}</D:owner>",
        (DAV, "group"): f"<D:group>{escape(owner)}</D:group>",
    }
    if collection:
        p[(DAV, "resourcetype")] = "<D:resourcetype><D:collection/></D:resourcetype>"
        p[(DAV, "getcontentlength")] = "<D:getcontentlength>0</D:getcontentlength>"
    else:
        p[(DAV, "resourcetype")] = "<D:resourcetype/>"
        p[(DAV, "getcontentlength")] = f"<D:getcontentlength>{size}</D:getcontentlength>"
        p[(DAV, "getcontenttype")] = "<D:getcontenttype>application/octet-stream</D:getcontenttype>"
        if etag:
            p[(DAV, "getetag")] = f"<D:getetag>\"{etag}\"</D:getetag>"
        if locality:
            p[(LTA_NS, "locality")] = f"<L:locality>{locality}</L:locality>"
    p[(DAV, "supportedlock")] = SUPPORTED_LOCK
    p[(DAV, "lockdiscovery")] = f"<D:lockdiscovery>{lockdiscovery}</D:lockdiscovery>"
    return p


SUPPORTED_LOCK = ("<D:supportedlock>"
                  "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope>"
                  "<D:locktype><D:write/></D:locktype></D:lockentry>"
                  "<D:lockentry><D:lockscope><D:shared/></D:lockscope>"
                  "<D:locktype><D:write/></D:locktype></D:lockentry></D:supportedlock>")
LOCK_PROPS = {(DAV, "supportedlock"), (DAV, "lockdiscovery")}
# live properties a PROPPATCH may not touch (RFC 4918 15: protected)
PROTECTED = {(DAV, n) for n in ("displayname", "getlastmodified", "creationdate", "owner",
                                "group", "resourcetype", "getcontentlength", "getcontenttype",
                                "getetag", "supportedlock", "lockdiscovery")} | {(LTA_NS, "locality")}


def empty_element(name: Name) -> str:
    ns, local = name
    if ns == DAV:
        return f"<D:{local}/>"
    if not ns:
        return f'<{local} xmlns=""/>'
    return f'<X:{local} xmlns:X="{escape(ns, {chr(34): "&quot;"})}"/>'


def _propstat(props: list[str], status: str) -> str:
    return (f"<D:propstat><D:prop>{''.join(props)}</D:prop>"
            f"<D:status>HTTP/1.1 {status}</D:status></D:propstat>")


def response(r: Resource, mode: str = "allprop", names: list[Name] | None = None) -> str:
    """One ``<D:response>``: ``allprop`` (every live and dead property; the exact bytes gfal2
    and davix read), ``propname`` (empty elements), or ``prop`` (the named ones; a 404 propstat
    for those the resource does not have)."""
    everything = {**r.live, **r.dead}
    if mode == "propname":
        stats = [_propstat([empty_element(n) for n in everything], "200 OK")]
    elif mode == "prop":
        found = [everything[n] for n in names or [] if n in everything]
        missing = [empty_element(n) for n in names or [] if n not in everything]
        stats = ([_propstat(found, "200 OK")] if found else []) + \
                ([_propstat(missing, "404 Not Found")] if missing else [])
    else:
        # the lock properties only when named: the allprop bytes stay what davix parses
        stats = [_propstat([v for k, v in r.live.items() if k not in LOCK_PROPS]
                           + list(r.dead.values()), "200 OK")]
    return (f"<D:response><D:href>{escape(href(r.path, r.collection))}</D:href>"
            f"{''.join(stats)}</D:response>")


def multistatus_of(responses: list[str]) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<D:multistatus xmlns:D="DAV:" xmlns:L="{LTA_NS}">' + "".join(responses)
            + "</D:multistatus>").encode()


def multistatus(dir_entry: DirEntry | None, file_entry: FileEntry | None,
                children: tuple[list[DirEntry], list[FileEntry]] | None,
                localities: dict[str, str] | None = None) -> bytes:
    """The allprop 207 body: the resource itself first, then (Depth 1) its children."""
    return multistatus_of([response(r) for r in resources(dir_entry, file_entry, children,
                                                           localities)])


Member = tuple[str, bool, int, float, float, str, str | None, str | None]


def members(dir_entry: DirEntry | None, file_entry: FileEntry | None,
            children: tuple[list[DirEntry], list[FileEntry]] | None,
            localities: dict[str, str] | None = None) -> list[Member]:
    """The arguments of :func:`live_props` for each resource of a multistatus, in answer order:
    the resource itself first, then (Depth 1) its collections, then its files."""
    localities = localities or {}
    dirs, files = children or ([], [])
    out: list[Member] = [(d.path, True, 0, d.created, d.created, d.owner, None, None)
                         for d in ([dir_entry] if dir_entry else []) + dirs]
    out += [(f.path, False, f.size, f.modified, f.created, f.owner, f.adler32,
             localities.get(f.file_id)) for f in ([file_entry] if file_entry else []) + files]
    return out


def resources(dir_entry: DirEntry | None, file_entry: FileEntry | None,
              children: tuple[list[DirEntry], list[FileEntry]] | None,
              localities: dict[str, str] | None = None) -> list[Resource]:
    return [Resource(m[0], m[1], live_props(*m))
            for m in members(dir_entry, file_entry, children, localities)]


@functools.lru_cache(maxsize=1 << 14)
def _allprop(member: Member, dead: tuple[tuple[Name, str], ...]) -> str:
    return response(Resource(member[0], member[1], live_props(*member), dict(dead)), "allprop")


def allprop_responses(ms: list[Member], dead: dict[str, dict[Name, str]]) -> list[str]:
    """The ``allprop`` ``<D:response>`` of each member, as :func:`response` writes it. Cached:
    clients list the same collections over and over, and rendering every member's properties
    again was a sixth of the server's CPU under 50 clients. The key is everything the bytes
    depend on (the live properties' inputs and the dead properties), so a change is a miss."""
    return [_allprop(m, tuple(dead.get(m[0], {}).items())) for m in ms]


# -- request bodies ---------------------------------------------------------------------------
def parse_xml(body: bytes) -> ET.Element | None:
    """The request's XML document (None for an empty body); malformed XML is a 400."""
    if not body.strip():
        return None
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise BadRequest("XML request bodies may not carry a DTD or entities")
    try:
        return ET.fromstring(body)
    except ET.ParseError as err:
        raise BadRequest(f"request body is not well-formed XML: {err}") from err


def qname(tag: str) -> Name:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def parse_propfind(body: bytes) -> tuple[str, list[Name]]:
    """``(mode, names)``: ``allprop`` (also for an empty body, RFC 4918 9.1), ``propname`` or
    ``prop`` with the requested property names."""
    root = parse_xml(body)
    if root is None:
        return "allprop", []
    if qname(root.tag) != (DAV, "propfind"):
        raise BadRequest("PROPFIND body must be a DAV:propfind element")
    for child in root:
        n = qname(child.tag)
        if n == (DAV, "propname"):
            return "propname", []
        if n == (DAV, "allprop"):
            return "allprop", []
        if n == (DAV, "prop"):
            return "prop", [qname(p.tag) for p in child]
    raise BadRequest("DAV:propfind needs allprop, propname or prop")


def parse_proppatch(body: bytes) -> list[tuple[str, str, str, str | None]]:
    """``[(op, ns, name, xml)]`` in document order; ``xml`` is the property element itself,
    self-contained (its namespaces declared), ready to be sent back in a PROPFIND."""
    root = parse_xml(body)
    if root is None or qname(root.tag) != (DAV, "propertyupdate"):
        raise BadRequest("PROPPATCH body must be a DAV:propertyupdate element")
    ops: list[tuple[str, str, str, str | None]] = []
    for action in root:
        op = qname(action.tag)
        if op not in ((DAV, "set"), (DAV, "remove")):
            continue
        for prop in action:
            if qname(prop.tag) != (DAV, "prop"):
                continue
            for p in prop:
                ns, local = qname(p.tag)
                xml = None
                if op[1] == "set":
                    p.tail = None
                    xml = ET.tostring(p, encoding="unicode")
                    if not ns:  # no namespace: say so, whatever the enclosing default is
                        xml = xml.replace(f"<{local}", f'<{local} xmlns=""', 1)
                ops.append((op[1], ns, local, xml))
    return ops


def parse_lockinfo(body: bytes) -> tuple[str, str] | None:
    """``(scope, owner_xml)`` of a LOCK request; None for an empty body (a refresh)."""
    root = parse_xml(body)
    if root is None:
        return None
    if qname(root.tag) != (DAV, "lockinfo"):
        raise BadRequest("LOCK body must be a DAV:lockinfo element")
    scope, owner = "exclusive", ""
    for child in root:
        n = qname(child.tag)
        if n == (DAV, "lockscope"):
            kinds = [qname(c.tag)[1] for c in child]
            if kinds and kinds[0] in ("exclusive", "shared"):
                scope = kinds[0]
        elif n == (DAV, "locktype"):
            if [qname(c.tag) for c in child] != [(DAV, "write")]:
                raise BadRequest("only write locks exist (RFC 4918 14.15)")
        elif n == (DAV, "owner"):
            child.tail = None
            owner = ET.tostring(child, encoding="unicode")
    return scope, owner


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
