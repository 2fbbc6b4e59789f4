"""OpenAPI 3.1 description of the archive's JSON APIs (Tape REST v1 and catalog search)."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document(base_url: str) -> dict[str, Any]:
    problem = {"description": "Error (RFC 7807)",
               "content": {"application/problem+json": {"schema": _ref("Problem")}}}
    paths_body = {"required": True, "content": {"application/json": {"schema": _ref("Paths")}}}
    rid = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    search_params = [
        {"name": n, "in": "query", "schema": {"type": t}, "description": d} for n, t, d in [
            ("prefix", "string", "path prefix (default /)"),
            ("project", "string", "project / proposal id"),
            ("observation", "string", "observation id"),
            ("instrument", "string", "INSTRUME"),
            ("telescope", "string", "TELESCOP"),
            ("object", "string", "OBJECT"),
            ("product_type", "string", "product type"),
            ("start", "string", "DATE-OBS >= (ISO 8601)"),
            ("end", "string", "DATE-OBS <= (ISO 8601)"),
            ("ra", "number", "cone centre RA (deg, ICRS)"),
            ("dec", "number", "cone centre Dec (deg)"),
            ("radius", "number", "cone radius (deg)"),
            ("limit", "integer", "page size (1..10000, default 100)"),
            ("after", "string", "paging cursor: the 'next' value of the previous page"),
        ]]
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
                    "files": {"type": "array", "items": {"type": "object", "required": ["path"],
                              "properties": {"path": {"type": "string"},
                                             "diskLifetime": {"type": "string",
                                                              "example": "PT1H"},
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
                    "401": problem, "403": problem}}},
            "/api/v1/stage/{id}": {
                "parameters": rid,
                "get": {"summary": "Stage request status",
                        "responses": {"200": _json(_ref("StageStatus")), "404": problem}},
                "delete": {"summary": "Cancel and forget a stage request",
                           "responses": {"200": _json({"type": "object"}), "404": problem}}},
            "/api/v1/stage/{id}/cancel": {"parameters": rid, "post": {
                "summary": "Cancel files of a stage request", "requestBody": paths_body,
                "responses": {"200": _json({"type": "object"}), "400": problem}}},
            "/api/v1/release/{id}": {"parameters": rid, "post": {
                "summary": "Release the disk pins of a request (unknown ids release by path)",
                "requestBody": paths_body, "responses": {"200": _json({"type": "object"})}}},
            "/api/v1/archiveinfo": {"post": {
                "summary": "Locality of files", "requestBody": paths_body,
                "responses": {"200": _json({"type": "array", "items": _ref("Locality")})}}},
            "/api/catalog/search": {"get": {
                "summary": "Search the catalog (paged, path order)", "parameters": search_params,
                "responses": {"200": _json(_ref("SearchPage")), "400": problem}}},
            "/api/catalog/files/{path}": {"get": {
                "summary": "Catalog entry of one file (checksums, copies, metadata)",
                "parameters": [{"name": "path", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object"}), "404": problem}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [],
                                 "responses": {"200": {"description": "text/plain"}}}},
        },
    }
