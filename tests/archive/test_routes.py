"""The route table (archive/routes.py) without a server: path parameters, 405 Allow lists,
fall-through, unknown paths, and the OpenAPI document and the table describing the same API."""

from __future__ import annotations

import inspect

import pytest

from archive import openapi, routes
from archive.routes import ANY, ROUTES, Match, MethodNotAllowed, Route, allow, match
from archive.server import ALLOW, Handler

OPERATIONS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def drift(table: tuple[Route, ...], doc: dict) -> list[str]:
    """Differences between the documented entries of ``table`` and the operations of ``doc``
    (HEAD is implied by GET in the document)."""
    ours = {(r.template, m) for r in table if r.documented for m in r.methods if m != "HEAD"}
    theirs = {(t, m.upper()) for t, item in doc["paths"].items() for m in item
              if m in OPERATIONS}
    return ([f"route without an OpenAPI operation: {m} {t}" for t, m in sorted(ours - theirs)]
            + [f"OpenAPI operation without a route: {m} {t}" for t, m in sorted(theirs - ours)])


def test_every_openapi_operation_has_a_route_and_every_documented_route_an_operation():
    assert drift(ROUTES, openapi.document("http://x")) == []


def test_a_drift_is_found_both_ways():
    doc = openapi.document("http://x")
    fewer = tuple(r for r in ROUTES if r.handler != "api_release")
    assert drift(fewer, doc) == ["OpenAPI operation without a route: POST /api/v1/release/{id}"]
    more = (*ROUTES, Route(("PUT",), "/api/v1/stage/{id}", "api_stage_status", documented=True))
    assert drift(more, doc) == ["route without an OpenAPI operation: PUT /api/v1/stage/{id}"]
    del doc["paths"]["/metrics"]
    assert drift(ROUTES, doc) == ["route without an OpenAPI operation: GET /metrics"]


def test_every_handler_exists_on_the_server_and_takes_the_parameters_of_its_pattern():
    missing = [r.handler for r in ROUTES if not callable(getattr(Handler, r.handler, None))]
    assert missing == []
    for r in ROUTES:  # what the server passes: the pattern's parameters (+ path for raw)
        params = {**dict.fromkeys(r.kinds, "x"), **({"path": "/x"} if "raw" in r.kinds else {})}
        inspect.signature(getattr(Handler, r.handler)).bind(None, **params)  # TypeError: drift


@pytest.mark.parametrize("path", [
    "/api/v1/stage", "/api/v1/stage/", "/api/v1/stage/r1", "/api/v1/stage/r1/cancel",
    "/api/v1/release/a%2Fb", "/api/v1/archiveinfo", "/api/catalog/search",
    "/api/catalog/files/a/b.fits", "/api/catalog/files/", "/api/admin/migrate", "/api/admin/evict",
    "/api/admin/drives", "/openapi.json", "/metrics", "/metrics//",
    "/.well-known/wlcg-tape-rest-api", "/api/v1//stage", "/api/v1", "/api", "/a/b", "/"])
def test_allow_lists_are_those_the_openapi_document_gave(path):
    assert allow(path) == openapi.allowed_methods(path)


