"""Which backend serves a URL: by scheme and by what is installed, so callers never choose.

Default choice, by measurement on the project's archive and nginx (docs/BENCHMARKS.md):

* http, https, dav, davs: the requests backend: it resumes with Range, and it was faster than
  gfal2's davix path (which adds a macaroon POST, PROPFIND and HEAD per file) both for one big
  file and for many files in parallel;
* gsiftp, ftp: globus-url-copy moves the bytes, gfal2 does the rest (see ``globus.py``), when
  both are installed and a proxy is at hand; else gfal2 alone;
* root, xroot, srm: gfal2; file:// and paths: the local backend.

``prefer`` overrides per scheme (``{"davs": "gfal2"}``) or for all (``{"*": "gfal2"}``); the CLI
exposes it as ``--backend`` and per site as ``backend:``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from appliance.transfer.base import GRIDFTP_SCHEMES, TransferBackend
from appliance.transfer.credentials import Credentials
from appliance.transfer.errors import UnsupportedURL
from appliance.transfer.local import LocalBackend

BACKEND_NAMES = ("gfal2", "globus", "http", "local")
HTTP_SCHEMES = frozenset({"http", "https", "dav", "davs"})


# The gfal2 binding (glib and its plugins) and the GridFTP modules are imported only when a URL
# needs them: an HTTP or local copy starts without them.
def _gfal():  # noqa: ANN202 - the module
    from appliance.transfer import gfal

    return gfal


def _globus():  # noqa: ANN202 - the module
    from appliance.transfer import globus

    return globus


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    return "" if len(scheme) <= 1 else scheme  # "C:" style or bare path -> local


def is_local(url: str) -> bool:
    return scheme_of(url) in ("", "file")


class Backends:
    """Creates each backend once and hands out the right one per URL."""

    def __init__(self, credentials: Credentials | None = None,
                 prefer: Mapping[str, str] | None = None, gfal_streams: int = 1):
        self.credentials = credentials or Credentials()
        self.prefer = {k.lower(): v for k, v in (prefer or {}).items()}
        self.gfal_streams = gfal_streams
        self._made: dict[str, TransferBackend] = {}
        self._lock = threading.Lock()

    def _make(self, name: str) -> TransferBackend:
        if name == "globus":
            self._make("gfal2")  # its namespace operations
        with self._lock:
            if name not in self._made:
                if name == "gfal2":
                    self._made[name] = _gfal().GfalBackend(self.credentials, streams=self.gfal_streams)
                elif name == "globus":
                    self._made[name] = _globus().GlobusBackend(
                        self.credentials, self.gfal_streams, namespace=self._made.get("gfal2"))
                elif name == "http":
                    from appliance.transfer.http import HttpBackend  # requests: only when used

                    self._made[name] = HttpBackend(self.credentials)
                elif name == "local":
                    self._made[name] = LocalBackend(self.credentials)
                else:
                    raise ValueError(f"unknown transfer backend {name!r} (known: {BACKEND_NAMES})")
            return self._made[name]

    def name_for(self, url: str) -> str:
        scheme = scheme_of(url)
        if scheme in ("", "file"):
            return "local"
        wanted = self.prefer.get(scheme) or self.prefer.get("*")
        if wanted and wanted != "auto":
            if wanted == "gfal2" and not _gfal().available():
                raise UnsupportedURL(url, "backend gfal2 requested but python3-gfal2 is not installed")
            return wanted
        if scheme in HTTP_SCHEMES:  # resumes, and measured faster than davix here
            return "http"
        gfal = _gfal()
        if (scheme in GRIDFTP_SCHEMES and gfal.available() and _globus().available()
                and self.credentials.proxy):
            return "globus"
        if gfal.available() and scheme in gfal.GfalBackend.schemes:
            return "gfal2"
        raise UnsupportedURL(url, f"no transfer backend for {scheme}:// here"
                             + ("" if gfal.available() else " (gfal2 is not installed)"))

    def for_url(self, url: str) -> TransferBackend:
        return self._make(self.name_for(url))
