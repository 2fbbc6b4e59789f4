"""The web interface: a real server process, a real browser (Debian's chromium through Selenium).

Render the observations with thumbnails, run a stage from the page, flag and unflag with a note
(checked in the same flags file the CLI reads), and the access rules: loopback by default, a
token when bound elsewhere, no request path outside the work area.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from appliance.exitcodes import Exit
from appliance.pipeline.runner import item_id, load_flags
from appliance.pipeline.stages import list_observations, run_products
from tests.prereq import require

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


class Server:
    """``python -m appliance.pipeline.web serve`` as a child process; ``url`` once it listens."""

    def __init__(self, root: Path, work: Path, *extra: str, env: dict | None = None, host: str = "127.0.0.1"):
        self.log = work.parent / f"serve-{work.name}-{time.monotonic_ns()}.log"
        cmd = [sys.executable, "-m", "appliance.pipeline.web", "serve", "--root", str(root), "--work", str(work),
               "--host", host, "--port", "0", "--parallel", "1", "--detectors", "sextractor", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"),  # noqa: SIM115
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        self.url = ""

    def wait(self, timeout: float = 60) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"serving (http://\S+/)", self.log.read_text())
            if m:
                self.url = m.group(1)
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def http(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def browser():  # noqa: ANN201 - a selenium Chrome driver
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
            "Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1200,900"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def click(driver, css: str, timeout: float = 30) -> None:  # noqa: ANN001
    """Click the element ``css`` names, finding it again if the page re-rendered it between the
    lookup and the click (a stale element reference)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_for(driver, js: str, timeout: float = 60):  # noqa: ANN001, ANN201
    """Poll a JS expression in the page until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = driver.execute_script("return " + js)
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"page never satisfied: {js}")


@pytest.fixture(scope="module")
def work_products(archive_root, tmp_path_factory):
    """A work area where the products stage ran (through the same function the CLI calls)."""
    work = tmp_path_factory.mktemp("web") / "work"
    summary, _ = run_products(archive_root, work, parallel=2, progress=False)
    assert summary.ok
    return work


@pytest.fixture
def server(archive_root, work_products, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(work_products, work)
    s = Server(archive_root, work, "--no-samp").wait()
    yield s
    s.stop()


def test_api_lists_every_observation_and_serves_png(server, archive_root):
    code, body = http(server.url + "api/observations")
    assert code == 200
    obs = json.loads(body)["observations"]
    assert [o["item"] for o in obs] == list_observations(archive_root)
    assert all(o["stages"]["products"]["status"] in ("done", "flagged") for o in obs)
    code, png = http(server.url + f"api/obs/{obs[0]['id']}/thumb.png")
    assert code == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("path", [
    "static/../../../../etc/passwd", "static/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "static/..%2Fweb.py",
    "api/obs/..%2F..%2F..%2Fetc%2Fpasswd/thumb.png", "api/obs/%2Fetc%2Fpasswd/catalog.vot",
    "api/obs/..%2Fstate/detections", "static/app.js%00.png", "api/obs/..%2F..%2Fproducts.xml/thumb.png",
])
def test_no_request_path_leaves_the_work_area(server, path):
    # urllib would normalise "..": send the raw request line
    import http.client
    from urllib.parse import urlparse

    u = urlparse(server.url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.putrequest("GET", "/" + path, skip_accept_encoding=True)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    assert r.status in (404, 422), (r.status, body[:200])
    assert b"root:" not in body and b"import" not in body and b"<products" not in body


def test_bad_requests_get_one_clear_line(server):
    code, body = http(server.url + "api/run", "POST", {"stage": "nope"})
    assert code == 400 and b"stage: expected one of products, image" in body
    code, body = http(server.url + "api/run", "POST", {"stage": "image", "items": ["no-such-obs"]})
    assert code == 404 and b"no observation with id 'no-such-obs'" in body
    code, body = http(server.url + "api/obs/no-such-obs/unflag", "POST")
    assert code == 404


def test_token_required_when_not_on_loopback(archive_root, tmp_path):
    work = tmp_path / "w"
    # another address without a token: refused with one line and the usage exit code
    r = subprocess.run([sys.executable, "-m", "appliance.pipeline.web", "serve", "--root", str(archive_root),
                        "--work", str(work), "--host", "127.0.0.2", "--port", "0", "--no-samp"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == Exit.USAGE
    assert r.stderr.strip().splitlines()[-1] == "serve: --host 127.0.0.2 is not loopback: a --token-file is required"
    tok = tmp_path / "token"
    tok.write_text("s3cret-token-for-the-test\n")
    s = Server(archive_root, work, "--no-samp", "--token-file", str(tok), host="127.0.0.2").wait()
    try:
        assert s.url.startswith("http://127.0.0.2:")
        assert http(s.url + "api/observations")[0] == 401
        assert http(s.url, headers={"Authorization": "Bearer wrong-token-wrong-token"})[0] == 401
        assert http(s.url + "api/observations", headers={"Authorization": "Bearer s3cret-token-for-the-test"})[0] == 200
        assert http(s.url + "api/observations?token=s3cret-token-for-the-test")[0] == 200
    finally:
        s.stop()


def test_browser_renders_runs_a_stage_and_flags(server, archive_root):
    from selenium.webdriver.common.by import By

    items = list_observations(archive_root)
    d = browser()
    try:
        d.get(server.url)
        assert wait_for(d, "document.body.getAttribute('data-rendered')") == str(len(items))
        cards = d.find_elements(By.CSS_SELECTOR, ".obs")
        assert [c.get_attribute("data-item") for c in cards] == items
        # thumbnails decoded by the browser (a broken PNG has naturalWidth 0)
        try:
            wait_for(d, "Array.from(document.querySelectorAll('.obs img')).slice(0, 4)"
                        ".every(i => i.complete && i.naturalWidth > 0)")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{thumbs_state(d, server)}") from None
        first = d.execute_script("return document.querySelector('.obs img').naturalWidth")
        assert first > 0
        # the first screenful loads at once, the rest as it scrolls near
        loading = d.execute_script("return Array.from(document.querySelectorAll('.obs img')).map(i => i.loading)")
        assert loading == ["eager"] * 12 + ["lazy"] * (len(items) - 12)

        # run the image stage on one observation from its card
        target = next(o for o in json.loads(http(server.url + "api/observations")[1])["observations"]
                      if o["stages"]["products"]["status"] == "done")
        iid = target["id"]
        sel = f'[id="obs-{iid}"]'
        click(d, f"{sel} button.rerun[data-stage=image]")
        wait_for(d, f"(document.querySelector('{sel} .st[data-stage=image]') || {{}}).textContent === 'image: done'",
                 timeout=120)
        assert (server_work(server) / "image" / iid / "catalog.vot").is_file()
        n = wait_for(d, f"document.querySelectorAll('{sel} svg circle').length")
        dets = json.loads(http(server.url + f"api/obs/{iid}/detections")[1])["detections"]
        assert n == len(dets) > 0

        # flag with a note: the same flags file the CLI reads
        note = d.find_element(By.CSS_SELECTOR, f"{sel} .flag-note")
        note.clear()
        note.send_keys("side lobes, seen in the browser")
        click(d, f"{sel} button.flag")
        wait_for(d, f"document.querySelector('{sel}').classList.contains('flagged')")
        assert load_flags(server_work(server))[target["item"]]["note"] == "side lobes, seen in the browser"
        # re-run products on it: the manual flag holds (the runner's rule) and the page reports it
        click(d, f"{sel} button.rerun[data-stage=products]")
        msg = wait_for(d, "(t => t.startsWith('products:') && t)(document.getElementById('message').textContent)")
        assert msg.startswith("products: 0 done, 1 flagged, 0 failed"), msg
        # read in the page, not through an element handle: the card is re-rendered as the run's
        # results arrive, and a handle taken before that is stale
        assert wait_for(d, f"document.querySelector('{sel}').innerText"
                           ".includes('flagged: side lobes, seen in the browser')")
        click(d, f"{sel} button.unflag")
        wait_for(d, f"!document.querySelector('{sel}').classList.contains('flagged')")
        assert target["item"] not in load_flags(server_work(server))

        # a note being typed survives a re-render of the list (any run or flag ends in one)
        from selenium.common.exceptions import StaleElementReferenceException

        note = d.find_element(By.CSS_SELECTOR, f"{sel} .flag-note")
        note.clear()
        note.send_keys("half typed")
        d.execute_script("return refresh()")  # the page's own re-render (awaited)
        with pytest.raises(StaleElementReferenceException):
            note.get_attribute("value")  # the card was rebuilt
        assert d.execute_script(f"return document.querySelector('{sel} .flag-note').value") == "half typed"
        assert d.execute_script(f"return document.activeElement === document.querySelector('{sel} .flag-note')")
    finally:
        d.quit()


def thumbs_state(d, server: Server) -> str:  # noqa: ANN001
    """What the first thumbnails of the page are doing and what the server answers for them (for a
    failure message: a thumbnail that never loads says nothing by itself)."""
    imgs = d.execute_script("return Array.from(document.querySelectorAll('.obs img')).slice(0, 4).map(i => "
                            "({src: i.src, complete: i.complete, width: i.naturalWidth, "
                            "top: Math.round(i.getBoundingClientRect().top), "
                            "error: i.parentElement.getAttribute('data-error')}))")
    lines = []
    for i in imgs:
        code, body = http(i["src"])
        lines.append(f"{i} -> server now: HTTP {code} {body[:80]!r}")
    return "\n".join(lines) + "\nserver log (tail):\n" + server.log.read_text()[-3000:]


def test_browser_says_why_a_thumbnail_is_missing(archive_root, tmp_path):
    """An observation with no image (an empty product folder) shows the server's reason on its card,
    not a broken image; the others still show theirs."""
    root = tmp_path / "root"
    folders = list_observations(archive_root)[:2]
    for f in folders:
        shutil.copytree(archive_root / f, root / f)
    (root / "empty" / "obs-none").mkdir(parents=True)
    s = Server(root, tmp_path / "work", "--no-samp").wait()
    d = browser()
    try:
        d.get(s.url)
        assert wait_for(d, "document.body.getAttribute('data-rendered')") == "3"
        iid = item_id("empty/obs-none")
        why = wait_for(d, f"document.querySelector('[id=\"obs-{iid}\"] .thumb').getAttribute('data-error')")
        assert why == "empty/obs-none: no image in this observation", why
        text = d.execute_script(f"return document.querySelector('[id=\"obs-{iid}\"] .thumb-error').textContent")
        assert text == "no thumbnail: " + why
        for f in folders:
            assert wait_for(d, f"(i => i.complete && i.naturalWidth)(document.querySelector('[id=\"obs-{item_id(f)}\"] img'))")
        assert d.execute_script("return document.querySelectorAll('.thumb-error').length") == 1
    finally:
        d.quit()
        s.stop()


def server_work(s: Server) -> Path:
    m = re.search(r"\(work (\S+), root", s.log.read_text())
    assert m
    return Path(m.group(1))


def test_item_ids_match_the_cli(archive_root):
    assert all(item_id(i) == i.replace("/", "__") for i in list_observations(archive_root))


def test_a_thumbnail_is_rendered_once_when_requests_arrive_together(archive_root, work_products, monkeypatch):
    """The page asks for a card's thumbnail and its detections (which need the image's shape) at
    once, and every card at once: one render per image, the others wait for it."""
    import threading

    from appliance.pipeline.web import WebState

    state = WebState(archive_root, work_products, None)
    state.warm()
    calls, real = [], WebState._render
    gate = threading.Event()

    def slow_render(p):  # noqa: ANN001, ANN202
        calls.append(p)
        gate.wait(5)
        return real(p)

    monkeypatch.setattr(WebState, "_render", staticmethod(slow_render))
    item = list_observations(archive_root)[0]
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(state.thumbnail(item))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(out) == 8
    assert all(o is out[0] for o in out) and out[0][0].startswith(b"\x89PNG")
