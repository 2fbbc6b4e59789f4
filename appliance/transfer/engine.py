"""``Copier``: what every copy gets, whatever the protocol.

* end-to-end checksum: the storage's own checksum of the source (or one the caller knows, e.g.
  from a catalog) is compared with the checksum of the bytes that arrived;
* the destination is written under a temporary name (``.NAME.part`` locally, ``.NAME.part-<id>``
  remotely) and renamed to its final name only after the checksums matched, so nothing wrong or
  partial ever appears under the final name;
* retries with exponential backoff on transient errors (and on a checksum mismatch, since the next
  copy may be clean), resuming from the bytes already there when the backend can;
* several files in parallel, a tqdm bar per transfer and one overall.

Copies are local<->remote (get and put) and local->local. Results are ``TransferResult`` values;
nothing is raised for a failed file in ``copy_many``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import ApplianceError, ChecksumMismatch
from appliance.fsutil import fsync_dir
from appliance.transfer.base import RemoteStat, TransferBackend
from appliance.transfer.checksum import file_checksum, normalise_algorithm, parse_expected
from appliance.transfer.credentials import Credentials
from appliance.transfer.errors import ChecksumUnavailable, TransferError, UnsupportedURL
from appliance.transfer.local import local_path
from appliance.transfer.result import BulkResult, TransferResult
from appliance.transfer.retry import RetryPolicy, is_transient
from appliance.transfer.select import Backends, is_local

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopyOptions:
    checksum: str | None = "adler32"  # None: copy without verification
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    parallel: int = 4
    progress: bool = True  # tqdm bars (hidden anyway when stderr is not a terminal)
    overwrite: bool = True
    fsync: bool = True  # flush the data to disk before the rename (durable after a crash)


@dataclass(frozen=True)
class CopyJob:
    src: str
    dst: str
    expected: str | None = None  # "ALGO:VALUE" known from elsewhere (catalog, recipe lock)


class _Counter:
    """What a disabled bar needs to be: a byte count. (``--no-progress``/``--json`` runs skip
    importing tqdm, ~40 ms of every dataclient start-up.)"""

    def __init__(self, total: int | None = None, **_: object):
        self.total, self.n = total, 0

    def update(self, n: int) -> None:
        self.n += n

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def byte_bar(enabled: bool, **kw: Any) -> tqdm | _Counter:
    """A tqdm byte bar (shown only on a terminal), or a plain counter when progress is off."""
    if not enabled:
        return _Counter(**kw)
    from tqdm import tqdm

    return tqdm(unit="B", unit_scale=True, unit_divisor=1024, disable=None, **kw)


class _Bar:
    """A per-transfer byte bar feeding the overall one; thread-safe enough for tqdm."""

    def __init__(self, label: str, total: int | None, overall: tqdm | _Counter | None,
                 enabled: bool):
        self.overall = overall
        self.bar = byte_bar(enabled, total=total, leave=False, desc=label[-40:])

    def set_total(self, total: int) -> None:
        if self.bar.total is None:
            self.bar.total = total
            self.bar.refresh()
            if self.overall is not None:
                self.overall.total += total
                self.overall.refresh()

    def __call__(self, n: int) -> None:
        self.bar.update(n)
        if self.overall is not None:
            self.overall.update(n)

    def reset(self, to: int) -> None:
        back = to - self.bar.n
        if back:
            self.bar.update(back)
            if self.overall is not None:
                self.overall.update(back)

    def close(self) -> None:
        self.bar.close()


class Copier:
    def __init__(self, credentials: Credentials | None = None, options: CopyOptions | None = None,
                 backends: Backends | None = None, sleep: Callable[[float], None] = time.sleep):
        self.options = options or CopyOptions()
        self.backends = backends or Backends(credentials)
        self.sleep = sleep

    # -- public -------------------------------------------------------------------------------
    def copy(self, src: str, dst: str, expected: str | None = None) -> TransferResult:
        return self.copy_many([CopyJob(src, dst, expected)]).results[0]

    def copy_many(self, jobs: Iterable[CopyJob],
                  on_done: Callable[[TransferResult], None] | None = None) -> BulkResult:
        jobs = list(jobs)
        started = time.monotonic()
        overall = None
        if len(jobs) > 1:
            overall = byte_bar(self.options.progress, total=0, desc="total")
        try:
            with ThreadPoolExecutor(max_workers=max(1, min(self.options.parallel, len(jobs) or 1)),
                                    thread_name_prefix="transfer") as pool:
                futures = [pool.submit(self._run, job, overall) for job in jobs]
                results = []
                for fut in futures:
                    res = fut.result()
                    results.append(res)
                    if on_done:
                        on_done(res)
        finally:
            if overall is not None:
                overall.close()
        return BulkResult(results, time.monotonic() - started)

    def submit(self, pool: ThreadPoolExecutor, job: CopyJob) -> Future[TransferResult]:
        """Queue one copy on the caller's pool (used by the staging-aware bulk copy)."""
        return pool.submit(self._run, job, None)

    # -- one file ------------------------------------------------------------------------------
    def _run(self, job: CopyJob, overall: tqdm | _Counter | None) -> TransferResult:
        res = TransferResult(job.src, job.dst)
        started = time.monotonic()
        bar: _Bar | None = None
        try:
            src_local, dst_local = is_local(job.src), is_local(job.dst)
            if src_local and not dst_local:
                backend, direction = self.backends.for_url(job.dst), "put"
            elif not src_local:
                if not dst_local:
                    raise UnsupportedURL(job.dst, "remote to remote copies are not supported: get, then put")
                backend, direction = self.backends.for_url(job.src), "get"
            else:
                backend, direction = self.backends.for_url(job.src), "get"
            res.backend = backend.name
            algo, expected = self._checksum_plan(job)
            res.checksum_type = algo
            bar = _Bar(Path(job.dst).name, None, overall, self.options.progress)
            box: dict = {}  # what the source told us, kept across attempts
            delays = self.options.retry.delays()
            while True:
                res.attempts += 1
                try:
                    if direction == "put":
                        if not res.size:
                            res.size = local_path(job.src).stat().st_size
                            bar.set_total(res.size)
                        self._put_once(backend, job, algo, expected, res.size, bar, res)
                    else:
                        self._get_once(backend, job, algo, expected, box, bar, res)
                    break
                except Exception as err:  # noqa: BLE001 - classified right below
                    if not is_transient(err):
                        raise
                    delay = next(delays, None)
                    if delay is None:
                        raise
                    log.info("%s: %s; retrying in %.1f s", job.src, err, delay)
                    self.sleep(delay)
            res.ok = True
        except ApplianceError as err:
            res.error, res.error_type, res.exit_code, res.exception = (
                _message(err, res.attempts), type(err).__name__, err.exit_code, err)
        except OSError as err:
            res.error, res.error_type, res.exit_code, res.exception = (
                f"{job.dst}: {err.strerror or err}", "OSError", 7, err)
        finally:
            if bar is not None:
                bar.close()
            res.seconds = time.monotonic() - started
        return res

    def _checksum_plan(self, job: CopyJob) -> tuple[str | None, str | None]:
        if job.expected:
            algo, value = parse_expected(job.expected)
            return algo, value
        algo = self.options.checksum
        return (normalise_algorithm(algo) if algo else None), None

    def _get_once(self, backend: TransferBackend, job: CopyJob, algo: str | None,
                  expected: str | None, box: dict, bar: _Bar, res: TransferResult) -> None:
        final = local_path(job.dst)
        if final.is_dir():
            final = final / job.src.rstrip("/").rsplit("/", 1)[-1]
            res.dst = str(final)
        if final.exists() and not self.options.overwrite:
            raise TransferError(str(final), "destination exists (use --overwrite)")
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_name(f".{final.name}.part")
        # Size and the storage's own checksum (GridFTP CKSM, HTTP Digest) are asked for in one
        # background thread while the bytes flow; asked again only if that failed.
        # (Asking GridFTP's CKSM only after the copy, so that it does not compete with sending
        # the bytes, measured no faster: docs/BENCHMARKS.md.)
        want = bool(algo) and expected is None
        info: Future = box.get("info")  # type: ignore[assignment]
        if info is None or (info.done() and info.exception() is not None):
            info = box["info"] = _background(_source_info, backend, job.src, algo, want)
        offset = 0
        if part.exists():
            have = part.stat().st_size
            size_now = info.result()[0].size if backend.supports_resume else None
            if size_now is not None and 0 < have <= size_now:
                offset = have
            else:
                part.unlink()
        if res.attempts == 1 or offset:
            res.resumed_from = max(res.resumed_from, offset)
        bar.reset(offset)
        log.debug("%s: downloading from byte %d with %s", job.src, offset, backend.name)
        try:
            sums = backend.download(job.src, part, offset, bar, [algo] if algo else [],
                                    writeback=self.options.fsync)
        except BaseException as err:
            # keep a partial file only where a later attempt can resume it: a transient error
            # after some bytes arrived; a missing or refused source leaves nothing behind
            if not getattr(err, "transient", False) or (part.exists() and part.stat().st_size == 0):
                part.unlink(missing_ok=True)
            raise
        log.debug("%s: downloaded (inline checksum: %s)", job.src, bool(sums))
        stat, source_sum = info.result()
        size = res.size = stat.size
        bar.set_total(size)
        got = part.stat().st_size
        if got != size:
            raise TransferError(job.src, f"short transfer: {got} of {size} bytes", transient=True)
        if self.options.fsync:
            log.debug("%s: syncing", job.src)
            with open(part, "rb+") as f:
                os.fsync(f.fileno())
            log.debug("%s: synced", job.src)
        if algo:
            actual = sums.get(algo) or file_checksum(part, algo)
            source = expected if expected is not None else source_sum
            log.debug("%s: source %s %s, destination %s", job.src, algo, source, actual)
            res.source_checksum, res.dest_checksum = source, actual
            if source is None:
                part.unlink()
                raise ChecksumUnavailable(job.src, algo)
            if source != actual:
                part.unlink()  # a wrong copy is never resumed
                raise ChecksumMismatch(job.src, f"{algo}:{source}", f"{algo}:{actual}")
        os.chmod(part, 0o666 & ~_umask())
        os.replace(part, final)
        if self.options.fsync:
            fsync_dir(final.parent)

    def _put_once(self, backend: TransferBackend, job: CopyJob, algo: str | None,
                  expected: str | None, size: int, bar: _Bar, res: TransferResult) -> None:
        src = local_path(job.src)
        dst = job.dst
        if dst.endswith("/"):
            dst = dst + src.name
            res.dst = dst
        if not self.options.overwrite:
            with contextlib.suppress(TransferError):
                backend.stat(dst)
                raise TransferError(dst, "destination exists (use --overwrite)")
        parent, _, name = dst.rpartition("/")
        tmp = f"{parent}/.{name}.part-{secrets.token_hex(4)}"
        local_sum: Future[str | None] | None = None
        if algo and expected is None:
            local_sum = _background(file_checksum, src, algo)
        bar.reset(0)
        try:
            backend.upload(src, tmp, bar)
            if algo:
                source = expected if expected is not None else local_sum.result()  # type: ignore[union-attr]
                remote = backend.checksum(tmp, algo)
                res.source_checksum, res.dest_checksum = source, remote
                if remote is None:
                    raise ChecksumUnavailable(dst, algo)
                if remote != source:
                    raise ChecksumMismatch(dst, f"{algo}:{source}", f"{algo}:{remote}")
            backend.rename(tmp, dst)
        except BaseException:
            with contextlib.suppress(Exception):
                backend.delete(tmp)
            raise


def _source_info(backend: TransferBackend, url: str, algo: str | None,
                 want_sum: bool) -> tuple[RemoteStat, str | None]:
    stat = backend.stat(url)
    if stat.is_dir:
        raise TransferError(url, "is a directory")
    return stat, (backend.checksum(url, algo) if want_sum and algo else None)


def _background(fn: Callable[..., Any], *args: object) -> Future[Any]:
    fut: Future[Any] = Future()

    def run() -> None:
        try:
            fut.set_result(fn(*args))
        except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
            fut.set_exception(err)

    threading.Thread(target=run, daemon=True).start()
    return fut


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _message(err: ApplianceError, attempts: int) -> str:
    text = str(err)
    if attempts > 1 and isinstance(err, (TransferError, ChecksumMismatch)):
        text += f" (gave up after {attempts} attempts)"
    return text
