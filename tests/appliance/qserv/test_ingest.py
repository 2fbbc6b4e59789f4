"""Ingest REST client: the requests it builds, checked against a local *recording* HTTP server.

The recorder is not a Qserv simulator: it stores each request and answers with the minimal JSON
shape Qserv's documentation shows (``success``, a transaction id, a chunk location pointing back
at itself). It proves request construction and the order of the workflow, nothing about Qserv.
"""

from __future__ import annotations

import json
import threading
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from appliance.qserv.errors import IngestError
from appliance.qserv.felis_schema import load_schema
from appliance.qserv.ingest import IngestClient, build_plan, run_ingest


class Recorder(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.fail_path: str | None = None


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args):  # quiet
        pass

    def _answer(self, body: dict, status: int = 200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            msg = BytesParser(policy=email_policy).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            body = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                data = part.get_payload(decode=True)
                body[name] = {"filename": part.get_filename(), "bytes": len(data)} if part.get_filename() else data.decode()
        else:
            body = json.loads(raw or b"{}")
        self.server.requests.append({"method": self.command, "path": self.path, "body": body})
        path = self.path.split("?")[0]
        if self.server.fail_path and path == self.server.fail_path:
            return self._answer({"success": 0, "error": "recorder told to fail"}, 500)
        if path == "/ingest/trans" and self.command == "POST":
            return self._answer({"success": 1, "databases": {body["database"]: {"transactions": [{"id": 84, "state": "STARTED"}]}}})
        if path == "/ingest/chunk":
            host, port = self.server.server_address[:2]
            return self._answer({"success": 1, "location": {"worker": "w0", "http_host": host, "http_port": port}})
        return self._answer({"success": 1})

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture()
def recorder():
    srv = Recorder()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_plan_is_pure_and_complete(converted, partitioned):
    schema = load_schema(converted / "schema.yaml")
    plan = build_plan(schema, partitioned, "cluster_db")
    assert plan.database == {"database": "cluster_db", "num_stripes": 340, "num_sub_stripes": 3, "overlap": 0.01667, "auto_build_secondary_index": 1}
    obj, src = plan.tables
    assert (obj["director_table"], obj["director_key"], obj["longitude_key"], obj["latitude_key"]) == ("", "objectId", "coord_ra", "coord_dec")
    assert (src["director_table"], src["director_key"]) == ("Object", "objectId")
    assert {"name": "chunkId", "type": "INT NOT NULL"} in obj["schema"]
    assert not any("VARCHAR" in c["type"] for t in plan.tables for c in t["schema"])
    n_files = len(list(partitioned.glob("*/chunk_*.txt")))
    assert len(plan.uploads) == n_files and any(u["overlap"] for u in plan.uploads)


def test_workflow_requests(converted, partitioned, recorder, monkeypatch):
    monkeypatch.setenv("QSERV_AUTH_KEY", "k3y")
    schema = load_schema(converted / "schema.yaml")
    plan = build_plan(schema, partitioned)
    host, port = recorder.server_address[:2]
    out = run_ingest(IngestClient(f"http://{host}:{port}", version=39), plan)
    assert out["transaction_id"] == 84 and out["files"] == len(plan.uploads)
    reqs = recorder.requests
    seq = [(r["method"], r["path"].split("?")[0]) for r in reqs]
    assert seq[:4] == [("POST", "/ingest/database"), ("POST", "/ingest/table"), ("POST", "/ingest/table"), ("POST", "/ingest/trans")]
    assert seq[-2:] == [("PUT", "/ingest/trans/84"), ("PUT", "/ingest/database/cluster")]
    assert reqs[-2]["path"].endswith("abort=0")
    assert all(r["body"].get("auth_key") == "k3y" for r in reqs)
    assert reqs[0]["body"]["version"] == 39
    uploads = [r for r in reqs if r["path"] == "/ingest/csv"]
    assert len(uploads) == len(plan.uploads)
    u = uploads[0]["body"]
    assert u["transaction_id"] == "84" and u["fields_terminated_by"] == "," and u["file"]["bytes"] > 0
    chunks_allocated = [r["body"]["chunk"] for r in reqs if r["path"] == "/ingest/chunk"]
    assert len(chunks_allocated) == len(set(chunks_allocated)) == len({x["chunk"] for x in plan.uploads})


def test_failure_aborts_transaction(converted, partitioned, recorder):
    recorder.fail_path = "/ingest/csv"
    plan = build_plan(load_schema(converted / "schema.yaml"), partitioned)
    host, port = recorder.server_address[:2]
    with pytest.raises(IngestError, match="recorder told to fail"):
        run_ingest(IngestClient(f"http://{host}:{port}"), plan)
    last = recorder.requests[-1]
    assert last["method"] == "PUT" and last["path"] == "/ingest/trans/84?abort=1"
