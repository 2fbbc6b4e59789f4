"""The access log: one line per request with method, path, status, bytes, duration and
identity; never a token. ``--json`` logs are one JSON object per line."""

from __future__ import annotations

import json
import logging

import pytest

from archive.accesslog import JsonFormatter, safe_target
from archive.errors import BadRequest
from archive.server import search_query
from tests.archive.conftest import tls_session, wait_for


def test_every_request_is_one_line_without_the_token(lta, mint, pki, caplog):
    token = mint()
    s = tls_session(pki)
    with caplog.at_level(logging.INFO, logger="archive.access"):
        assert s.put(f"{lta.url}/logs/a.dat", data=b"x" * 1234,
                     headers={"Authorization": f"Bearer {token}"}).status_code == 201
        assert s.get(f"{lta.url}/logs/a.dat?access_token={token}",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert s.get(f"{lta.url}/logs/missing").status_code in (401, 404)
        # a line is written just after its answer: wait for the last one
        wait_for(lambda: len([r for r in caplog.records if r.name == "archive.access"]) >= 3,
                 5, "the third access log line")
    recs = [r for r in caplog.records if r.name == "archive.access"]
    assert len(recs) == 3
    put, get, anon = (r.access for r in recs)
    assert (put["method"], put["path"], put["status"], put["identity"]) == \
        ("PUT", "/logs/a.dat", 201, "alice")
    assert (get["status"], get["bytes"], get["identity"]) == (200, 1234, "alice")
    assert get["path"] == "/logs/a.dat?access_token=REDACTED"
    assert anon["identity"] == "anonymous" and anon["duration_ms"] >= 0
    text = "\n".join(r.getMessage() for r in recs)
    assert token not in text and "Bearer" not in text
    assert '"GET /logs/a.dat?access_token=REDACTED" 200 1234 ' in text


def test_json_log_lines_and_escaped_paths():
    rec = logging.LogRecord("archive.access", logging.INFO, __file__, 1, "m %s", ("x",), None)
    rec.access = {"method": "GET", "path": "/a", "status": 200, "bytes": 5}
    out = json.loads(JsonFormatter().format(rec))
    assert out["message"] == "m x" and out["status"] == 200 and out["time"].endswith("Z")
    assert safe_target("/a%0a\x1bb?authz=SECRET&x=1") == "/a%0a\\x1bb?authz=REDACTED&x=1"


def test_search_parameters_are_strict():
    q = search_query({"cone": "150.1,2.2,0.5", "limit": "10", "start": "2024-01-01"})
    assert (q.ra, q.dec, q.radius, q.limit) == (150.1, 2.2, 0.5, 10)
    assert q.time_min == 1704067200.0
    for bad in ({"limit": "0.5"}, {"limit": "0"}, {"cone": "1,2"}, {"start": ""},
                {"ra": "1", "dec": "2"}):
        with pytest.raises(BadRequest):
            search_query(bad)
