"""SAMP: the app registered with Debian's jsamp hub, messages from jsamp's messagesender reaching the
open page live (a real chromium), a catalog sent with table.load.votable, and TOPCAT under Xvfb
receiving it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from appliance.pipeline.samp import event_from_message, table_id
from appliance.pipeline.stages import run_image
from tests.appliance.pipeline.test_web import Server, browser, http, wait_for, work_products  # noqa: F401
from tests.prereq import require


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """Debian's jsamp hub with its lockfile in tmp (SAMP_HUB), also seen by this process."""
    require(shutil.which("jsamp") is not None, "Debian's jsamp (`jsamp hub`, `jsamp messagesender`)")
    lock = tmp_path / "samp.lock"
    env = {"SAMP_HUB": f"std-lockurl:file://{lock}"}
    monkeypatch.setenv("SAMP_HUB", env["SAMP_HUB"])
    proc = subprocess.Popen(["jsamp", "hub", "-mode", "no-gui", "-profiles", "std"], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "hub.log", "w"),  # noqa: SIM115
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not (lock.exists() and "samp.hub.xmlrpc.url" in lock.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "hub.log").read_text()
        time.sleep(0.1)
    yield env
    _stop(proc)


@pytest.fixture(scope="module")
def work_imaged(work_products, archive_root):  # noqa: F811 - the fixture from test_web
    """Products for every observation, catalogs (sextractor) for the first three that are done."""
    from appliance.pipeline.runner import load_state
    from appliance.pipeline.stages import list_observations

    done = [i for i in list_observations(archive_root)
            if (st := load_state(work_products, "products", i)) is not None and st.status == "done"][:3]
    summary, _ = run_image(archive_root, work_products, detectors=("sextractor",), folders=done,
                           parallel=1, progress=False)
    assert summary.ok and summary.count("done") == 3
    return work_products


@pytest.fixture
def samp_server(archive_root, work_imaged, hub, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(work_imaged, work)
    s = Server(archive_root, work, "--samp", env=hub).wait()
    deadline = time.monotonic() + 60
    while not json.loads(http(s.url + "api/samp")[1]).get("connected"):
        assert time.monotonic() < deadline, "the app never registered with the hub"
        time.sleep(0.1)
    yield s
    s.stop()


def _with_catalog(s: Server) -> tuple[str, list[dict]]:
    obs = [o for o in json.loads(http(s.url + "api/observations")[1])["observations"] if o["has_catalog"]]
    for o in obs:
        dets = json.loads(http(s.url + f"api/obs/{o['id']}/detections")[1])["detections"]
        if len(dets) >= 2:
            return o["id"], dets
    raise AssertionError("no observation with two detections or more")


def send(hub_env: dict, mtype: str, *params: str, mode: str = "notify") -> str:
    args = ["jsamp", "messagesender", "-mtype", mtype, "-mode", mode]
    for k, v in zip(params[::2], params[1::2], strict=True):
        args += ["-param", k, v]
    if mode != "notify":
        args += ["-targetname", "appliance-pipeline"]
    r = subprocess.run(args, env={**os.environ, **hub_env}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_event_from_message():
    ev = event_from_message("table.select.rowList", {"table-id": table_id("p__o"), "row-list": ["3", "1"]})
    assert ev["item"] == "p__o" and ev["rows"] == [3, 1]
    assert event_from_message("table.select.rowList", {"table-id": "t", "row-list": "[1,2]"})["rows"] == [1, 2]
    ev = event_from_message("table.highlight.row", {"table-id": "other", "row": "7"})
    assert ev["item"] is None and ev["rows"] == [7]
    ev = event_from_message("coord.pointAt.sky", {"ra": "10.5", "dec": "-3.25"})
    assert (ev["ra"], ev["dec"]) == (10.5, -3.25)
    with pytest.raises(KeyError):
        event_from_message("coord.pointAt.sky", {"ra": "1"})


def test_samp_messages_arrive_live_on_the_page(samp_server, hub):
    s = samp_server
    iid, dets = _with_catalog(s)
    sel = f'[id="obs-{iid}"]'
    d = browser()
    try:
        d.get(s.url)
        wait_for(d, "document.getElementById('ws-state').textContent === 'page link: live'")
        wait_for(d, f"document.querySelectorAll('{sel} svg circle').length === {len(dets)}")

        # coord.pointAt.sky at a detection: its card and circle light up
        tgt = dets[1]
        send(hub, "coord.pointAt.sky", "ra", repr(tgt["ra"]), "dec", repr(tgt["dec"]))
        wait_for(d, f"document.querySelector('{sel}').classList.contains('hl')")
        assert d.execute_script(f"return document.querySelector('{sel} circle.hl').getAttribute('data-row')") == "1"
        assert d.execute_script("return document.activeElement.className") == "flag-note"

        # table.highlight.row on the table the app sends (its table-id), as a call: replied samp.ok
        out = send(hub, "table.highlight.row", "table-id", table_id(iid), "row", "0", mode="sync")
        assert "samp.ok" in out
        wait_for(d, f"(c => c && c.getAttribute('data-row') === '0')(document.querySelector('{sel} circle.hl'))")

        # table.select.rowList: both rows
        send(hub, "table.select.rowList", "table-id", table_id(iid), "row-list", "[0,1]")
        wait_for(d, f"document.querySelectorAll('{sel} circle.hl').length === 2")
        assert "rows 0, 1" in d.execute_script(f"return document.querySelector('{sel} .hl-rows').textContent")

        # table.load.votable from someone else: reported on the page
        send(hub, "table.load.votable", "url", "http://127.0.0.1:9/x.vot", "table-id", "ext-1", "name", "theirs")
        wait_for(d, "document.getElementById('message').textContent.includes('loaded table theirs')")
        received = d.execute_script("return window.pipeline.received.map(e => e.type)")
        assert received == ["coord.pointAt.sky", "table.highlight.row", "table.select.rowList", "table.load.votable"]
    finally:
        d.quit()


def test_catalog_sent_with_table_load_votable(samp_server, hub):
    """A SAMP client (astropy's, in this process) receives the catalog URL, loads it, replies."""
    from astropy.io.votable import parse_single_table
    from astropy.samp import SAMPIntegratedClient

    s = samp_server
    iid, dets = _with_catalog(s)
    got: dict = {}
    c = SAMPIntegratedClient(name="receiver", addr="127.0.0.1")
    c.connect()
    try:
        def on_call(private_key, sender_id, msg_id, mtype, params, extra):  # noqa: ANN001, ANN202
            import urllib.request

            with urllib.request.urlopen(params["url"], timeout=30) as r:
                got["table"] = parse_single_table(__import__("io").BytesIO(r.read())).to_table()
            got["params"] = params
            c.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})

        c.bind_receive_call("table.load.votable", on_call)
        code, body = http(s.url + f"api/obs/{iid}/send", "POST", {"to": "receiver"})
        assert code == 200, body
        assert got["params"]["table-id"] == table_id(iid)
        assert len(got["table"]) == len(dets) and list(got["table"]["ra"]) == [x["ra"] for x in dets]
        code, body = http(s.url + f"api/obs/{iid}/send", "POST", {"to": "nobody"})
        assert code == 502 and b"no SAMP client named 'nobody'" in body
        mute = SAMPIntegratedClient(name="mute", addr="127.0.0.1")  # registered, takes no tables
        mute.connect()
        try:
            code, body = http(s.url + f"api/obs/{iid}/send", "POST", {"to": "mute"})
            assert code == 502 and b"'mute' is registered but does not take table.load.votable" in body, body
        finally:
            mute.disconnect()
    finally:
        c.disconnect()


