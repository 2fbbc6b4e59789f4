"""Staging-aware bulk copy: what is on disk is copied at once, what is on tape is staged first.

Per storage server: ``archiveinfo`` tells where each file is; files only on tape go into one stage
request; the request is polled with backoff and each file is handed to the copier the moment it is
online (no waiting for the whole request); its pin is released as soon as its copy is done.
Servers without a Tape REST API (plain disk, GridFTP) are simply copied.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from appliance.exitcodes import Exit
from appliance.staging.errors import StagingError, StagingFailed, TapeApiUnavailable
from appliance.staging.model import Backoff, path_of, server_root
from appliance.transfer.credentials import Credentials
from appliance.transfer.engine import Copier, CopyJob
from appliance.transfer.result import BulkResult, TransferResult
from appliance.transfer.select import scheme_of

if TYPE_CHECKING:
    from appliance.staging.client import StagingClient

log = logging.getLogger(__name__)
TAPE_SCHEMES = ("davs", "https", "dav", "http")


def _failed(job: CopyJob, err: StagingError | Exception) -> TransferResult:
    return TransferResult(job.src, job.dst, ok=False, error=str(err), error_type=type(err).__name__,
                          exit_code=getattr(err, "exit_code", Exit.REMOTE), exception=err)


class StagingCopier:
    def __init__(self, copier: Copier, credentials: Credentials | None = None,
                 lifetime: str | None = "PT1H", timeout: float = 6 * 3600.0,
                 backoff: Callable[[], Backoff] = Backoff, release: bool = True,
                 client_factory: Callable[[str], StagingClient] | None = None):
        self.copier = copier
        self.credentials = credentials or Credentials()
        self.lifetime, self.timeout, self.release = lifetime, timeout, release
        self.backoff = backoff
        self.client_factory = client_factory or self._client
        self.notes: list[str] = []

    def _client(self, url: str) -> StagingClient:
        from appliance.staging.client import StagingClient  # requests: only for tape servers

        return StagingClient(url, self.credentials)

    def copy(self, jobs: list[CopyJob]) -> BulkResult:
        started = time.monotonic()
        results: dict[int, TransferResult | Future[TransferResult]] = {}
        by_server: dict[str, list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            if scheme_of(job.src) in TAPE_SCHEMES:
                by_server[server_root(job.src)].append(i)
        with ThreadPoolExecutor(max_workers=max(1, self.copier.options.parallel),
                                thread_name_prefix="copy") as pool:
            direct = [i for i in range(len(jobs)) if not any(i in v for v in by_server.values())]
            for i in direct:
                results[i] = self.copier.submit(pool, jobs[i])
            waiters = []
            for server, idx in by_server.items():
                t = threading.Thread(target=self._server, args=(server, jobs, idx, pool, results),
                                     name=f"stage-{server}", daemon=True)
                t.start()
                waiters.append(t)
            for t in waiters:
                t.join()
            final = [results[i] if isinstance(results[i], TransferResult) else results[i].result()
                     for i in range(len(jobs))]
        return BulkResult(final, time.monotonic() - started, list(self.notes))

    def _server(self, server: str, jobs: list[CopyJob], idx: list[int], pool: ThreadPoolExecutor,
                results: dict) -> None:
        client = self.client_factory(jobs[idx[0]].src)
        try:
            client.endpoint  # noqa: B018 - discovery; raises when the server has no tape API
        except StagingError as err:
            # No tape API (a plain disk or web server), or it did not answer: copy directly;
            # the copy has its own retries and will report a server that is really down.
            if not isinstance(err, TapeApiUnavailable):
                log.info("tape REST discovery on %s failed (%s): copying directly", server, err)
            for i in idx:
                results[i] = self.copier.submit(pool, jobs[i])
            return
        try:
            infos = {a.path: a for a in client.archiveinfo([path_of(jobs[i].src) for i in idx])}
        except StagingError as err:
            for i in idx:
                results[i] = _failed(jobs[i], err)
            return
        on_tape: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            info = infos.get(path_of(jobs[i].src))
            if info is None or info.online or info.locality is None and info.error is None:
                results[i] = self.copier.submit(pool, jobs[i])
            elif info.needs_stage:
                on_tape[path_of(jobs[i].src)].append(i)
            else:
                results[i] = _failed(jobs[i], StagingFailed(
                    jobs[i].src, f"not retrievable: {info.error or info.locality}"))
        if not on_tape:
            return
        try:
            rid = client.stage(list(on_tape), self.lifetime)
        except StagingError as err:
            for ids in on_tape.values():
                for i in ids:
                    results[i] = _failed(jobs[i], err)
            return
        self.notes.append(f"staged {len(on_tape)} file(s) from tape on {server} (request {rid})")
        releases: list[Future] = []

        def online(path: str) -> None:
            for i in on_tape.get(path, []):
                fut = self.copier.submit(pool, jobs[i])
                results[i] = fut
                if self.release:
                    releases.append(fut)
                    fut.add_done_callback(lambda _f, p=path: self._release(client, rid, p))

        try:
            status = client.wait(rid, self.timeout, on_online=online, backoff=self.backoff(),
                                 raise_on_failure=False)
            for f in status.failed:
                for i in on_tape.get(f.path, []):
                    results[i] = _failed(jobs[i], StagingFailed(
                        jobs[i].src, f"staging {f.state.lower()}: {f.error or 'no reason given'}"))
        except StagingError as err:
            pending = [p for p, ids in on_tape.items() if any(i not in results for i in ids)]
            for ids in on_tape.values():
                for i in ids:
                    if i not in results:
                        results[i] = _failed(jobs[i], err)
            if pending:
                try:
                    client.cancel(rid, pending)
                except StagingError:
                    pass

    def _release(self, client: StagingClient, rid: str, path: str) -> None:
        try:
            client.release(rid, [path])
        except StagingError as err:  # a pin left behind expires by itself: note, do not fail
            log.warning("release of %s failed: %s", path, err)
            self.notes.append(f"release of {path} failed: {err}")
