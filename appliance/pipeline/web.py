"""``appliance pipeline serve``: the pipeline's web interface (FastAPI + uvicorn, plain HTML/JS).

The page lists the observations with each stage's status and the manual flags, shows a PNG
thumbnail of each image with the detections drawn over it, runs or re-runs a stage, flags and
unflags with a note, and sends a catalog to TOPCAT over SAMP. Every action calls the same functions
as the command line (``stages.run_products``, ``stages.run_image``, ``runner.set_flag`` /
``clear_flag``, ``stages.status_table``): there is no second implementation here.

Access: binds 127.0.0.1 by default; bound to any other address it refuses to start without a
token file, and with a token every request needs it (``Authorization: Bearer``, ``?token=`` or the
cookie the page sets). No request path is joined onto the file system: observations are addressed
by their item id and looked up in the list the pipeline itself produced (archive folders, state
records, flags); static files come from a fixed list. SAMP messages reach the open page over the
``/ws`` WebSocket (see ``samp.py``).
"""

import argparse
import hmac
import io
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from appliance.exitcodes import Exit

STATIC = Path(__file__).with_name("static")
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STAGES = ("products", "image")
POINT_RADIUS_ARCSEC = 5.0


class WebState:
    """What the app keeps between requests: paths, token, SAMP bridge, open pages."""

    def __init__(self, root: Path, work: Path, token: str | None, parallel: int = 2,
                 detectors: tuple[str, ...] = ("sextractor", "aegean", "emcee"), runtime: str = "host"):
        self.root, self.work = Path(root).resolve(), Path(work).resolve()
        self.token, self.parallel, self.detectors = token, parallel, detectors
        self.runtime = runtime  # where a run's items run (host, or a container runtime: the stages image)
        self.run_lock = threading.Lock()
        self.queues: set = set()  # of asyncio.Queue, one per open page
        self.loop: Any = None  # the asyncio loop serving the app
        self.events: deque[dict] = deque(maxlen=50)
        self.fetches: deque[dict] = deque(maxlen=50)  # who fetched which catalog (TOPCAT does, after SAMP)
        self.bridge: Any = None
        self.base_url = ""
        self._items: tuple[float, dict[str, str]] | None = None
        self._paths: dict[str, tuple[float | None, Path | None]] = {}
        self._thumbs: dict[tuple[str, float], tuple[bytes, list[int]]] = {}
        self._thumb_locks: dict[tuple[str, float], threading.Lock] = {}  # one per key in _thumbs
        self._locks_lock = threading.Lock()
        self._cats: dict[tuple[str, float], list[dict]] = {}

    # -- the items: only names the pipeline produced, never a path from a request -----------------

    def items(self) -> dict[str, str]:
        """item id -> item (observation folder relative to the root); rebuilt at most every 2 s."""
        now = time.monotonic()
        if self._items is None or now - self._items[0] > 2.0:
            from appliance.pipeline.runner import item_id, load_flags
            from appliance.pipeline.stages import list_observations, status_table

            names: set[str] = set()
            if self.root.is_dir():
                names.update(list_observations(self.root))
            names.update(status_table(self.work))
            names.update(load_flags(self.work))
            self._items = (now, {item_id(n): n for n in sorted(names)})
        return self._items[1]

    def changed(self) -> None:
        """A run or a flag changed the work area: list the items afresh on the next request."""
        self._items = None

    def item(self, iid: str) -> str:
        from fastapi import HTTPException

        it = self.items().get(iid)
        if it is None:
            raise HTTPException(404, f"no observation with id {iid!r}")
        return it

    def inside(self, p: Path, base: Path) -> Path | None:
        p = p.resolve()
        return p if p.is_relative_to(base) else None

    # -- files of one observation -------------------------------------------------------------------

    def image_path(self, item: str) -> Path | None:
        """The corrected image if ``products`` classified it, else the folder's first FITS file."""
        from appliance.pipeline.runner import item_id

        xml = self.work / "products" / f"{item_id(item)}.xml"
        mtime = xml.stat().st_mtime if xml.exists() else None
        hit = self._paths.get(item)
        if hit is None or hit[0] != mtime or (hit[1] is not None and not hit[1].exists()):
            hit = self._paths[item] = (mtime, self._image_path(item, xml))
        return hit[1]

    def _image_path(self, item: str, xml: Path) -> Path | None:
        from appliance.pipeline import products as prod
        from appliance.pipeline.fitsimage import is_fits

        if xml.exists():
            try:
                obs = prod.read_xml(xml)[0]
            except Exception:  # noqa: BLE001 - a damaged record: fall back to the folder
                obs = None
            if obs is not None:
                for ptype in ("corrected", "uncorrected", "primaryBeam"):
                    f = next((f for f in obs.files if f.type == ptype), None)
                    if f is not None:
                        base = self.work if f.origin == "rebuilt" else self.root / item
                        p = self.inside(base / f.name, self.work if f.origin == "rebuilt" else self.root)
                        if p is not None and p.is_file():
                            return p
        folder = self.inside(self.root / item, self.root)
        if folder is None or not folder.is_dir():
            return None
        fits = sorted(p for p in folder.iterdir() if p.is_file() and is_fits(p.name))
        return fits[0] if fits else None

    @staticmethod
    def warm() -> None:
        """Import, in this thread and before the first request, what the request threads use.

        The first page load asks for every thumbnail at once: without this, forty threads would
        run the first imports of matplotlib, astropy and the pipeline modules concurrently, where
        Python hands a thread that meets a concurrent circular import a partly initialised module.
        It also takes the imports out of the first render's time.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.image  # noqa: F401
        from astropy.io.votable import parse_single_table  # noqa: F401

        from appliance.pipeline import fitsimage, products, runner, stages  # noqa: F401

    def thumbnail(self, item: str) -> tuple[bytes, list[int]]:
        """The PNG of an observation's image and the image's shape: rendered once per file
        version (the page's thumbnail and detections requests for one card arrive together)."""
        p = self.image_path(item)
        if p is None:
            raise FileNotFoundError(item)
        key = (str(p), p.stat().st_mtime)
        hit = self._thumbs.get(key)
        if hit is not None:
            return hit
        with self._locks_lock:
            lock = self._thumb_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._thumbs:
                self._thumbs[key] = self._render(p)
        return self._thumbs[key]

    @staticmethod
    def _render(p: Path) -> tuple[bytes, list[int]]:
        import matplotlib.image as mpimg
        import numpy as np

        from appliance.pipeline.fitsimage import read_image

        im = read_image(p, need_wcs=False)
        shape = [int(im.data.shape[0]), int(im.data.shape[1])]
        d = im.data
        finite = d[np.isfinite(d)]
        lo, hi = (np.percentile(finite, [1, 99.7]) if finite.size else (0.0, 1.0))
        buf = io.BytesIO()
        mpimg.imsave(buf, np.where(np.isfinite(d), d, lo), vmin=lo, vmax=max(hi, lo + 1e-12),
                     cmap="inferno", origin="lower", format="png")
        return buf.getvalue(), shape

    def catalog_path(self, item: str) -> Path | None:
        from appliance.pipeline.runner import item_id

        p = self.inside(self.work / "image" / item_id(item) / "catalog.vot", self.work)
        return p if p is not None and p.is_file() else None

    def detections(self, item: str) -> list[dict]:
        from astropy.io.votable import parse_single_table

        p = self.catalog_path(item)
        if p is None:
            return []
        key = (str(p), p.stat().st_mtime)
        if key not in self._cats:
            t = parse_single_table(str(p)).to_table()
            self._cats[key] = [{"row": i, "detector": str(r["detector"]), "ra": float(r["ra"]),
                                "dec": float(r["dec"]), "x": float(r["x"]), "y": float(r["y"]),
                                "flux": float(r["flux"])} for i, r in enumerate(t)]
        return self._cats[key]

    def observations(self) -> list[dict]:
        from appliance.pipeline.runner import load_flags
        from appliance.pipeline.stages import status_table

        self.changed()  # the list the page shows is always fresh
        table, flags = status_table(self.work), load_flags(self.work)
        out = []
        for iid, it in self.items().items():
            stages = {s: {k: v for k, v in st.items() if k in ("status", "reason", "seconds", "manual")}
                      for s, st in table.get(it, {}).items()}
            out.append({"id": iid, "item": it, "stages": stages, "flag": flags.get(it),
                        "has_catalog": self.catalog_path(it) is not None})
        return out

    def nearest(self, ra: float, dec: float) -> tuple[str, int, float] | None:
        """The detection nearest (ra, dec) over all catalogs: (item id, row, separation arcsec)."""
        import math

        best = None
        for iid, it in self.items().items():
            for d in self.detections(it):
                dra = (d["ra"] - ra) * math.cos(math.radians(dec))
                sep = math.hypot(dra, d["dec"] - dec) * 3600.0
                if best is None or sep < best[2]:
                    best = (iid, d["row"], sep)
        return best

    # -- events to the open pages -------------------------------------------------------------------

    def publish(self, ev: dict) -> None:
        """Called from any thread (SAMP's, a run's): queue ``ev`` for every open page."""
        if ev.get("type") == "coord.pointAt.sky" and "ra" in ev:
            hit = self.nearest(ev["ra"], ev["dec"])
            if hit is not None and hit[2] <= POINT_RADIUS_ARCSEC:
                ev["item"], ev["rows"], ev["sep_arcsec"] = hit[0], [hit[1]], round(hit[2], 3)
        if ev.get("type") in ("run", "flag", "unflag"):
            self.changed()
        self.events.append(ev)
        loop = self.loop
        if loop is None:
            return

        def put() -> None:
            for q in list(self.queues):
                q.put_nowait(ev)

        loop.call_soon_threadsafe(put)

    def run(self, stage: str, iids: list[str], restart: bool, detectors: tuple[str, ...] | None) -> dict:
        """Run a stage on some items (or all): the CLI's functions, one run at a time."""
        from appliance.pipeline.stages import run_image, run_products

        items = self.items()
        folders = None if not iids else [items[i] for i in iids]
        if not self.run_lock.acquire(blocking=False):
            return {"ok": False, "error": "a run is already in progress"}
        try:
            par = 1 if folders is not None and len(folders) <= 1 else self.parallel
            if stage == "products":
                summary, _xml = run_products(self.root, self.work, folders=folders, parallel=par,
                                             resume=not restart, progress=False, runtime=self.runtime)
            else:
                summary, _q = run_image(self.root, self.work, detectors=detectors or self.detectors,
                                        folders=folders, parallel=par, resume=not restart, progress=False,
                                        runtime=self.runtime)
        finally:
            self.run_lock.release()
        self.publish({"type": "run", "stage": stage, "ok": summary.ok, "t_server_ms": time.time() * 1000})
        out = summary.to_json()
        out["items"] = [{k: i[k] for k in ("id", "status", "reason")} for i in out["items"]]
        return out


def create_app(state: WebState):  # noqa: ANN201 - a FastAPI app (imported lazily)
    import asyncio
    from contextlib import asynccontextmanager

    from fastapi import Body, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, Response

    from appliance.pipeline.errors import PipelineError
    from appliance.pipeline.runner import clear_flag, load_flags, set_flag

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        state.loop = asyncio.get_running_loop()
        yield
        if state.bridge is not None:
            state.bridge.stop()

    app = FastAPI(title="appliance pipeline", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)

    def authorized(headers: Any, query: Any, cookies: Any) -> bool:
        if state.token is None:
            return True
        got = query.get("token") or cookies.get("pipeline_token") or ""
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            got = auth[7:].strip()
        return hmac.compare_digest(got.encode(), state.token.encode())

    @app.middleware("http")
    async def check_token(request: Request, call_next):  # noqa: ANN001, ANN202
        if not authorized(request.headers, request.query_params, request.cookies):
            return JSONResponse({"error": "a token is required (Authorization: Bearer TOKEN or ?token=)"},
                                status_code=401)
        resp = await call_next(request)
        if state.token is not None and request.query_params.get("token"):
            resp.set_cookie("pipeline_token", state.token, httponly=True, samesite="strict")
        return resp

    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, "no such file")
        return Response((STATIC / name).read_bytes(), media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "no-cache"})

    @app.get("/")
    def index() -> Response:
        return static("index.html")

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        return static(name)

    @app.get("/api/observations")
    def observations() -> dict:
        return {"observations": state.observations(), "stages": list(STAGES),
                "detectors": list(state.detectors)}

    @app.get("/api/obs/{iid}/thumb.png")
    def thumb(iid: str) -> Response:
        it = state.item(iid)
        try:
            png, shape = state.thumbnail(it)
        except FileNotFoundError:
            raise HTTPException(404, f"{it}: no image in this observation") from None
        except PipelineError as e:
            raise HTTPException(422, str(e)) from None
        return Response(png, media_type="image/png", headers={"X-Image-Shape": f"{shape[0]}x{shape[1]}"})

    @app.get("/api/obs/{iid}/detections")
    def detections(iid: str) -> dict:
        it = state.item(iid)
        shape = None
        try:
            shape = state.thumbnail(it)[1]
        except (FileNotFoundError, PipelineError):
            pass
        return {"id": iid, "item": it, "shape": shape, "detections": state.detections(it)}

    @app.get("/api/obs/{iid}/catalog.vot")
    def catalog(iid: str, request: Request) -> Response:
        it = state.item(iid)
        p = state.catalog_path(it)
        if p is None:
            raise HTTPException(404, f"{it}: no catalog yet (run the image stage)")
        state.fetches.append({"id": iid, "agent": request.headers.get("user-agent", ""), "t": time.time()})
        return Response(p.read_bytes(), media_type="application/x-votable+xml")

    @app.post("/api/run")
    async def run(body: dict = Body(...)) -> dict:  # noqa: B008
        stage = body.get("stage")
        if stage not in STAGES:
            raise HTTPException(400, f"stage: expected one of {', '.join(STAGES)}, got {stage!r}")
        iids = body.get("items") or []
        if not isinstance(iids, list):
            raise HTTPException(400, "items: expected a list of observation ids")
        for i in iids:
            state.item(str(i))
        det = body.get("detectors")
        detectors = tuple(det) if isinstance(det, list) and det else None
        try:
            out = await run_in_threadpool(state.run, stage, [str(i) for i in iids], bool(body.get("restart")),
                                          detectors)
        except PipelineError as e:
            raise HTTPException(422, str(e)) from None
        if out.get("error"):
            raise HTTPException(409, out["error"])
        return out

    @app.post("/api/obs/{iid}/flag")
    def flag(iid: str, body: dict = Body(default={})) -> dict:  # noqa: B008
        it = state.item(iid)
        note = str(body.get("note") or "flagged by hand").strip()[:500]
        set_flag(state.work, it, note)
        state.publish({"type": "flag", "item": iid, "note": note, "t_server_ms": time.time() * 1000})
        return {"ok": True, "item": it, "flag": load_flags(state.work).get(it)}

    @app.post("/api/obs/{iid}/unflag")
    def unflag(iid: str) -> dict:
        it = state.item(iid)
        if not clear_flag(state.work, it):
            raise HTTPException(404, f"{it}: was not flagged")
        state.publish({"type": "unflag", "item": iid, "t_server_ms": time.time() * 1000})
        return {"ok": True, "item": it}

    @app.get("/api/samp")
    def samp_status() -> dict:
        b = state.bridge
        out = {"enabled": b is not None, "events": list(state.events)[-10:], "catalog_fetches": list(state.fetches)}
        if b is not None:
            out.update(b.status())
        return out

    @app.post("/api/obs/{iid}/send")
    async def send(iid: str, body: dict = Body(default={})) -> dict:  # noqa: B008
        from appliance.pipeline.samp import table_id

        it = state.item(iid)
        if state.bridge is None:
            raise HTTPException(409, "SAMP is off (serve --samp)")
        if state.catalog_path(it) is None:
            raise HTTPException(404, f"{it}: no catalog yet (run the image stage)")
        url = f"{state.base_url}/api/obs/{iid}/catalog.vot"
        if state.token:
            url += f"?token={state.token}"
        to = body.get("to", "topcat")
        out = await run_in_threadpool(state.bridge.send_table, url, table_id(iid), f"{it} detections",
                                      None if to in (None, "", "all") else str(to))
        if not out.get("ok"):
            raise HTTPException(502, out.get("error") or f"SAMP reply: {out.get('reply')}")
        return out

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        if not authorized(websocket.headers, websocket.query_params, websocket.cookies):
            await websocket.close(code=4401)
            return
        await websocket.accept()
        q: asyncio.Queue = asyncio.Queue()
        state.queues.add(q)

        async def pump() -> None:
            await websocket.send_json({"type": "hello", "t_server_ms": time.time() * 1000})
            while True:
                await websocket.send_json(await q.get())

        sender = asyncio.create_task(pump())
        try:  # read too, so a closed page (or the server shutting down) ends this handler at once
            while not sender.done():
                if (await websocket.receive())["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            sender.cancel()
            state.queues.discard(q)

    return app


# -- the command --------------------------------------------------------------------------------------

def _read_token(path: str) -> str:
    p = Path(path)
    try:
        tok = p.read_text().strip()
    except OSError as e:
        raise SystemExit(f"{p}: cannot read the token file ({e.strerror})") from None
    if len(tok) < 16:
        raise SystemExit(f"{p}: the token must be at least 16 characters (got {len(tok)})")
    return tok


def serve(a: argparse.Namespace) -> int:
    import asyncio

    import uvicorn

    token = None
    try:
        if a.token_file:
            token = _read_token(a.token_file)
    except SystemExit as e:
        print(f"serve: {e}", file=sys.stderr)
        return Exit.USAGE
    if a.host not in LOOPBACK and token is None:
        print(f"serve: --host {a.host} is not loopback: a --token-file is required", file=sys.stderr)
        return Exit.USAGE
    root, work = Path(a.root), Path(a.work)
    if not root.is_dir():
        print(f"serve: --root {root}: not a directory", file=sys.stderr)
        return Exit.NOT_FOUND
    work.mkdir(parents=True, exist_ok=True)
    detectors = tuple(d for d in a.detectors.split(",") if d)
    from appliance.pipeline.container import runtime_of

    state = WebState(root, work, token, parallel=a.parallel, detectors=detectors, runtime=runtime_of(a))
    state.warm()
    host_in_url = "127.0.0.1" if a.host in ("0.0.0.0", "::") else a.host
    config = uvicorn.Config(create_app(state), host=a.host, port=a.port, log_level="warning",
                            ws="websockets-sansio", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    if a.samp:
        from appliance.pipeline.samp import SampBridge

        state.bridge = SampBridge(state.publish)
        state.bridge.start()

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            state.base_url = f"http://{host_in_url}:{port}"
            print(f"serving {state.base_url}/ (work {state.work}, root {state.root})", file=sys.stderr,
                  flush=True)
        await task

    asyncio.run(main())
    return 0 if server.started else Exit.USAGE


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``appliance pipeline`` subcommands."""
    p = subparsers.add_parser("serve", help="web interface: observations, thumbnails, runs, flags, SAMP",
                              description="Serve the pipeline's web interface on 127.0.0.1 (by default).")
    p.add_argument("--work", required=True, help="work area (as for the stages)")
    p.add_argument("--root", required=True, help="archive root (as for the stages)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; "
                   "any other needs --token-file)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token-file", help="file holding the access token (>= 16 characters)")
    p.add_argument("--samp", action=argparse.BooleanOptionalAction, default=True,
                   help="register with a SAMP hub and bridge it to the page (default on)")
    p.add_argument("--parallel", type=int, default=2, help="worker processes for a run over many items")
    p.add_argument("--detectors", default="sextractor,aegean,emcee", help="detectors for the image stage")
    from appliance.pipeline.container import add_runtime_option

    add_runtime_option(p)
    p.set_defaults(func=serve)


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.pipeline.web serve ...`` (the same as ``appliance pipeline serve``)."""
    parser = argparse.ArgumentParser(prog="appliance pipeline")
    sub = parser.add_subparsers(dest="pipeline_command", required=True)
    register(sub)
    a = parser.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
