"""The archive's HTTP route table: every request the server answers is one entry below.

No I/O here: :func:`match` maps a method and a request path to a :class:`Match` (the entry and
its path parameters), a :class:`MethodNotAllowed` (405 with ``Allow``) or None. The server
(``archive.server.Handler``) calls ``getattr(handler, route.handler)(**params)`` after
``authorize(identity, route.action, path)`` when the entry names an action.

Patterns
    Literal text with placeholders: ``{name}`` is one path segment (percent-decoded), and
    ``{name:path}`` is the rest of the path as sent (slashes included, possibly empty; the
    handler or the server normalizes it). The server passes the parameters as keyword arguments
    after two conversions: ``path`` becomes ``paths.normalize("/" + path)``, and ``raw`` (the
    WebDAV entries' whole path) is refused if the target holds a '#' and adds ``path``, its
    normal form. Bad paths are 400s then, after the 405 check.

Matching (the rules the if-chains had, kept so that every answer stays the same)
    * Entries are tried in order; the first whose pattern matches and whose ``methods`` hold
      the method (``ANY``: every method) wins.
    * Trailing slashes are ignored. The first two segments of a pattern (the mount: ``/api/v1``,
      ``/api/catalog``, ``/api/admin``, ``/.well-known/wlcg-tape-rest-api``) must be sent as
      written; below them repeated slashes count as one.
    * ``documented`` entries are the OpenAPI operations (archive/openapi.py; tests/archive/
      test_routes.py fails on any drift). A path matching a documented pattern *strictly*
      (single slashes, at most one trailing slash) has the ``Allow`` list of its documented
      entries (HEAD wherever GET is, OPTIONS always); any other method is a 405 with that list.
      An allowed method without an entry of its own (HEAD on a stage request) falls through to
      the entries after it, as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

ANY = ("*",)
_PLACEHOLDER = re.compile(r"\{(\w+)(?::(path))?\}")


def _literal_prefix(pattern: str) -> str:
    """What every matching path starts with: the text before the first placeholder, up to the
    mount (below it repeated slashes are allowed)."""
    head = _PLACEHOLDER.split(pattern, maxsplit=1)[0]
    parts = head.split("/")
    return "/".join(parts[:3]) if len(parts) > 3 else head


def _compile(pattern: str, strict: bool) -> tuple[re.Pattern[str], dict[str, str]]:
    out, kinds, slashes, pos = [], {}, 0, 0
    for m in [*_PLACEHOLDER.finditer(pattern), None]:
        literal = pattern[pos:m.start() if m else len(pattern)]
        for ch in literal:
            if ch == "/":
                slashes += 1
                out.append("/" if strict or slashes <= 2 else "/+")
            else:
                out.append(re.escape(ch))
        if m is None:
            break
        name, kind = m.group(1), m.group(2) or "segment"
        kinds[name] = kind
        out.append(f"(?P<{name}>[^/]+)" if kind == "segment" else
                   f"(?P<{name}>{'.+' if strict else '.*'})")
        pos = m.end()
    return re.compile("^" + "".join(out) + ("/?$" if strict else "/*$")), kinds


@dataclass(frozen=True)
class Route:
    """One entry: ``methods`` (or ``ANY``), ``pattern``, the ``handler`` method's name on the
    server's Handler, the ``action`` to authorize (``auth.authorize(identity, action, path)``
    with the entry's ``path`` parameter, "/" without one) before the handler runs, or None when
    the handler authorizes itself (the decision needs the body or the catalog), and whether it
    is an OpenAPI operation (``documented``)."""

    methods: tuple[str, ...]
    pattern: str
    handler: str
    action: str | None = None
    documented: bool = False
    _loose: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _strict: re.Pattern[str] = field(init=False, repr=False, compare=False)
    kinds: dict[str, str] = field(init=False, repr=False, compare=False)
    _prefix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        loose, kinds = _compile(self.pattern, strict=False)
        object.__setattr__(self, "_prefix", _literal_prefix(self.pattern))
        object.__setattr__(self, "_loose", loose)
        object.__setattr__(self, "_strict", _compile(self.pattern, strict=True)[0])
        object.__setattr__(self, "kinds", kinds)

    @property
    def template(self) -> str:
        """The pattern as an OpenAPI path template (``{path:path}`` -> ``{path}``)."""
        return _PLACEHOLDER.sub(lambda m: "{" + m.group(1) + "}", self.pattern)

    def takes(self, method: str) -> bool:
        return self.methods == ANY or method in self.methods

    def params(self, path: str) -> dict[str, str] | None:
        m = self._loose.match(path) if path.startswith(self._prefix) else None
        if m is None:
            return None
        return {k: unquote(v) if self.kinds[k] == "segment" else v
                for k, v in m.groupdict().items()}


@dataclass(frozen=True)
class Match:
    route: Route
    params: dict[str, str]


@dataclass(frozen=True)
class MethodNotAllowed:
    allow: tuple[str, ...]


R = Route
#: The route table, in matching order.
ROUTES: tuple[Route, ...] = (
    # Tape REST discovery (WLCG Tape REST API v1)
    R(("GET", "HEAD"), "/.well-known/wlcg-tape-rest-api", "api_discovery", documented=True),
    R(ANY, "/.well-known/wlcg-tape-rest-api", "api_discovery_refused"),
    # WLCG Tape REST API v1 (taperest.py authorizes per file, from the body)
    R(("POST",), "/api/v1/stage", "api_stage", documented=True),
    R(("GET",), "/api/v1/stage/{id}", "api_stage_status", documented=True),
    R(("DELETE",), "/api/v1/stage/{id}", "api_stage_delete", documented=True),
    R(("POST",), "/api/v1/stage/{id}/cancel", "api_stage_cancel", documented=True),
    R(("POST",), "/api/v1/release/{id}", "api_release", documented=True),
    R(("POST",), "/api/v1/archiveinfo", "api_archiveinfo", documented=True),
    R(ANY, "/api/v1", "api_tape_not_found"),
    R(ANY, "/api/v1/{rest:path}", "api_tape_not_found"),
    # catalog search API (read-only)
    R(("GET", "HEAD"), "/api/catalog/search", "api_catalog_search", documented=True),
    R(("GET", "HEAD"), "/api/catalog/files/{path:path}", "api_catalog_file", "read",
      documented=True),
    R(("GET", "HEAD"), "/api/catalog/files", "api_catalog_file", "read"),
    R(ANY, "/api/catalog{rest:path}", "api_catalog_other"),
    # operator API (admin.py: storage.modify on /)
    R(("POST",), "/api/admin/migrate", "api_admin_migrate", documented=True),
    R(("POST",), "/api/admin/evict", "api_admin_evict", documented=True),
    R(("GET", "HEAD"), "/api/admin/drives", "api_admin_drives", documented=True),
    R(ANY, "/api/admin/{rest:path}", "api_admin_not_found"),
    # service documents
    R(("GET", "HEAD"), "/openapi.json", "api_openapi", documented=True),
    R(("GET", "HEAD"), "/metrics", "api_metrics", documented=True),
    # WebDAV namespace: every other path ({raw:path}: '#' refused, normalized to ``path``)
    R(("GET",), "{raw:path}", "_dav_get", "read"),
    R(("HEAD",), "{raw:path}", "_dav_head", "read"),
    R(("PUT",), "{raw:path}", "_dav_put"),
    R(("DELETE",), "{raw:path}", "_dav_delete", "modify"),
    R(("MKCOL",), "{raw:path}", "_dav_mkcol"),
    R(("PROPFIND",), "{raw:path}", "_dav_propfind"),
    R(("PROPPATCH",), "{raw:path}", "_dav_proppatch"),
    R(("MOVE",), "{raw:path}", "_dav_move"),
    R(("COPY",), "{raw:path}", "_dav_copy"),
    R(("LOCK",), "{raw:path}", "_dav_lock"),
    R(("UNLOCK",), "{raw:path}", "_dav_unlock"),
    R(("POST",), "{raw:path}", "_dav_post"),
)
del R


def allow(path: str, table: tuple[Route, ...] = ROUTES) -> tuple[str, ...] | None:
    """The ``Allow`` list of the documented (JSON API) resource ``path``, or None when ``path``
    is not one (a WebDAV path, or an API path outside the OpenAPI document)."""
    first = next((r for r in table if r.documented and path.startswith(r._prefix)
                  and r._strict.match(path)), None)
    return None if first is None else _allow_of(table, first.pattern)


def _allow_of(table: tuple[Route, ...], pattern: str) -> tuple[str, ...]:
    methods: list[str] = []
    for r in table:
        if r.documented and r.pattern == pattern:
            methods += [m for m in r.methods if m not in methods]
    if "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")
    return (*methods, "OPTIONS")


def dav_allow(table: tuple[Route, ...] = ROUTES) -> str:
    """The ``Allow`` header of WebDAV paths: OPTIONS and every method of the namespace entries."""
    methods = ["OPTIONS"]
    for r in table:
        if "raw" in r.kinds and r.methods != ANY:
            methods += [m for m in r.methods if m not in methods]
    return ", ".join(methods)


def match(method: str, path: str,
          table: tuple[Route, ...] = ROUTES) -> Match | MethodNotAllowed | None:
    """The entry answering ``method path`` (the request target's path, percent-encoded), a 405
    for a documented resource that does not take ``method``, or None (no entry at all)."""
    allowed = allow(path, table)
    if allowed is not None and method not in allowed:
        return MethodNotAllowed(allowed)
    for r in table:
        if r.takes(method):
            params = r.params(path)
            if params is not None:
                return Match(r, params)
    return None


__all__ = ["ANY", "ROUTES", "Match", "MethodNotAllowed", "Route", "allow", "dav_allow", "match"]
