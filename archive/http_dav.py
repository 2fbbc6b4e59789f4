"""The archive's WebDAV handlers (RFC 4918 class 1 and 2): the ``_dav_*`` methods the route table
(archive/routes.py) names for namespace paths, with their lock checks, and the chunked request
body reader.

:class:`DavHandlers` is mixed into ``archive.server.Handler``: ``self`` is that handler (its
``send``/``problem``/``read_body``/``require``/``identity``/``archive``). Every handler gets
``path`` (the normalized archive path) and ``raw`` (the path as sent); the route table already
authorized the entries that name an action (GET and HEAD: read, DELETE: modify).
"""

from __future__ import annotations

import os
import ssl
from typing import Any
from urllib.parse import urlsplit

from appliance.hashing import BLOCK
from archive import davlocks, webdav
from archive.auth import AUTHENTICATED, Identity, authorize
from archive.errors import AlreadyExists, BadRequest, Conflict, Forbidden, NotFound
from archive.paths import normalize, parent_of


class FramingError(BadRequest):
    """The request body's framing is broken: answer 400 and close (the next request's start is lost)."""


class _ChunkedReader:
    """Decode ``Transfer-Encoding: chunked`` request bodies."""

    def __init__(self, rfile: Any):
        self.rfile = rfile
        self.left = 0
        self.done = False

    def read(self, n: int) -> bytes:
        if self.done:
            return b""
        if self.left == 0:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip() or b"0", 16)
            except ValueError as err:
                raise FramingError(f"malformed chunk size {line[:40]!r} (RFC 9112 7.1: hex digits)") from err
            if size < 0:
                raise FramingError(f"malformed chunk size {line[:40]!r} (RFC 9112 7.1: hex digits)")
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
                return b""
            self.left = size
        data = self.rfile.read(min(n, self.left))
        self.left -= len(data)
        if self.left == 0:
            self.rfile.readline(16)
        return data


