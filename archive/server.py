"""The archive's one HTTP(S) server: WebDAV namespace, WLCG Tape REST API, catalog search,
OpenAPI description and Prometheus metrics.

Built on the standard library's ``ThreadingHTTPServer`` because the wire details gfal2 depends on
need full control: the ``100 Continue`` interim answer (sent only after authorisation, so a
refused upload never streams its body), ``sendfile`` for GET on plain HTTP, the TLS context
(client certificates with ``VERIFY_ALLOW_PROXY_CERTS``; the handshake runs in the connection's
own thread), and exact status codes (4xx to the macaroon POST, 501 to COPY).

The parts: the route table (archive/routes.py) says which handler answers a request; the
handlers are in archive/http_api.py (Tape REST, catalog, admin, OpenAPI, metrics) and
archive/http_dav.py (WebDAV); this module is the server, the connection and the request
framing (bodies, answers, errors) around them.

Start it from Python with :func:`serve_in_thread` (returns the server with its bound port) or
from the command line with ``archive serve --config FILE``.
"""

from __future__ import annotations

import _ssl  # Certificate.public_bytes encodings (see Handler._chain)
import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from archive import accesslog, davlocks, routes
from archive.auth import Authenticator, Identity, authorize
from archive.config import ArchiveConfig
from archive.engine import Archive
from archive.errors import ArchiveError, BadPath, BadRequest, Conflict
from archive.http_api import ApiHandlers, search_query
from archive.http_dav import DavHandlers, FramingError
from archive.paths import normalize

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


class Handler(ApiHandlers, DavHandlers, BaseHTTPRequestHandler):
    """The request handler core: framing, answers (send, problem), bodies, identity, and the
    dispatch through the route table; the handlers are in http_api.py and http_dav.py."""

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
           "search_query", "BadPath", "Conflict"]
