"""The access log: one line per request, and the structured (JSON) log format of ``archive serve``.

Each answered request is one record on the ``archive.access`` logger (INFO): client address,
identity, method, path, status, response body bytes and duration. What is never logged: the
``Authorization`` header, a bearer token, or query values that may carry one (``authz``,
``access_token``, anything named ``*token*``); control characters in paths are escaped, so a
request cannot forge log lines.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

access = logging.getLogger("archive.access")

_SECRET_PARAMS = ("token", "authz", "macaroon", "secret", "password", "key", "sig")


def safe_target(target: str) -> str:
    """The request target with secret-bearing query values replaced and control characters
    escaped (``\\x1b``)."""
    u = urlsplit(target)
    query = u.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "REDACTED" if any(s in k.lower() for s in _SECRET_PARAMS) else v)
                           for k, v in pairs], safe="/:")
    text = u.path + (f"?{query}" if query else "")
    return "".join(c if 0x20 <= ord(c) < 0x7F or ord(c) > 0x9F else f"\\x{ord(c):02x}"
                   for c in text)


def record(handler: Any) -> None:
    """Log the request ``handler`` just answered (nothing if no answer was sent)."""
    status = getattr(handler, "_status", None)
    if status is None or not access.isEnabledFor(logging.INFO):
        return
    ident = getattr(handler, "_ident", None)
    t0 = getattr(handler, "_t0", None)
    nbytes = 0 if handler.command == "HEAD" else getattr(handler, "_resp_bytes", 0)
    fields = {
        "client": handler.client_address[0] if handler.client_address else "-",
        "identity": ident.name if ident is not None else "-",
        "auth": ident.method if ident is not None else "-",
        "method": handler.command or "-",
        "path": safe_target(handler.path or ""),
        "status": status,
        "bytes": nbytes,
        "duration_ms": round((time.monotonic() - t0) * 1000, 2) if t0 is not None else None,
    }
    access.info('%(client)s %(identity)s "%(method)s %(path)s" %(status)s %(bytes)s '
                '%(duration_ms)sms', fields, extra={"access": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 UTC), level, logger, message, and for access
    records the fields (method, path, status, bytes, duration_ms, identity, client)."""

    def format(self, rec: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec.created))
            + f".{int(rec.msecs):03d}Z",
            "level": rec.levelname.lower(), "logger": rec.name, "message": rec.getMessage()}
        fields = getattr(rec, "access", None)
        if fields:
            out.update(fields)
        if rec.exc_info:
            out["exception"] = self.formatException(rec.exc_info)
        return json.dumps(out, default=str)


class _InProcessQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are (same process: nothing to pickle), so
    the formatter there sees them exactly as a direct handler would (exc_info included)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


_listener: logging.handlers.QueueListener | None = None


def _stop_listener() -> None:
    global _listener
    if _listener is not None:
        _listener.stop()  # writes every record queued before it returns
        _listener = None


def configure(json_logs: bool, verbose: bool = False) -> None:
    """Logging of a running server: to stderr, text or JSON, access log on (INFO).

    Request threads only put records on a queue; one thread formats and writes them, in
    order. Writing under the stream handler's lock from every request thread was a convoy
    under load (50 clients: threads queued on that lock while its holder waited for the GIL)."""
    global _listener
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _stop_listener()
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(q, handler)
    _listener.start()
    atexit.register(_stop_listener)  # flushes what is queued when the server exits
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_InProcessQueueHandler(q))
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    access.setLevel(logging.INFO)
    logging.getLogger("archive").setLevel(logging.DEBUG if verbose else logging.INFO)