class DavHandlers:
    """WebDAV methods of ``archive.server.Handler`` (see the module docstring)."""

    def _dav_copy(self, path: str, raw: str) -> None:
        """COPY inside the archive (RFC 4918 9.8). A pull third-party copy (``Source`` header,
        no ``Destination``) stays 501: gfal2 then falls back to a streamed copy."""
        if not self.headers.get("Destination"):
            self._drain()
            return self.problem(501, "third-party COPY (Source header) is not implemented; "
                                     "stream the data instead")
        dpath = self._destination("COPY")
        if dpath is None:
            return None
        depth = (self.headers.get("Depth") or "infinity").strip().lower()
        if depth not in ("0", "infinity"):
            raise BadRequest("COPY takes Depth: 0 or infinity")
        ident = self.require(AUTHENTICATED, path)
        a = self.archive
        existed = bool(a.catalog.get_file(dpath) or a.catalog.get_dir(dpath))
        for action, p in (("read", path), ("modify" if existed else "create", dpath)):
            authorize(ident, action, p)
        if not (a.catalog.get_file(path) or a.catalog.get_dir(path)):
            raise NotFound(path)
        self._check_locks(ident, tree=[dpath], parents=[dpath])
        if existed:
            if (self.headers.get("Overwrite") or "T").upper() == "F":
                return self.problem(412, f"{dpath} exists and Overwrite is F")
            if not a.catalog.get_dir(parent_of(dpath)):
                raise Conflict(dpath, "parent collection does not exist")
            a.delete(dpath)
            self.server.locks.drop_below(dpath)
        a.copy(path, dpath, ident.name, depth_infinity=depth == "infinity")
        self.send(204 if existed else 201)

    def _destination(self, method: str) -> str | None:
        """The Destination header's path; None once a 502 (another server) was answered."""
        dest = self.headers.get("Destination")
        if not dest:
            raise BadRequest(f"{method} needs a Destination header")
        target = urlsplit(dest)
        if target.netloc and not self._is_this_server(target.netloc):
            # RFC 4918 9.8.5 / 9.9.4: a destination on another server is a 502, nothing touched
            self._drain()
            self.problem(502, f"{method} to another server ({target.netloc}) is not done here; "
                              "copy the data there and delete it here")
            return None
        return normalize(target.path)

    # -- WebDAV locks (RFC 4918 6, 9.10, 9.11, 10.4) --------------------------------------------
    def _if_lists(self) -> list[tuple[str | None, list[davlocks.Condition]]]:
        header = self.headers.get("If")
        if not header:
            return []
        lists = davlocks.parse_if(header)
        if lists is None:
            raise BadRequest(f"malformed If header {header[:80]!r}")
        return lists

    def _etag_of(self, path: str) -> str | None:
        f = self.archive.catalog.get_file(path)
        return f'"{f.adler32}"' if f else None

    def _check_if(self, path: str) -> set[str]:
        """Evaluate the If header (412 when no list holds); returns the submitted lock tokens."""
        lists = self._if_lists()
        if not lists:
            return set()
        locks = self.server.locks
        for resource, conds in lists:
            rpath = normalize(urlsplit(resource).path) if resource else path
            ok = True
            for negated, kind, value in conds:
                if kind == "token":
                    lk = locks.get(value)
                    hit = lk is not None and lk.covers(rpath)
                else:
                    hit = value == self._etag_of(rpath)
                if hit == negated:
                    ok = False
                    break
            if ok:
                return davlocks.submitted_tokens(lists)
        raise davlocks.PreconditionFailed(path, "no list of the If header holds (RFC 4918 10.4)")

    def _check_locks(self, ident: Identity, own: tuple[str, ...] = (), tree: list[str] = (),
                     parents: list[str] = ()) -> set[str]:
        """423 unless every lock that guards the change is named in the If header by the
        principal that holds it: locks covering ``own`` paths, locks on or inside ``tree``
        paths, and locks covering the parent collection of ``parents`` (membership changes)."""
        path = (own or tree or parents or ["/"])[0]
        tokens = self._check_if(path)
        locks = self.server.locks
        guarding = []
        for p in own:
            guarding += locks.covering(p)
        for p in tree:
            guarding += locks.covering(p) + locks.below(p)
        for p in parents:
            if p != "/":
                guarding += locks.covering(parent_of(p))
        def held(lk: davlocks.Lock) -> bool:
            return lk.token in tokens and lk.principal == ident.name

        for lk in guarding:  # every exclusive lock, and one of the shared ones (RFC 4918 6.2)
            if not held(lk) and (lk.scope == "exclusive" or
                                 not any(held(x) for x in guarding if x.scope == "shared")):
                raise davlocks.Locked(lk.root)
        return tokens

    def _lock_answer(self, lk: davlocks.Lock, status: int, new: bool) -> None:
        body = ('<?xml version="1.0" encoding="utf-8"?><D:prop xmlns:D="DAV:"><D:lockdiscovery>'
                + lk.activelock(webdav.href(lk.root, False)) + "</D:lockdiscovery></D:prop>")
        headers = {"Lock-Token": f"<{lk.token}>"} if new else {}
        self.send(status, body.encode(), 'application/xml; charset="utf-8"', headers)

    def _dav_lock(self, path: str, raw: str) -> None:
        info = webdav.parse_lockinfo(self.read_body())
        ident = self.require(AUTHENTICATED, path)
        a = self.archive
        exists = bool(a.catalog.get_file(path) or a.catalog.get_dir(path))
        authorize(ident, "modify" if exists else "create", path)
        timeout = davlocks.parse_timeout(self.headers.get("Timeout"))
        locks = self.server.locks
        if info is None:  # refresh (RFC 4918 9.10.2): the token comes in the If header
            tokens = self._check_if(path)
            for t in tokens:
                lk = locks.get(t)
                if lk and lk.covers(path) and lk.principal == ident.name:
                    locks.refresh(lk, timeout)
                    return self._lock_answer(lk, 200, new=False)
            raise davlocks.PreconditionFailed(path, "a lock refresh needs the lock's token in "
                                                    "an If header")
        depth = (self.headers.get("Depth") or "infinity").strip().lower()
        if depth not in ("0", "infinity"):
            raise BadRequest("LOCK takes Depth: 0 or infinity")
        scope, owner = info
        infinite = depth == "infinity" and bool(a.catalog.get_dir(path))
        if locks.conflicts(path, scope, infinite):
            raise davlocks.Locked(path)
        if not exists:  # an unmapped URL: lock it as an empty resource (RFC 4918 7.3)
            self._check_locks(ident, parents=[path])
            if not a.catalog.get_dir(parent_of(path)):
                raise Conflict(path, "parent collection does not exist")
            import io

            a.put_stream(path, io.BytesIO(b""), 0, ident.name)
        lk = locks.add(path, scope, infinite, owner, ident.name, timeout)
        self._lock_answer(lk, 200 if exists else 201, new=True)

    def _dav_unlock(self, path: str, raw: str) -> None:
        ident = self.require(AUTHENTICATED, path)
        token = (self.headers.get("Lock-Token") or "").strip().strip("<>")
        if not token:
            raise BadRequest("UNLOCK needs a Lock-Token header")
        lk = self.server.locks.get(token)
        if lk is None or not lk.covers(path):
            return self.problem(409, f"{path}: no lock with that token covers this resource "
                                     "(lock-token-matches-request-uri)")
        if lk.principal != ident.name:
            raise Forbidden(f"{path}: the lock belongs to someone else")
        self.server.locks.remove(token)
        self.send(204)

    def _dav_proppatch(self, path: str, raw: str) -> None:
        """Dead properties in the catalog (table dead_props), all or nothing (RFC 4918 9.2)."""
        ops = webdav.parse_proppatch(self.read_body())
        ident = self.require("modify", path)
        a = self.archive
        is_dir = a.catalog.get_dir(path) is not None
        if not is_dir and not a.catalog.get_file(path):
            raise NotFound(path)
        self._check_locks(ident, own=(path,))
        names = [(ns, name) for _, ns, name, _ in ops]
        bad = [n for n in names if n in webdav.PROTECTED]
        if bad:
            stats = [webdav._propstat([webdav.empty_element(n) for n in bad], "403 Forbidden")]
            rest = [n for n in names if n not in webdav.PROTECTED]
            if rest:
                stats.append(webdav._propstat([webdav.empty_element(n) for n in rest],
                                              "424 Failed Dependency"))
        else:
            a.catalog.patch_props(path, ops)
            stats = [webdav._propstat([webdav.empty_element(n) for n in names], "200 OK")]
        body = webdav.multistatus_of([f"<D:response><D:href>{webdav.href(path, is_dir)}"
                                      f"</D:href>{''.join(stats)}</D:response>"])
        self.send(207, body, 'application/xml; charset="utf-8"')

    # -- WebDAV --------------------------------------------------------------------------------
    def _dav_get(self, path: str, raw: str) -> None:
        a = self.archive
        if a.catalog.get_dir(path):
            dirs, files = a.catalog.list_dir(path)
            names = [d.path.rsplit("/", 1)[-1] + "/" for d in dirs] + [
                f.path.rsplit("/", 1)[-1] for f in files]
            body = "\n".join(names).encode() + (b"\n" if names else b"")
            return self.send(200, body, "text/plain; charset=utf-8")
        f, disk = a.open_for_read(path)
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{f.adler32}"',
                   "Last-Modified": webdav.http_date(f.modified)}
        digest = webdav.want_digest(self.headers.get("Want-Digest"), f)
        if digest:
            headers["Digest"] = digest
        rng = webdav.parse_range(self.headers.get("Range"), f.size)
        if rng == "unsatisfiable":
            return self.send(416, headers={"Content-Range": f"bytes */{f.size}"})
        start, end = (0, f.size - 1) if rng is None else rng
        count = max(0, end - start + 1)
        status = 200 if rng is None else 206
        if rng is not None:
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        fd = os.open(disk, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(count))
            self.end_headers()
            if self.command == "HEAD" or count == 0:
                return
            self.wfile.flush()
            sent = self._sendfile(fd, start, count)
            a.metrics.add(http_bytes_sent=sent)
            if sent != count:
                self.close_connection = True
        finally:
            os.close(fd)

    def _sendfile(self, fd: int, offset: int, count: int) -> int:
        sock = self.connection
        if not isinstance(sock, ssl.SSLSocket):
            sent = 0
            while sent < count:
                n = os.sendfile(sock.fileno(), fd, offset + sent, count - sent)
                if n == 0:
                    break
                sent += n
            return sent
        # TLS: no sendfile. One reused buffer small enough to stay in the CPU cache between
        # the read and the encryption (1 MiB buffers were measurably slower on this class of CPU).
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        sent = 0
        while sent < count:
            n = os.preadv(fd, [view[:min(BLOCK, count - sent)]], offset + sent)
            if not n:
                break
            sock.sendall(view[:n])
            sent += n
        return sent

    def _dav_head(self, path: str, raw: str) -> None:
        a = self.archive
        if a.catalog.get_dir(path):
            return self.send(200, ctype="text/plain; charset=utf-8")
        f = a.stat(path)
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{f.adler32}"',
                   "Last-Modified": webdav.http_date(f.modified),
                   "Content-Length": str(f.size), "Content-Type": "application/octet-stream"}
        digest = webdav.want_digest(self.headers.get("Want-Digest"), f)
        if digest:
            headers["Digest"] = digest
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _check_put(self, path: str) -> Identity:
        a = self.archive
        if a.catalog.get_dir(path):
            raise AlreadyExists(path)
        action = "modify" if a.catalog.get_file(path) else "create"
        ident = self.require(action, path)
        self._check_locks(ident, own=(path,), parents=[path] if action == "create" else [])
        return ident

    def _dav_put(self, path: str, raw: str) -> None:
        ident = self._check_put(path)
        existed = self.archive.catalog.get_file(path) is not None
        digests = webdav.parse_digest(self.headers.get("Digest"))
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        self._body_read = True
        if "chunked" in te:
            reader = _ChunkedReader(self.rfile)
            entry = self.archive.put_stream(path, reader.read, None, ident.name, digests)
        else:
            length = self.headers.get("Content-Length")
            if length is None:
                raise BadRequest(f"{path}: PUT needs Content-Length or chunked encoding")
            entry = self.archive.put_stream(path, self.rfile, int(length), ident.name,
                                            digests)
        self.archive.metrics.add(http_bytes_received=entry.size)
        self.send(204 if existed else 201, headers={"ETag": f'"{entry.adler32}"'})

    def _dav_delete(self, path: str, raw: str) -> None:
        ident = self.identity()  # storage.modify: authorized by the route table
        self._check_locks(ident, tree=[path], parents=[path])
        self.archive.delete(path)  # a collection with everything in it (RFC 4918 9.6.1)
        self.server.locks.drop_below(path)
        self.send(204)

    def _dav_mkcol(self, path: str, raw: str) -> None:
        if self.content_length():
            self.read_body()
            return self.problem(415, "MKCOL with a body is not supported")
        ident = self.require("create", path)
        self._check_locks(ident, parents=[path])
        self.archive.mkdir(path, ident.name, parents=False)
        self.send(201)

    def _dav_propfind(self, path: str, raw: str) -> None:
        mode, names = webdav.parse_propfind(self.read_body())  # malformed XML: 400
        self.require("read", path)
        depth = (self.headers.get("Depth") or "1").strip().lower()
        if depth not in ("0", "1"):
            return self.problem(403, "PROPFIND with Depth: infinity is not supported",
                                "propfind-finite-depth")
        a = self.archive
        d = a.catalog.get_dir(path)
        f = None if d else a.catalog.get_file(path)
        if not d and not f:
            raise NotFound(path)
        children = a.catalog.list_dir(path) if (d and depth == "1") else None
        files = ([f] if f else []) + (children[1] if children else [])
        # one query for the replicas of the whole listing, one for its dead properties (two
        # queries per member before: 150 for a collection of 50 files)
        flags = a.catalog.replica_flags(file_id=f.file_id) if f else \
            a.catalog.replica_flags(parent=path) if children else {}
        loc = {}
        for x in files[:2000]:
            on_disk, on_tape = flags.get(x.file_id, (False, False))
            loc[x.file_id] = ("DISK_AND_TAPE" if on_disk and on_tape else
                              "DISK" if on_disk else "TAPE" if on_tape else "LOST")
        props = a.catalog.listing_props(path) if children else \
            {path: a.catalog.get_props(path)}
        if mode == "allprop":  # what clients send most (gfal2, davix, rclone): cached bytes
            ms = webdav.members(d, f, children, loc)
            body = webdav.multistatus_of(webdav.allprop_responses(ms, props))
            return self.send(207, body, 'application/xml; charset="utf-8"')
        res = webdav.resources(d, f, children, loc)
        want_locks = mode == "prop" and any(n in webdav.LOCK_PROPS for n in names)
        for r in res:
            r.dead = props.get(r.path, {})
            if want_locks:
                active = "".join(lk.activelock(webdav.href(lk.root, False))
                                 for lk in self.server.locks.covering(r.path))
                r.live[(webdav.DAV, "lockdiscovery")] = \
                    f"<D:lockdiscovery>{active}</D:lockdiscovery>"
        body = webdav.multistatus_of([webdav.response(r, mode, names) for r in res])
        self.send(207, body, 'application/xml; charset="utf-8"')

    def _dav_move(self, path: str, raw: str) -> None:
        dpath = self._destination("MOVE")
        if dpath is None:
            return None
        ident = self.require("modify", path)
        authorize(ident, "modify", dpath)
        a = self.archive
        if not (a.catalog.get_file(path) or a.catalog.get_dir(path)):
            raise NotFound(path)
        if dpath == path or dpath.startswith(path + "/"):
            return self.problem(403, f"{dpath}: cannot move a resource onto or into itself")
        self._check_locks(ident, tree=[path, dpath], parents=[path, dpath])
        existed = bool(a.catalog.get_file(dpath) or a.catalog.get_dir(dpath))
        if existed:
            # Overwrite: T (the default) deletes the destination first (RFC 4918 9.9.3), 204
            if (self.headers.get("Overwrite") or "T").upper() == "F":
                return self.problem(412, f"{dpath} exists and Overwrite is F")
            a.delete(dpath)
            self.server.locks.drop_below(dpath)
        elif not a.catalog.get_dir(parent_of(dpath)):
            raise Conflict(dpath, "parent collection does not exist")
        a.move(path, dpath)
        self.server.locks.drop_below(path)  # locks stay with the URL, not the resource
        self.send(204 if existed else 201)

    def _is_this_server(self, netloc: str) -> bool:
        """A Destination's authority names this server: the one the client addressed (Host),
        the public URL's, or this server's own address."""
        mine = {(self.headers.get("Host") or "").lower(), urlsplit(self.base_url()).netloc.lower()}
        if self.server.cfg.server.public_url:
            mine.add(urlsplit(self.server.cfg.server.public_url).netloc.lower())
        return netloc.lower() in mine

    def _dav_post(self, path: str, raw: str) -> None:
        ctype = (self.headers.get("Content-Type") or "").lower()
        self.read_body()
        self._body_read = True
        if "macaroon-request" in ctype:
            # Never a 2xx other than a real macaroon: a 204 here crashes gfal2 2.21.3.
            return self.problem(405, "this archive does not issue macaroons; use a bearer "
                                "token or an X.509 certificate")
        self.problem(405, "POST is only used by the Tape REST API (/api/v1/...)")
