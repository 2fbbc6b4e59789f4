"""Put a generated archive into our archive server, through the transfer layer (checksummed PUTs).

Each FITS file goes to ``<url>/<prefix>/<folder>/<name>``; the server extracts the catalog metadata
(project, observation, band as INSTRUME, position, date) from the headers at ingest, which is what
the ``match`` stage searches. ``truth.json`` stays local: the answer key is not an archive product.

Each file is PUT under its final name with the transfer layer's HTTP backend and its adler32 is
then asked from the server (``Want-Digest``) and compared with the local one. (The generic copy,
``Copier``, uploads to a hidden ``.name.part-*`` and renames it: the archive server extracts FITS
metadata only when a FITS name is written, not on MOVE, so those files would have no metadata.)
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

from appliance.pipeline.fitsimage import is_fits
from appliance.transfer.checksum import file_checksum
from appliance.transfer.credentials import Credentials
from appliance.transfer.engine import CopyJob
from appliance.transfer.result import BulkResult, TransferResult
from appliance.transfer.select import Backends


def ingest_jobs(root: Path, url: str, prefix: str = "alma") -> list[CopyJob]:
    root = Path(root).resolve()
    base = url.rstrip("/") + "/" + prefix.strip("/")
    jobs = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and is_fits(p.name):
            rel = p.relative_to(root).as_posix()
            jobs.append(CopyJob(p.as_uri(), f"{base}/{quote(rel)}"))
    return jobs


def _put(backends: Backends, job: CopyJob) -> TransferResult:
    src = Path(job.src.removeprefix("file://"))
    from urllib.parse import unquote

    src = Path(unquote(str(src)))
    res = TransferResult(job.src, job.dst, checksum_type="adler32")
    t0 = time.monotonic()
    try:
        backend = backends.for_url(job.dst)
        res.backend = backend.name
        res.source_checksum = file_checksum(src, "adler32")
        backend.upload(src, job.dst, lambda n: None)
        res.dest_checksum = backend.checksum(job.dst, "adler32")
        res.size = src.stat().st_size
        res.ok = res.dest_checksum == res.source_checksum
        if not res.ok:
            res.error = f"checksum mismatch: local adler32:{res.source_checksum}, server {res.dest_checksum}"
            res.exit_code = 4
    except Exception as err:  # noqa: BLE001 - one failed file, the others go on
        res.error, res.error_type = str(err), type(err).__name__
        res.exit_code = int(getattr(err, "exit_code", 9))
    res.seconds, res.attempts = time.monotonic() - t0, 1
    return res


def ingest(root: Path, url: str, prefix: str = "alma", credentials: Credentials | None = None,
           parallel: int = 4, progress: bool = True) -> BulkResult:
    from tqdm import tqdm

    backends = Backends(credentials or Credentials.discover())
    jobs = ingest_jobs(root, url, prefix)
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool, \
            tqdm(total=len(jobs), desc="ingest", unit="file", disable=not progress) as bar:
        results = []
        for r in pool.map(lambda j: _put(backends, j), jobs):
            results.append(r)
            bar.update(1)
    return BulkResult(results, time.monotonic() - t0)
