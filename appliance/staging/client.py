"""``StagingClient``: the WLCG Tape REST API v1, client side, usable on its own.

Only the documented API is used, so the same client drives our archive, dCache, StoRM-tape and
EOS-CTA. The endpoint is discovered from ``https://host:port/.well-known/wlcg-tape-rest-api``
(highest version that has a ``uri``, used verbatim, as gfal2 does) unless given.
Paths are the storage namespace paths, i.e. the path part of the file URLs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests

from appliance.staging.errors import StagingError, StagingFailed, TapeApiUnavailable
from appliance.staging.model import ArchiveInfo, Backoff, StageStatus, server_root
from appliance.transfer.credentials import Credentials
from appliance.transfer.http import make_session

WELL_KNOWN = "/.well-known/wlcg-tape-rest-api"


class StagingClient:
    def __init__(self, server: str, credentials: Credentials | None = None,
                 endpoint: str | None = None, timeout: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep):
        """``server``: any URL on the storage (``davs://host:port/...``); ``endpoint``: skip discovery."""
        try:
            self.server = server_root(server)
        except ValueError as err:
            raise TapeApiUnavailable(server, str(err)) from err
        self.credentials = credentials or Credentials()
        self.timeout = timeout
        self.sleep = sleep
        self._endpoint = endpoint.rstrip("/") if endpoint else None
        self._session = make_session(self.credentials)
        self._lock = threading.Lock()
        self.sitename: str | None = None

    # -- plumbing -----------------------------------------------------------------------------
    def _call(self, method: str, url: str, what: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        try:
            with self._lock:  # one session, shared by the polling and copying threads
                resp = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as err:
            raise StagingError(url, f"{what}: {err.__class__.__name__}: {str(err)[:200]}",
                               transient=True) from err
        if resp.status_code not in ok:
            detail = ""
            try:
                problem = resp.json()
                detail = f": {problem.get('title', '')} {problem.get('detail', '')}".rstrip()
            except ValueError:
                pass
            err = StagingError(url, f"{what}: HTTP {resp.status_code}{detail}",
                               transient=resp.status_code >= 500)
            if resp.status_code in (404, 405, 501) and what == "discovery":
                raise TapeApiUnavailable(url, "the server offers no WLCG Tape REST API")
            raise err
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as err:
            raise StagingError(url, f"{what}: answer is not JSON") from err

    @property
    def endpoint(self) -> str:
        if self._endpoint is None:
            self._endpoint = self.discover()
        return self._endpoint

    def discover(self) -> str:
        doc = self._call("GET", self.server + WELL_KNOWN, "discovery")
        if not isinstance(doc, dict) or not isinstance(doc.get("endpoints"), list):
            raise TapeApiUnavailable(self.server, "discovery document without 'endpoints'")
        self.sitename = doc.get("sitename")
        usable = [e for e in doc["endpoints"] if isinstance(e, dict) and e.get("uri")]
        if not usable:
            raise TapeApiUnavailable(self.server, "discovery document lists no endpoint uri")
        best = max(usable, key=lambda e: str(e.get("version", "v0")))
        return str(best["uri"]).rstrip("/")

    # -- the API ------------------------------------------------------------------------------
    def stage(self, paths: Iterable[str], lifetime: str | None = None) -> str:
        """Ask for ``paths`` on disk; ``lifetime`` is an ISO 8601 duration (``PT1H``, ``P2D``)."""
        files = []
        for p in paths:
            item: dict[str, Any] = {"path": p}
            if lifetime:
                item["diskLifetime"] = lifetime
            files.append(item)
        body = self._call("POST", f"{self.endpoint}/stage", "stage", {"files": files}, ok=(200, 201, 202))
        if not isinstance(body, dict) or not body.get("requestId"):
            raise StagingError(self.endpoint, "stage: answer without requestId")
        return str(body["requestId"])

    def status(self, request_id: str) -> StageStatus:
        return StageStatus.from_json(self._call("GET", f"{self.endpoint}/stage/{request_id}", "status"))

    def cancel(self, request_id: str, paths: Iterable[str]) -> None:
        self._call("POST", f"{self.endpoint}/stage/{request_id}/cancel", "cancel",
                   {"paths": list(paths)}, ok=(200, 204))

    def delete(self, request_id: str) -> None:
        self._call("DELETE", f"{self.endpoint}/stage/{request_id}", "delete", ok=(200, 204))

    def release(self, request_id: str, paths: Iterable[str]) -> None:
        self._call("POST", f"{self.endpoint}/release/{request_id}", "release",
                   {"paths": list(paths)}, ok=(200, 204))

    def archiveinfo(self, paths: Iterable[str]) -> list[ArchiveInfo]:
        body = self._call("POST", f"{self.endpoint}/archiveinfo", "archiveinfo", {"paths": list(paths)})
        if not isinstance(body, list):
            raise StagingError(self.endpoint, "archiveinfo: answer is not a JSON array")
        return [ArchiveInfo.from_json(i) for i in body]

    def wait(self, request_id: str, timeout: float = 3600.0,
             on_online: Callable[[str], None] | None = None, backoff: Backoff | None = None,
             raise_on_failure: bool = True) -> StageStatus:
        """Poll until every file is finished; ``on_online(path)`` fires once per file as it lands."""
        backoff = backoff or Backoff()
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while True:
            try:
                st = self.status(request_id)
            except StagingError as err:
                if not err.transient or time.monotonic() > deadline:
                    raise
                self.sleep(backoff.next())
                continue
            for path in st.online:
                if path not in seen:
                    seen.add(path)
                    if on_online:
                        on_online(path)
            if st.done:
                if raise_on_failure and st.failed:
                    bad = st.failed
                    raise StagingFailed(f"stage request {request_id}",
                                        f"{len(bad)} file(s) not brought online: "
                                        + "; ".join(f"{f.path} ({f.error or f.state})" for f in bad[:5]),
                                        [f.path for f in bad])
                return st
            if time.monotonic() > deadline:
                raise StagingFailed(f"stage request {request_id}",
                                    f"still not online after {timeout:.0f} s",
                                    [f.path for f in st.files if not f.online])
            self.sleep(backoff.next())
