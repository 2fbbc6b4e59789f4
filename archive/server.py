"""The archive's one HTTP(S) server: WebDAV namespace, WLCG Tape REST API, catalog search,
OpenAPI description and Prometheus metrics.

Built on the standard library's ``ThreadingHTTPServer`` because the wire details gfal2 depends on
need full control: the ``100 Continue`` interim answer (sent only after authorisation, so a
refused upload never streams its body), ``sendfile`` for GET on plain HTTP, the TLS context
(client certificates with ``VERIFY_ALLOW_PROXY_CERTS``; the handshake runs in the connection's
own thread), and exact status codes (4xx to the macaroon POST, 501 to COPY).

Start it from Python with :func:`serve_in_thread` (returns the server with its bound port) or
from the command line with ``archive serve --config FILE``.
"""

from __future__ import annotations

import _ssl  # Certificate.public_bytes encodings (see Handler._chain)
import contextlib
import json
import logging
import os
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from appliance.hashing import BLOCK
from archive import accesslog, davlocks, routes, taperest, webdav
from archive.auth import AUTHENTICATED, Authenticator, Identity, authorize
from archive.catalog import SearchQuery
from archive.config import ArchiveConfig
from archive.engine import Archive
from archive.errors import (
    AlreadyExists,
    ArchiveError,
    BadPath,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
)
from archive.paths import normalize, parent_of

log = logging.getLogger(__name__)
MAX_JSON = 64 << 20
ALLOW = routes.dav_allow()  # "OPTIONS, GET, HEAD, PUT, ...": the WebDAV entries of the table


def make_ssl_context(cfg: ArchiveConfig) -> ssl.SSLContext | None:
    s = cfg.server
    if not s.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(s.tls_cert, s.tls_key or None)
    if s.ca_dir:
        ctx.load_verify_locations(capath=s.ca_dir)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # tokens and public reads need no certificate
        ctx.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    return ctx


class ArchiveHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, cfg: ArchiveConfig, archive: Archive):
        self.cfg = cfg
        self.archive = archive
        self.auth = Authenticator(cfg.auth)
        self.locks = davlocks.LockTable()  # WebDAV locks: in memory (davlocks.py)
        self.ssl_context = make_ssl_context(cfg)
        super().__init__((cfg.server.host, cfg.server.port), Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is None:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return super().finish_request(request, client_address)
        request.settimeout(30)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:
            log.info("TLS handshake with %s failed: %s", client_address, err)
            return
        try:
            tls.settimeout(300)
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ArchiveHTTPServer
    server_version = "LTA/0.1"

    # -- plumbing ------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    # access log (archive.accesslog): status, body bytes and identity of every answer
    def handle_one_request(self) -> None:
        self._status = None
        try:
            super().handle_one_request()
            if self._status is not None:
                self._discard_unread_body()
        finally:
            accesslog.record(self)

    def _discard_unread_body(self) -> None:
        """A request answered without reading its body (a 404 or 405 on a JSON path): the body
        must not be parsed as the next request of the connection (it was: schemathesis saw
        '{"files": []}TRACE ...' answered 400). A small one is read, else the connection closes."""
        if self.close_connection or getattr(self, "_body_read", True) or \
                self._api_allow() is None:  # WebDAV handlers account for their bodies
            return
        self._body_read = True
        length = self.headers.get("Content-Length") if self.headers else None
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
        elif length is not None and length.strip() not in ("", "0"):
            expect = (self.headers.get("Expect") or "").lower() == "100-continue"
            if expect or not length.strip().isdigit() or int(length) > (1 << 20):
                self.close_connection = True
            else:
                try:
                    self.rfile.read(int(length))
                except OSError:
                    self.close_connection = True

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        self._status = int(code) if str(code).isdigit() else 0

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-length":
            self._resp_bytes = int(value) if str(value).isdigit() else 0
        super().send_header(keyword, value)

    @property
    def archive(self) -> Archive:
        return self.server.archive

    def _chain(self) -> list[bytes] | None:
        """The client's certificate chain as OpenSSL verified it (DER, leaf first).

        Python 3.13 has ``SSLSocket.get_verified_chain()``; 3.11's C object has it already
        (``_sslobj.get_verified_chain()``, Certificate objects). Where neither exists, the leaf
        alone (then ``auth.eec_dn`` refuses proxies of proxies instead of guessing)."""
        conn = self.connection
        if not isinstance(conn, ssl.SSLSocket):
            return None
        for owner in (conn, getattr(conn, "_sslobj", None)):
            get = getattr(owner, "get_verified_chain", None)
            if get is None:
                continue
            with contextlib.suppress(ValueError, ssl.SSLError):
                chain = get()
                if chain:
                    return [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in chain]
                return None
        with contextlib.suppress(ValueError):
            leaf = conn.getpeercert(binary_form=True)
            return [leaf] if leaf else None
        return None

    def identity(self) -> Identity:
        if not hasattr(self, "_ident"):
            self._ident = self.server.auth.identify(self.headers.get("Authorization"),
                                                    self._chain(),
                                                    tls=self.server.ssl_context is not None)
        return self._ident

    def require(self, action: str | None, path: str) -> Identity:
        """Every route's authorization goes through ``auth.authorize`` (one rule: 401 for
        anonymous callers, 403 for a missing scope)."""
        return authorize(self.identity(), action, path)

    def split(self) -> tuple[str, dict[str, list[str]]]:
        u = urlsplit(self.path)
        return u.path, parse_qs(u.query)

    def send(self, status: int, body: bytes = b"", ctype: str | None = None,
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        # headers and body in one write: no small-segment round trip before the body
        self._headers_buffer.append(b"\r\n")
        if body and self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(obj).encode(), "application/json", headers)

    def problem(self, status: int, detail: str, title: str | None = None) -> None:
        from http import HTTPStatus

        title = title or HTTPStatus(status).phrase
        body = json.dumps({"status": status, "title": title, "detail": detail}).encode()
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="lta"'
            if self.server.ssl_context is not None:  # a token as the Basic password (auth.py)
                headers["WWW-Authenticate"] += ', Basic realm="lta"'
        self.send(status, body, "application/problem+json", headers)

    def read_body(self, limit: int = MAX_JSON) -> bytes:
        n = self.content_length()
        if n > limit:
            raise BadRequest(f"request body too large ({n} bytes)")
        # from here on the body is consumed: an error must be answered at once, never by
        # reading the body a second time (that blocked until the client gave up)
        self._body_read = True
        return self.rfile.read(n) if n else b""

    def content_length(self) -> int:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        if not raw.strip().isdigit():
            self._body_read = True  # unknowable: answer and close, never read
            self.close_connection = True
            raise BadRequest(f"Content-Length {raw[:40]!r} is not a non-negative integer")
        return int(raw)

    def read_json(self) -> Any:
        raw = self.read_body()
        try:
            return json.loads(raw or b"{}")
        except ValueError as err:
            raise BadRequest(f"request body is not JSON: {err}") from err

    def dispatch(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except ArchiveError as err:
            if isinstance(err, FramingError):
                self.close_connection = True
            else:
                self._drain()
            self.problem(err.status, str(err))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as err:  # noqa: BLE001 - answer 500, keep serving
            log.exception("internal error on %s %s", self.command, self.path)
            self.close_connection = True
            with contextlib.suppress(Exception):
                self.problem(500, f"internal error: {type(err).__name__}")

    def _drain(self) -> None:
        """An error before the body was read: read a small body (closing with unread data
        makes TCP reset the connection before the client reads our answer), else close."""
        if self.command not in ("PUT", "POST", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE",
                                "LOCK", "UNLOCK") or \
                getattr(self, "_body_read", False):
            return
        self._body_read = True
        length = self.headers.get("Content-Length")
        expect = (self.headers.get("Expect") or "").lower() == "100-continue"
        if length is not None and not expect and int(length) <= (1 << 20):
            with contextlib.suppress(OSError, ValueError):
                self.rfile.read(int(length))
                return
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if (length is None and not chunked) or (length is not None and int(length) == 0):
            return  # no body at all
        self.close_connection = True

    def parse_request(self) -> bool:
        # one handler object serves every request of a keep-alive connection: reset state
        self._body_read = False
        self.__dict__.pop("_ident", None)
        self._t0, self._resp_bytes = time.monotonic(), 0
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        """Authorise an upload before inviting its body (a refused PUT never streams)."""
        if self.command == "PUT":
            try:
                path = normalize(urlsplit(self.path).path)
                self._check_put(path)
            except ArchiveError as err:
                self.close_connection = True
                self.problem(err.status, str(err))
                return False
        return super().handle_expect_100()

    # -- routing (the table is archive/routes.py) ---------------------------------------------
    def _route(self, method: str) -> None:
        raw = urlsplit(self.path).path
        found = routes.match(method, raw)
        if isinstance(found, routes.MethodNotAllowed):
            return self._api_method_not_allowed(found.allow)
        if found is None:  # not reached with ROUTES (WebDAV takes every other path)
            return self.problem(404, f"no endpoint {method} {raw}")
        route, params = found.route, dict(found.params)
        if "raw" in params:  # the WebDAV namespace
            if "#" in self.path:  # a fragment is never sent (RFC 9112 3.2); DELETE /a/#b is not /a
                raise BadRequest("a request target may not contain '#' (encode it as %23)")
            params["path"] = normalize(params["raw"])
        elif "path" in params:  # an archive path below the route's prefix
            params["path"] = normalize("/" + params["path"].strip("/"))
        if route.action is not None:
            self.require(route.action, params.get("path", "/"))
        getattr(self, route.handler)(**params)

    def base_url(self) -> str:
        """The archive's own URL in answers (Tape REST endpoints, Location): ``server.public_url``,
        else the configured address, else the address this connection reached. Never the
        request's Host header: a client could make the archive advertise any host."""
        if self.server.cfg.server.public_url:
            return self.server.cfg.server.public_url.rstrip("/")
        host = self.server.cfg.server.host
        if host in ("", "0.0.0.0", "::"):
            host = self.connection.getsockname()[0]
        if ":" in host:
            host = f"[{host}]"
        return f"{self.server.scheme}://{host}:{self.server.port}"

    def do_GET(self) -> None:
        self.dispatch(self._route, "GET")

    def do_HEAD(self) -> None:
        self.dispatch(self._route, "HEAD")

    def do_PUT(self) -> None:
        self.dispatch(self._route, "PUT")

    def do_DELETE(self) -> None:
        self.dispatch(self._route, "DELETE")

    def do_MKCOL(self) -> None:
        self.dispatch(self._route, "MKCOL")

    def do_PROPFIND(self) -> None:
        self.dispatch(self._route, "PROPFIND")

    def do_MOVE(self) -> None:
        self.dispatch(self._route, "MOVE")

    def do_POST(self) -> None:
        self.dispatch(self._route, "POST")

    def do_OPTIONS(self) -> None:
        if self._api_allow() is not None:
            return self.send(200, headers={"Allow": ", ".join(self._api_allow() or ())})
        self.send(200, headers={"DAV": "1, 2", "Allow": ALLOW, "MS-Author-Via": "DAV"})

    def do_PROPPATCH(self) -> None:
        self.dispatch(self._route, "PROPPATCH")

    def do_LOCK(self) -> None:
        self.dispatch(self._route, "LOCK")

    def do_UNLOCK(self) -> None:
        self.dispatch(self._route, "UNLOCK")

    def _api_allow(self) -> tuple[str, ...] | None:
        """The methods of the JSON API resource addressed (None: a WebDAV path)."""
        return routes.allow(urlsplit(self.path).path)

    def _api_method_not_allowed(self, allow: tuple[str, ...]) -> None:
        """A method the route table (the OpenAPI document) does not declare for this resource:
        405 and ``Allow`` from the table (schemathesis checks both)."""
        body = json.dumps({"status": 405, "title": "Method Not Allowed",
                           "detail": f"{self.command} is not supported on this resource"}).encode()
        self.send(405, body, "application/problem+json", {"Allow": ", ".join(allow)})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A method this server has no handler for is a 405 with ``Allow`` (RFC 9110 15.5.6),
        not the stdlib's 501; its body, if any, is not read, so the connection closes."""
        if code == 501 and self.command and not hasattr(self, f"do_{self.command}"):
            self.close_connection = True
            allow = self._api_allow()
            if allow is not None:  # its body is drained after the answer (a close with
                self.close_connection = False  # unread data resets TLS before it is read)
                return self._api_method_not_allowed(allow)
            body = json.dumps({"status": 405, "title": "Method Not Allowed",
                               "detail": f"{self.command} is not supported here"}).encode()
            self.send(405, body, "application/problem+json", {"Allow": ALLOW})
            return
        super().send_error(code, message, explain)

    def do_COPY(self) -> None:
        self.dispatch(self._route, "COPY")

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
            a.metrics.http_bytes_sent += sent
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
        self.archive.metrics.http_bytes_received += entry.size
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

    # -- service documents, Tape REST discovery --------------------------------------------------
    def api_discovery(self) -> None:
        self.send_json(200, taperest.discovery(self.server.cfg.server.sitename, self.base_url()))

    def api_discovery_refused(self) -> None:
        raise BadRequest("discovery is GET only")

    def api_openapi(self) -> None:
        from archive.openapi import document

        self.send_json(200, document(self.base_url()))

    def api_metrics(self) -> None:
        from archive.metrics import render

        self.send(200, render(self.archive).encode(), "text/plain; version=0.0.4; charset=utf-8")

    # -- Tape REST (taperest.py authorizes each file) --------------------------------------------
    def _tape_body(self) -> Any:
        """Who asks (a bad credential is a 401 before anything else), then the JSON body of a
        POST (read before the endpoint is known, as every Tape REST POST's body is)."""
        self.identity()
        if self.command != "POST":
            return None
        body = self.read_json()
        self._body_read = True
        return body

    def api_stage(self) -> None:
        body = self._tape_body()
        status, obj = taperest.stage(self.archive, self.identity(), body)
        self.send_json(status, obj,
                       {"Location": f"{self.base_url()}/api/v1/stage/{obj['requestId']}"})

    def api_stage_status(self, id: str) -> None:  # noqa: A002 - the OpenAPI parameter's name
        self._tape_body()
        self.send_json(*taperest.status(self.archive, self.identity(), id))

    def api_stage_cancel(self, id: str) -> None:  # noqa: A002
        body = self._tape_body()
        self.send_json(*taperest.cancel(self.archive, self.identity(), id, body))

    def api_stage_delete(self, id: str) -> None:  # noqa: A002
        self._tape_body()
        self.send_json(*taperest.delete(self.archive, self.identity(), id))

    def api_release(self, id: str) -> None:  # noqa: A002
        body = self._tape_body()
        self.send_json(*taperest.release(self.archive, self.identity(), id, body))

    def api_archiveinfo(self) -> None:
        body = self._tape_body()
        self.send_json(*taperest.archiveinfo(self.archive, self.identity(), body))

    def api_tape_not_found(self, rest: str = "") -> None:
        self._tape_body()
        rest = urlsplit(self.path).path[len("/api/v1"):].strip("/")
        self.problem(404, f"no Tape REST endpoint {self.command} /api/v1/{rest}")

    # -- operator API (archive.admin) ------------------------------------------------------------
    def _operator(self) -> Any:
        from archive import admin

        admin.require_operator(self.identity())
        return admin

    def api_admin_migrate(self) -> None:
        admin = self._operator()
        self.send_json(200, admin.migrate(self.archive, taperest.paths_of(self.read_json())))

    def api_admin_evict(self) -> None:
        admin = self._operator()
        self.send_json(200, admin.evict(self.archive, taperest.paths_of(self.read_json())))

    def api_admin_drives(self) -> None:
        self.send_json(200, self._operator().drives(self.archive))

    def api_admin_not_found(self, rest: str) -> None:
        self._operator()
        rest = urlsplit(self.path).path[len("/api/admin/"):].strip("/")
        self.problem(404, f"no admin endpoint {self.command} /api/admin/{rest}")

    # -- catalog search API (read-only) ------------------------------------------------------------
    def api_catalog_file(self, path: str = "/") -> None:
        """One file's catalog entry (storage.read on ``path``: authorized by the route table)."""
        a = self.archive
        f = a.stat(path)
        prod = a.catalog.get_product(f.file_id)
        self.send_json(200, {**f.to_json(), "locality": a.locality(path),
                             "tape_copies": [r.__dict__ for r in
                                             a.catalog.tape_replicas(f.file_id)],
                             "metadata": prod.to_json() if prod else {}})

    def api_catalog_search(self) -> None:
        from urllib.parse import parse_qsl

        # blank values count: 'start=' is not a date (400), 'prefix=' is the root
        sq = search_query(dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))
        self.require("read", sq.path_prefix)
        rows = self.archive.catalog.search(sq)
        items = [{**f.to_json(), "metadata": p.to_json() if p else {}} for f, p in rows]
        nxt = rows[-1][0].path if len(rows) == sq.limit else None
        self.send_json(200, {"items": items, "count": len(items), "next": nxt})

    def api_catalog_other(self, rest: str) -> None:
        if self.command not in ("GET", "HEAD"):
            return self.problem(405, "the catalog API is read-only (GET)")
        rest = urlsplit(self.path).path[len("/api/catalog"):].strip("/")
        self.problem(404, f"no catalog endpoint /api/catalog/{rest}")


def search_query(q: dict[str, str]) -> SearchQuery:
    """Query-string parameters -> SearchQuery; errors name the parameter."""
    from astropy.time import Time

    def num(name: str) -> float | None:
        if name not in q:
            return None
        try:
            return float(q[name])
        except ValueError as err:
            raise BadRequest(f"parameter {name}: not a number: {q[name]!r}") from err

    def when(name: str) -> float | None:
        if name not in q:
            return None
        import datetime as dt

        try:  # ISO 8601 date or date-time (naive = UTC), else any time astropy reads
            t = dt.datetime.fromisoformat(q[name])
            return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()
        except ValueError:
            pass
        try:
            return float(Time(q[name]).unix)
        except (ValueError, TypeError) as err:
            raise BadRequest(f"parameter {name}: not an ISO time: {q[name]!r}") from err

    unknown = set(q) - {"prefix", "project", "observation", "instrument", "telescope", "object",
                        "product_type", "start", "end", "ra", "dec", "radius", "limit", "after",
                        "cone"}
    if unknown:
        raise BadRequest(f"unknown search parameter(s): {sorted(unknown)}")
    cone = [num("ra"), num("dec"), num("radius")]
    if "cone" in q:  # cone=RA,DEC,RADIUS: one parameter, so the OpenAPI schema can say it
        parts = q["cone"].split(",")
        try:
            cone = [float(x) for x in parts] if len(parts) == 3 else []
        except ValueError:
            cone = []
        if not cone:
            raise BadRequest(f"parameter cone: expected RA,DEC,RADIUS in degrees: {q['cone']!r}")
    if any(c is not None for c in cone) and not all(c is not None for c in cone):
        raise BadRequest("a cone search needs ra, dec and radius (degrees)")
    try:
        prefix = normalize(q.get("prefix") or "/", decoded=True)
    except BadPath as err:
        raise BadRequest(str(err)) from err
    raw_limit = q.get("limit", "100").strip()
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 10_000:
        raise BadRequest(f"parameter limit: an integer from 1 to 10000, not {raw_limit[:20]!r}")
    limit = int(raw_limit)
    return SearchQuery(path_prefix=prefix, project=q.get("project"),
                       observation=q.get("observation"), instrument=q.get("instrument"),
                       telescope=q.get("telescope"), object=q.get("object"),
                       product_type=q.get("product_type"), time_min=when("start"),
                       time_max=when("end"), ra=cone[0], dec=cone[1], radius=cone[2],
                       limit=limit, after=q.get("after", ""))


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


class RunningServer:
    """A server running in a background thread (tests, embedding): ``.port``, ``.url``, ``.stop()``."""

    def __init__(self, httpd: ArchiveHTTPServer, thread: threading.Thread, own_archive: bool):
        self.httpd, self.thread, self.own_archive = httpd, thread, own_archive

    @property
    def archive(self) -> Archive:
        return self.httpd.archive

    @property
    def port(self) -> int:
        return self.httpd.port

    @property
    def url(self) -> str:
        host = "localhost" if self.httpd.ssl_context else "127.0.0.1"
        return f"{self.httpd.scheme}://{host}:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
        if self.own_archive:
            self.archive.close()


def build_server(cfg: ArchiveConfig, archive: Archive | None = None) -> ArchiveHTTPServer:
    """Bind the server (port 0 = a free port); the archive engine is created if not given."""
    return ArchiveHTTPServer(cfg, archive or Archive(cfg))


def serve_in_thread(cfg: ArchiveConfig, archive: Archive | None = None,
                    start_engine: bool = True) -> RunningServer:
    """Start the server (and the engine loop) in daemon threads; returns a RunningServer."""
    own = archive is None
    httpd = build_server(cfg, archive)
    if start_engine and cfg.clock.mode == "real":
        httpd.archive.start()
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                         name=f"archive-http-{httpd.port}", daemon=True)
    t.start()
    return RunningServer(httpd, t, own)


__all__ = ["ArchiveHTTPServer", "RunningServer", "build_server", "serve_in_thread",
           "BadPath", "Conflict"]
