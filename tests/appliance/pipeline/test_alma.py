"""The ALMA path of ``match``: astroquery's ``Alma.query_tap`` against a RECORDED TAP answer.

A tiny TAP server on 127.0.0.1 answers ``/tap/sync`` with a hand-written ObsCore VOTable (in the
shape ALMA's TAP service answers) and keeps the ADQL it was sent; astroquery and pyvo do the
request and the parsing. The network is never reached.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from appliance.pipeline.alma import adql, alma_search
from appliance.pipeline.errors import PipelineError
from appliance.pipeline.match import Selection

RECORDED = Path(__file__).parent / "data" / "alma_tap_obscore.xml"


@pytest.fixture()
def tap():
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _answer(self, form: dict) -> None:
            seen.append({"path": self.path, **{k: v[0] for k, v in form.items()}})
            if not self.path.startswith("/tap/sync"):
                self.send_response(404)
                self.end_headers()
                return
            body = RECORDED.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-votable+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            self._answer(parse_qs(self.rfile.read(n).decode()))

        def do_GET(self):
            self._answer(parse_qs(self.path.partition("?")[2]))

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    srv.shutdown()
    srv.server_close()


def test_adql_of_a_selection():
    q = adql(Selection((11.89, -25.29, 0.05), "2019.1.00123.S", 6, "2020-02-01", "2020-03-01"))
    assert q.startswith("SELECT obs_id, member_ous_uid") and "FROM ivoa.obscore WHERE " in q
    assert "INTERSECTS(CIRCLE('ICRS',11.89,-25.29,0.05),s_region)=1" in q
    assert "proposal_id = '2019.1.00123.S'" in q and "band_list LIKE '%6%'" in q
    assert "t_min >= 58880.0" in q and "t_min < 58909.0" in q
    assert "proposal_id = 'a''b'" in adql(Selection(project="a'b"))
    assert adql(Selection(), top=5) == "SELECT TOP 5 " + adql(Selection()).removeprefix("SELECT ")


def test_alma_search_parses_a_recorded_answer(tap):
    url, seen = tap
    sel = Selection((11.89, -25.29, 0.05), "2019.1.00123.S", 6)
    got = alma_search(sel, archive_url=url)
    assert seen and seen[0]["path"].startswith("/tap/sync")
    assert seen[0]["QUERY"] == adql(sel) and seen[0]["LANG"] == "ADQL"
    assert [r["member_ous_uid"] for r in got.rows] == ["uid://A001/X1284/X1a2c", "uid://A001/X1284/X1a2e"]
    assert got.rows[0]["s_ra"] == pytest.approx(11.888) and got.rows[1]["t_min"] == pytest.approx(58901.75)
    assert got.rows[1]["access_url"] in (None, "")
    assert got.to_json()["count"] == 2 and "NGC_253" in got.report()


def test_alma_search_error_is_one_line():
    with pytest.raises(PipelineError) as err:  # a closed port on 127.0.0.1: connection refused
        alma_search(Selection(), archive_url="http://127.0.0.1:1")
    assert "ALMA TAP query failed" in str(err.value) and "\n" not in str(err.value)
