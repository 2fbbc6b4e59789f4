"""Put a generated archive into our archive server, through the transfer layer (checksummed PUTs).

Each FITS file goes to ``<url>/<prefix>/<folder>/<name>``; the server extracts the catalog metadata
(project, observation, band as INSTRUME, position, date) from the headers at ingest, which is what
the ``match`` stage searches (also for a file moved into place: the transfer layer uploads to a
temporary name and renames it). ``truth.json`` stays local: the answer key is not an archive
product.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from appliance.pipeline.fitsimage import is_fits
from appliance.transfer.credentials import Credentials
from appliance.transfer.engine import Copier, CopyJob, CopyOptions


def ingest_jobs(root: Path, url: str, prefix: str = "alma") -> list[CopyJob]:
    root = Path(root).resolve()
    base = url.rstrip("/") + "/" + prefix.strip("/")
    jobs = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and is_fits(p.name):
            rel = p.relative_to(root).as_posix()
            jobs.append(CopyJob(p.as_uri(), f"{base}/{quote(rel)}"))
    return jobs


def ingest(root: Path, url: str, prefix: str = "alma", credentials: Credentials | None = None,
           parallel: int = 4, progress: bool = True):  # noqa: ANN201 - a transfer BulkResult
    copier = Copier(credentials or Credentials.discover(),
                    CopyOptions(parallel=parallel, progress=progress))
    return copier.copy_many(ingest_jobs(root, url, prefix))
