"""OpenAPI 3.1 description of the archive's JSON APIs (Tape REST v1 and catalog search)."""

from __future__ import annotations

import re
from typing import Any

#: ``cone=RA,DEC,RADIUS`` (degrees)
CONE_PATTERN = (r"^[0-9]{1,3}(\.[0-9]{1,6})?,-?[0-9]{1,2}(\.[0-9]{1,6})?,"
                r"[0-9]{1,2}(\.[0-9]{1,6})?$")


#: ``diskLifetime``: ISO 8601 days/weeks, or [days and] hours, minutes, seconds (PT1H, P2D,
#: P1DT12H, PT1H30M, PT3600S); the Tape REST handler refuses anything else (400)
_T = "T([0-9]{1,5}H)?"
LIFETIME_PATTERN = ("^P[0-9]{1,4}[DW]$"
                    f"|^P([0-9]{{1,4}}D)?{_T}([0-9]{{1,5}}M)?[0-9]{{1,6}}S$"
                    f"|^P([0-9]{{1,4}}D)?{_T}[0-9]{{1,5}}M$"
                    "|^P([0-9]{1,4}D)?T[0-9]{1,5}H$")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document(base_url: str) -> dict[str, Any]:
    problem = {"description": "Error (RFC 7807)",
               "content": {"application/problem+json": {"schema": _ref("Problem")}}}
    # reads below auth.public_read need no credentials: security is optional there
    read_security: list[dict[str, list[str]]] = [{"bearer": []}, {"x509": []}, {}]
    paths_body = {"required": True, "content": {"application/json": {"schema": _ref("Paths")}}}
    rid = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    # names the server accepts for sure (the full rule is in archive.paths): the schema is
    # narrower than the server, so every schema-valid request is answered 2xx/404
    name = r"[A-Za-z0-9_~-][A-Za-z0-9_.~-]{0,40}"
    path_schema = {"type": "string", "pattern": f"^/{name}(/{name}){{0,6}}$"}
    prefix_schema = {"type": "string", "pattern": f"^(/{name}){{0,6}}/?$"}
    lifetime = {"type": "string", "pattern": LIFETIME_PATTERN, "example": "PT1H"}
    search_params = [
        {"name": n, "in": "query", "schema": sch, "description": d} for n, sch, d in [
            ("prefix", prefix_schema, "path prefix (default /)"),
            ("project", {"type": "string"}, "project / proposal id"),
            ("observation", {"type": "string"}, "observation id"),
            ("instrument", {"type": "string"}, "INSTRUME"),
            ("telescope", {"type": "string"}, "TELESCOP"),
            ("object", {"type": "string"}, "OBJECT"),
            ("product_type", {"type": "string"}, "product type"),
            ("start", {"type": "string", "format": "date"},
             "DATE-OBS >= (ISO 8601 date or date-time)"),
            ("end", {"type": "string", "format": "date"}, "DATE-OBS <= (ISO 8601)"),
            ("cone", {"type": "string", "pattern": CONE_PATTERN, "example": "150.1,2.2,0.5"},
             "cone search RA,DEC,RADIUS in degrees (ICRS); the same as ra=&dec=&radius= given "
             "together"),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 10000},
             "page size (1..10000, default 100)"),
            ("after", {"type": "string"}, "paging cursor: the 'next' value of the previous page"),
        ]]
    errors = {str(c): problem for c in (400, 401, 403, 404)}
    auth_errors = {str(c): problem for c in (401, 403)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Long Term Archive API", "version": "1.0.0",
                 "description": "WLCG Tape REST API v1 (staging, release, archiveinfo) and the "
                                "catalog search API. Files themselves are read and written over "
                                "WebDAV at the same base URL."},
        "servers": [{"url": base_url}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT (WLCG profile scopes)"},
                                "x509": {"type": "mutualTLS"}},
            "schemas": {
                "Problem": {"type": "object", "properties": {
                    "status": {"type": "integer"}, "title": {"type": "string"},
                    "detail": {"type": "string"}}},
                "Paths": {"type": "object", "required": ["paths"], "properties": {
                    "paths": {"type": "array", "items": {"type": "string"}}}},
                "StageRequest": {"type": "object", "required": ["files"], "properties": {
                    "files": {"type": "array", "minItems": 1, "items": {
                              "type": "object", "required": ["path"],
                              "properties": {"path": {"type": "string"},
                                             "diskLifetime": lifetime,
                                             "targetedMetadata": {"type": "object"}}}}}},
                "StageStatus": {"type": "object", "properties": {
                    "id": {"type": "string"}, "createdAt": {"type": "integer"},
                    "startedAt": {"type": "integer"}, "completedAt": {"type": "integer"},
                    "files": {"type": "array", "items": {"type": "object", "properties": {
                        "path": {"type": "string"},
                        "state": {"enum": ["SUBMITTED", "STARTED", "COMPLETED", "FAILED",
                                           "CANCELLED"]},
                        "error": {"type": "string"}, "finishedAt": {"type": "integer"}}}}}},
                "Locality": {"type": "object", "properties": {
                    "path": {"type": "string"},
                    "locality": {"enum": ["DISK", "TAPE", "DISK_AND_TAPE", "LOST", "NONE",
                                          "UNAVAILABLE"]},
                    "error": {"type": "string"}}},
                "SearchPage": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"type": "object"}},
                    "count": {"type": "integer"}, "next": {"type": ["string", "null"]}}},
            },
        },
        "security": [{"bearer": []}, {"x509": []}],
        "paths": {
            "/.well-known/wlcg-tape-rest-api": {"get": {
                "summary": "Tape REST discovery", "security": [],
                "responses": {"200": _json({"type": "object"})}}},
            "/api/v1/stage": {"post": {
                "summary": "Request staging (bring online) of files",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("StageRequest")}}},
                "responses": {"201": _json({"type": "object", "properties": {
                    "requestId": {"type": "string"}}}, "Accepted"), "400": problem,
                    **auth_errors}}},
            "/api/v1/stage/{id}": {
                "parameters": rid,
                "get": {"summary": "Stage request status",
                        "responses": {"200": _json(_ref("StageStatus")), **errors}},
                "delete": {"summary": "Cancel and forget a stage request",
                           "responses": {"200": _json({"type": "object"}), **errors}}},
            "/api/v1/stage/{id}/cancel": {"parameters": rid, "post": {
                "summary": "Cancel files of a stage request", "requestBody": paths_body,
                "responses": {"200": _json({"type": "object"}), **errors}}},
            "/api/v1/release/{id}": {"parameters": rid, "post": {
                "summary": "Release the disk pins of a request (unknown ids release by path)",
                "requestBody": paths_body,
                "responses": {"200": _json({"type": "object"}), "400": problem, **auth_errors}}},
            "/api/v1/archiveinfo": {"post": {
                "summary": "Locality of files", "requestBody": paths_body,
                "security": read_security,
                "responses": {"200": _json({"type": "array", "items": _ref("Locality")}),
                              "400": problem, **auth_errors}}},
            "/api/catalog/search": {"get": {
                "summary": "Search the catalog (paged, path order)", "parameters": search_params,
                "security": read_security,
                "responses": {"200": _json(_ref("SearchPage")), "400": problem, **auth_errors}}},
            "/api/catalog/files/{path}": {"get": {
                "summary": "Catalog entry of one file (checksums, copies, metadata)",
                "parameters": [{"name": "path", "in": "path", "required": True,
                                "schema": path_schema}],
                "security": read_security,
                "responses": {"200": _json({"type": "object"}), **errors}}},
            "/api/admin/migrate": {"post": {
                "summary": "Operator: write every file waiting for tape now (needs "
                           "storage.modify:/); the state of the paths given",
                "requestBody": paths_body,
                "responses": {"200": _json({"type": "object", "required": ["waiting", "files"],
                                            "properties": {"waiting": {"type": "integer"},
                                                           "files": {"type": "array"}}}),
                              "400": problem, **auth_errors}}},
            "/api/admin/evict": {"post": {
                "summary": "Operator: drop the disk copies of files safely on tape and not "
                           "pinned (they become tape only)",
                "requestBody": paths_body,
                "responses": {"200": _json({"type": "object", "required": ["files", "evicted"],
                                            "properties": {"evicted": {"type": "integer"},
                                                           "files": {"type": "array"}}}),
                              "400": problem, **auth_errors}}},
            "/api/admin/drives": {"get": {
                "summary": "Operator: live state of drives and cartridges",
                "responses": {"200": _json({"type": "object", "required": ["drives", "tapes"],
                                            "properties": {"time": {"type": "number"},
                                                           "drives": {"type": "array"},
                                                           "tapes": {"type": "array"}}}),
                              **auth_errors}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": _json({"type": "object"})}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [],
                                 "responses": {"200": {"description": "text/plain"}}}},
        },
    }


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    rx = "".join(("(.+)" if p == "{path}" else "([^/]+)") if p.startswith("{") else re.escape(p)
                 for p in parts)
    return re.compile(f"^{rx}/?$")


_ROUTES: list[tuple[re.Pattern[str], tuple[str, ...]]] = []


def allowed_methods(path: str) -> tuple[str, ...] | None:
    """The methods the document declares for the JSON API path ``path`` (with HEAD for GET and
    OPTIONS), or None when ``path`` is not part of the JSON API (it is WebDAV then). One truth:
    the server answers 405 with exactly this ``Allow`` for any other method."""
    if not _ROUTES:
        for template, item in document("").get("paths", {}).items():
            methods = [m.upper() for m in item if m in ("get", "put", "post", "delete", "patch")]
            if "GET" in methods:
                methods.append("HEAD")
            _ROUTES.append((_template_regex(template), (*methods, "OPTIONS")))
    if not (path.startswith(("/api", "/.well-known/", "/metrics", "/openapi.json"))):
        return None
    for rx, methods in _ROUTES:
        if rx.match(path):
            return methods
    return None
