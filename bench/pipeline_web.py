"""The pipeline web interface: page first render and SAMP-to-page latency (goal < 200 ms).

Setup: a generated archive of N observations (default 200, 128 px), the products stage over all of
it and the image stage (sextractor) on a few, so the page has thumbnails and detections; Debian's
jsamp hub; ``python -m appliance.pipeline.web serve --samp``; Debian's chromium (headless,
Selenium).

- First render: navigation start -> every observation card in the DOM (the page's
  ``pipelineRenderedAt``, after ``/api/observations``), and -> the first 8 thumbnails decoded.
  The first load is cold (thumbnails rendered by matplotlib on request); the rest are reloads.
- SAMP to page: an astropy SAMP client in this process sends ``table.highlight.row`` (and
  ``coord.pointAt.sky``, which the app resolves to the nearest detection over every catalog) to
  the app through the hub as a notification; latency = wall clock at send -> ``Date.now()`` in
  the page once the source is highlighted (same machine, same clock).
- Baselines in the same run, printed as ratios: the list answer alone (``GET /api/observations``
  over HTTP, no page) against the page's render; the same SAMP notifications through the same hub
  to a plain astropy SAMP client (the hub's own delivery) against SAMP-to-page.

    .venv/bin/python bench/pipeline_web.py [-n 200] [--repeat 30]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(xs: list[float]) -> dict:
    return {"n": len(xs), "median_ms": round(statistics.median(xs), 1), "p90_ms": round(pct(xs, 90), 1),
            "max_ms": round(max(xs), 1)}


KINDS = ("table.highlight.row", "coord.pointAt.sky")


def samp_latencies(c, target: str, kind: str, dets: list[dict], iid: str, repeat: int,  # noqa: ANN001
                   count: Callable[[], int], arrival: Callable[[int], float]) -> list[float]:
    """``repeat`` notifications of ``kind`` from client ``c`` to ``target`` through the hub, one at a
    time; each latency is ``arrival(count before sending)`` (ms, wall clock) minus the send time."""
    lat = []
    for k in range(repeat):
        det = dets[k % len(dets)]
        params = ({"table-id": f"appliance-pipeline:{iid}", "row": str(det["row"])}
                  if kind == "table.highlight.row" else {"ra": str(det["ra"]), "dec": str(det["dec"])})
        n0 = count()
        sent = time.time() * 1000
        c.notify(target, {"samp.mtype": kind, "samp.params": params})
        lat.append(arrival(n0) - sent)
    return lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200, help="observations (default 200)")
    ap.add_argument("--repeat", type=int, default=30, help="SAMP messages per kind, page reloads / 3")
    a = ap.parse_args()

    from astropy.samp import SAMPIntegratedClient

    from appliance.pipeline.runner import load_state
    from appliance.pipeline.stages import list_observations, run_image, run_products
    from appliance.pipeline.synth import generate
    from tests.appliance.pipeline.test_web import browser, http, wait_for

    out: dict = {"observations": a.n}
    with tempfile.TemporaryDirectory(prefix="bench-web-") as t:
        tmp = Path(t)
        root, work = tmp / "alma", tmp / "work"
        t0 = time.perf_counter()
        generate(root, observations=a.n, seed=3, size=128)
        run_products(root, work, parallel=2, progress=False)
        done = [i for i in list_observations(root)
                if (st := load_state(work, "products", i)) is not None and st.status == "done"][:5]
        run_image(root, work, detectors=("sextractor",), folders=done, parallel=2, progress=False)
        print(f"setup {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        lock = tmp / "samp.lock"
        os.environ["SAMP_HUB"] = f"std-lockurl:file://{lock}"
        procs = []
        try:
            procs.append(subprocess.Popen(["jsamp", "hub", "-mode", "no-gui", "-profiles", "std"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
            while not (lock.exists() and "samp.hub.xmlrpc.url" in lock.read_text()):
                time.sleep(0.1)
            log = tmp / "serve.log"
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "appliance.pipeline.web", "serve", "--root", str(root), "--work", str(work),
                 "--port", "0", "--samp"], stdout=subprocess.DEVNULL, stderr=open(log, "w"),  # noqa: SIM115
                start_new_session=True))
            while not (m := re.search(r"serving (http://\S+/)", log.read_text())):
                time.sleep(0.05)
            url = m.group(1)
            while not json.loads(http(url + "api/samp")[1]).get("connected"):
                time.sleep(0.1)

            d = browser()
            try:
                render, thumbs = [], []
                for i in range(max(3, a.repeat // 3)):
                    d.get(url)
                    wait_for(d, f"document.body.getAttribute('data-rendered') === '{a.n}'")
                    wait_for(d, "Array.from(document.querySelectorAll('.obs img')).slice(0, 8)"
                                ".every(i => i.complete && i.naturalWidth > 0)")
                    r = d.execute_script("return window.pipelineRenderedAt")
                    th = d.execute_script(
                        "return Math.max(...performance.getEntriesByType('resource')"
                        ".filter(e => e.name.includes('thumb.png')).slice(0, 8).map(e => e.responseEnd))")
                    (out.setdefault("first_render_cold", {"list_ms": round(r, 1), "thumbs8_ms": round(th, 1)})
                     if i == 0 else (render.append(r), thumbs.append(th)))
                out["first_render_warm_list"] = summary(render)
                out["first_render_warm_thumbs8"] = summary(thumbs)
                # baseline: the server's own answer for the list (JSON over HTTP, no page), asked
                # once the page is gone and its thumbnail requests are answered
                d.get("about:blank")
                time.sleep(2)
                api = []
                for _ in range(len(render)):
                    t1 = time.perf_counter()
                    http(url + "api/observations")
                    api.append((time.perf_counter() - t1) * 1000)
                out["baseline_api_observations"] = summary(api)
                out["render_vs_api_ratio"] = round(statistics.median(render) / statistics.median(api), 2)
                d.get(url)
                wait_for(d, f"document.body.getAttribute('data-rendered') === '{a.n}'")

                obs = [o for o in json.loads(http(url + "api/observations")[1])["observations"] if o["has_catalog"]]
                iid = obs[0]["id"]
                dets = json.loads(http(url + f"api/obs/{iid}/detections")[1])["detections"]
                wait_for(d, "document.getElementById('ws-state').textContent === 'page link: live'")
                wait_for(d, f"document.querySelectorAll('[id=\"obs-{iid}\"] svg circle').length === {len(dets)}")
                c = SAMPIntegratedClient(name="bench-sender", addr="127.0.0.1")
                c.connect()
                # baseline: the same notifications through the same hub to a plain astropy SAMP
                # client (the hub's own delivery, no app, no WebSocket, no page)
                base = SAMPIntegratedClient(name="bench-baseline", addr="127.0.0.1")
                base.connect()
                got: list[float] = []
                for kind in KINDS:
                    base.bind_receive_notification(kind, lambda *args: got.append(time.time() * 1000))

                def hub_arrival(n0: int) -> float:
                    deadline = time.monotonic() + 30
                    while len(got) == n0 and time.monotonic() < deadline:
                        time.sleep(0.0005)
                    return got[-1]

                def page_arrival(n0: int) -> float:
                    wait_for(d, f"window.pipeline.received.length > {n0}", timeout=30)
                    ev = d.execute_script("return window.pipeline.received[window.pipeline.received.length-1]")
                    assert ev["shown"], ev
                    return ev["t_shown_ms"]

                try:
                    bid = next(x for x in c.get_registered_clients()
                               if c.get_metadata(x).get("samp.name") == "bench-baseline")
                    for kind in KINDS:
                        out[f"baseline_samp_{kind}"] = summary(
                            samp_latencies(c, bid, kind, dets, iid, a.repeat, lambda: len(got), hub_arrival))
                finally:
                    base.disconnect()
                try:
                    app = next(x for x in c.get_registered_clients()
                               if c.get_metadata(x).get("samp.name") == "appliance-pipeline")
                    for kind in KINDS:
                        out[f"samp_to_page_{kind}"] = summary(samp_latencies(
                            c, app, kind, dets, iid, a.repeat,
                            lambda: d.execute_script("return window.pipeline.received.length"), page_arrival))
                        out[f"samp_vs_hub_ratio_{kind}"] = round(
                            out[f"samp_to_page_{kind}"]["median_ms"] / out[f"baseline_samp_{kind}"]["median_ms"], 2)
                finally:
                    c.disconnect()
            finally:
                d.quit()
            out["goal_ms"] = 200
            out["goal_met"] = all(v["p90_ms"] < 200 for k, v in out.items() if k.startswith("samp_to_page"))
            json.dump(out, sys.stdout, indent=2)
            sys.stdout.write("\n")
            sys.stdout.flush()
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
                    try:
                        p.wait(20)
                    except subprocess.TimeoutExpired:
                        os.killpg(p.pid, signal.SIGKILL)
                        p.wait()
    return 0


if __name__ == "__main__":
    if shutil.which("jsamp") is None:
        sys.exit("bench/pipeline_web.py: needs Debian's jsamp (the SAMP hub)")
    sys.exit(main())