@pytest.mark.slow
def test_topcat_under_xvfb_receives_a_catalog(samp_server, hub, tmp_path):
    require(shutil.which("topcat") is not None and shutil.which("xvfb-run") is not None,
            "Debian's topcat and xvfb-run")
    from astropy.samp import SAMPIntegratedClient

    s = samp_server
    iid, _dets = _with_catalog(s)
    log = tmp_path / "topcat.log"
    top = subprocess.Popen(["xvfb-run", "-a", "topcat", "-samp", "-nohub"], env={**os.environ, **hub},
                           stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            clients = json.loads(http(s.url + "api/samp")[1]).get("clients", [])
            if any(x["name"] == "topcat" for x in clients):  # named: the send waits for its subscriptions
                break
            assert top.poll() is None and time.monotonic() < deadline, f"TOPCAT never registered: {log.read_text()[-2000:]}"
            time.sleep(0.5)
        code, body = http(s.url + f"api/obs/{iid}/send", "POST", {"to": "topcat"})
        assert code == 200, body
        reply = json.loads(body)["reply"]
        assert reply["samp.status"] == "samp.ok"
        fetches = json.loads(http(s.url + "api/samp")[1])["catalog_fetches"]
        assert any(f["id"] == iid and "java" in f["agent"].lower() for f in fetches), fetches
        # TOPCAT's reply reflects the load: a URL that is not a table gets an error back
        c = SAMPIntegratedClient(name="checker", addr="127.0.0.1")
        c.connect()
        try:
            tc = next(x for x in c.get_registered_clients() if c.get_metadata(x).get("samp.name") == "topcat")
            bad = c.call_and_wait(tc, {"samp.mtype": "table.load.votable",
                                       "samp.params": {"url": s.url + "api/obs/no-such/catalog.vot",
                                                       "table-id": "bad", "name": "bad"}}, "60")
            assert bad["samp.status"] == "samp.error"
        finally:
            c.disconnect()
    finally:
        _stop(top)