def test_path_parameters():
    m = match("GET", "/api/v1/stage/a%2Fb")
    assert isinstance(m, Match) and m.route.handler == "api_stage_status"
    assert m.params == {"id": "a/b"}  # one segment, percent-decoded
    m = match("POST", "/api/v1/stage/r-7/cancel/")
    assert (m.route.handler, m.params) == ("api_stage_cancel", {"id": "r-7"})
    m = match("POST", "/api/v1//release//r9")  # below the mount, repeated slashes are one
    assert (m.route.handler, m.params) == ("api_release", {"id": "r9"})
    m = match("GET", "/api/catalog/files/obs/a%20b.fits")
    assert (m.route.handler, m.route.action) == ("api_catalog_file", "read")
    assert m.params == {"path": "obs/a%20b.fits"}  # the rest as sent; the server normalizes
    m = match("PROPFIND", "/obs/run%201/")
    assert (m.route.handler, m.params) == ("_dav_propfind", {"raw": "/obs/run%201/"})
    assert match("GET", "/obs/x").route.action == "read"
    assert match("DELETE", "/obs/x").route.action == "modify"
    assert match("PUT", "/obs/x").route.action is None  # create or modify: the handler decides


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/api/v1/stage", ("POST", "OPTIONS")),
    ("GET", "/api/v1/stage/", ("POST", "OPTIONS")),
    ("POST", "/api/v1/stage/r1", ("GET", "DELETE", "HEAD", "OPTIONS")),
    ("PROPFIND", "/api/catalog/search", ("GET", "HEAD", "OPTIONS")),
    ("DELETE", "/api/catalog/files/a/b", ("GET", "HEAD", "OPTIONS")),
    ("GET", "/api/admin/migrate", ("POST", "OPTIONS")),
    ("POST", "/metrics", ("GET", "HEAD", "OPTIONS")),
    ("MKCOL", "/.well-known/wlcg-tape-rest-api/", ("GET", "HEAD", "OPTIONS")),
])
def test_405_with_the_allow_list_of_the_table(method, path, allowed):
    assert match(method, path) == MethodNotAllowed(allowed)


def test_an_allowed_method_without_an_entry_falls_through():
    # HEAD is in Allow wherever GET is; the stage status has no HEAD entry: Tape REST 404
    assert "HEAD" in allow("/api/v1/stage/r1")
    assert match("HEAD", "/api/v1/stage/r1").route.handler == "api_tape_not_found"
    # not strictly the documented path (two trailing slashes): no 405, WebDAV answers
    assert allow("/metrics//") is None
    assert match("POST", "/metrics//").route.handler == "_dav_post"


@pytest.mark.parametrize(("method", "path", "handler"), [
    ("GET", "/api/v1/nope", "api_tape_not_found"),
    ("POST", "/api/v1", "api_tape_not_found"),
    ("GET", "/api/v1/stage/r1/cancel/more", "api_tape_not_found"),
    ("GET", "/api/catalog/nope", "api_catalog_other"),
    ("POST", "/api/catalog//search", "api_catalog_other"),
    ("GET", "/api/admin/nope", "api_admin_not_found"),
    ("GET", "/api/admin", "_dav_get"),      # the mount is /api/admin/
    ("GET", "/api//v1/stage", "_dav_get"),  # the mount must be sent as written
    ("GET", "/api/v1foo", "_dav_get"),
])
def test_unknown_api_paths_reach_the_404_of_their_api(method, path, handler):
    m = match(method, path)
    assert isinstance(m, Match) and m.route.handler == handler


def test_no_entry_at_all_is_none():
    table = (Route(("GET",), "/api/v1/stage/{id}", "h", documented=True),
             Route(ANY, "/api/v1/{rest:path}", "nf"))
    assert match("GET", "/elsewhere", table) is None
    assert allow("/elsewhere", table) is None
    assert match("PUT", "/api/v1/stage/x", table) == MethodNotAllowed(("GET", "HEAD", "OPTIONS"))
    assert match("HEAD", "/api/v1/stage/x", table).route.handler == "nf"
    assert match("GET", "/api/v1/stage/x", table).params == {"id": "x"}


def test_webdav_allow_header_comes_from_the_table():
    assert ALLOW == routes.dav_allow() == ("OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, PROPFIND, "
                                           "PROPPATCH, MOVE, COPY, LOCK, UNLOCK, POST")
    dav_methods = {m for r in ROUTES if "raw" in r.kinds for m in r.methods}
    served = {name[3:] for name in dir(Handler) if name.startswith("do_")} - {"OPTIONS"}
    assert dav_methods == served  # every method the server takes has its WebDAV entry
