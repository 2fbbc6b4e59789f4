"""The archive's JSON API handlers: WLCG Tape REST v1, the catalog search API, the operator API
and the service documents (OpenAPI, Prometheus metrics), i.e. the ``api_*`` methods the route
table (archive/routes.py) names, and the catalog search's query parser.

:class:`ApiHandlers` is mixed into ``archive.server.Handler``: ``self`` is that handler (its
``send``/``send_json``/``problem``/``read_json``/``require``/``identity``/``archive``).
Path parameters come from the route table (``id`` percent-decoded, ``path`` normalized); the
catalog file entry is authorized by the table (storage.read), the rest authorize here or in
taperest.py/admin.py, where the decision needs the body.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from archive import taperest
from archive.catalog import SearchQuery
from archive.errors import BadPath, BadRequest
from archive.paths import normalize


class ApiHandlers:
    """JSON API methods of ``archive.server.Handler`` (see the module docstring)."""

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
