"""Plain HTTP(S) and WebDAV (``http``, ``https``, ``dav``, ``davs``) with requests.

The fallback when gfal2 is not installed, and the backend that resumes: a broken download goes on
with ``Range: bytes=N-``. Checksums come from RFC 3230 (``Want-Digest`` on HEAD, ``Digest`` in the
answer), as dCache, EOS, StoRM and our archive answer them. Authentication: ``Authorization:
Bearer`` when a token is present, else the X.509 proxy as TLS client certificate.
"""

from __future__ import annotations

import contextlib
import queue
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import requests
import urllib3

from appliance.fsutil import WRITEBACK_STEP, start_writeback
from appliance.transfer.base import Progress, RemoteStat
from appliance.transfer.checksum import BLOCK, WANT_DIGEST_NAME, new_digester, parse_digest_header
from appliance.transfer.credentials import Credentials
from appliance.transfer.errors import NotFound, PermissionDenied, TransferError

_SCHEME = {"davs": "https", "dav": "http", "https": "https", "http": "http"}
_DAV = "{DAV:}"
_PROPFIND_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
    "<D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"
)


def to_http(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((_SCHEME[parts.scheme], *parts[1:]))


class _ChunkedReader:
    """File wrapper for PUT bodies: big reads (http.client would send 8 KiB blocks) and progress."""

    def __init__(self, f: BinaryIO, size: int, progress: Progress):
        self._f, self._size, self._progress = f, size, progress

    def __len__(self) -> int:
        return self._size

    def read(self, _amt: int = -1) -> bytes:
        data = self._f.read(BLOCK)
        if data:
            self._progress(len(data))
        return data


def raise_for(url: str, resp: requests.Response, what: str) -> None:
    code = resp.status_code
    if code < 400:
        return
    detail = f"{what}: HTTP {code} {resp.reason}"
    try:
        body = resp.json()
        if isinstance(body, dict) and body.get("detail"):
            detail += f" ({body['detail']})"
    except ValueError:
        pass
    if code in (404, 410):
        raise NotFound(url, detail)
    if code in (401, 403):
        raise PermissionDenied(url, detail)
    raise TransferError(url, detail, transient=code in (408, 429) or (code >= 500 and code != 501))


class _Session(requests.Session):
    """requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override ``session.verify``; our
    CA directory must win, so it is passed with every request."""

    def request(self, method, url, **kw):  # type: ignore[override]
        kw.setdefault("verify", self.verify)
        return super().request(method, url, **kw)


def make_session(c: Credentials) -> requests.Session:
    """A requests session that authenticates and verifies servers as our credentials say."""
    s = _Session()
    s.verify = False if c.insecure else (c.ca_dir or True)
    if c.token:
        s.headers["Authorization"] = f"Bearer {c.token}"
    elif c.proxy:
        s.cert = str(c.proxy)  # proxy cert + key + chain in one PEM, as TLS client credential
    s.headers["User-Agent"] = "dataclient (astro-appliance)"
    return s


class HttpBackend:
    name = "http"
    schemes = frozenset(_SCHEME)
    supports_resume = True

    def __init__(self, credentials: Credentials | None = None, timeout: float = 60.0):
        self.credentials = credentials or Credentials()
        self.timeout = timeout
        self._pool: queue.SimpleQueue = queue.SimpleQueue()

    # -- plumbing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self) -> Iterator[requests.Session]:
        """Pooled sessions: kept-alive TLS connections are reused across threads, one user at a time."""
        try:
            s = self._pool.get_nowait()
        except queue.Empty:
            s = make_session(self.credentials)
        try:
            yield s
        except (requests.ConnectionError, requests.Timeout):
            s.close()  # its kept-alive connections may be dead: start afresh next time
            raise
        else:
            self._pool.put(s)

    def _request(self, method: str, url: str, what: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        try:
            with self.session() as s:
                return s.request(method, to_http(url), **kw)
        except requests.exceptions.SSLError as err:
            raise TransferError(url, f"{what}: TLS failure: {err}") from err
        except (requests.ConnectionError, requests.Timeout) as err:
            raise TransferError(url, f"{what}: {_short(err)}", transient=True) from err

    # -- the seam -----------------------------------------------------------------------------
    def stat(self, url: str) -> RemoteStat:
        # HEAD first: cheap, and every server answers a missing file with a plain 404 to it;
        # then PROPFIND (WebDAV) to tell files from collections.
        head = self._request("HEAD", url, "stat", allow_redirects=False)
        if head.status_code in (404, 410, 401, 403):
            raise_for(url, head, "stat")
        resp = self._request("PROPFIND", url, "stat", headers={"Depth": "0"}, data=_PROPFIND_BODY)
        if resp.status_code in (405, 501, 400):  # plain HTTP server: HEAD told the size
            raise_for(url, head, "stat")
            return RemoteStat(url, int(head.headers.get("Content-Length", 0)), False)
        raise_for(url, resp, "stat")
        items = _parse_multistatus(url, resp.content)
        if not items:
            raise TransferError(url, "stat: empty PROPFIND answer")
        return items[0]

    def checksum(self, url: str, algorithm: str) -> str | None:
        resp = self._request("HEAD", url, "checksum",
                             headers={"Want-Digest": WANT_DIGEST_NAME.get(algorithm, algorithm)})
        raise_for(url, resp, "checksum")
        return parse_digest_header(resp.headers.get("Digest"), algorithm)

    def download(self, url: str, dest: Path, offset: int, progress: Progress,
                 algorithms: Iterable[str] = (), writeback: bool = True) -> dict[str, str]:
        digesters = {a: new_digester(a) for a in algorithms}
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self._request("GET", url, "download", headers=headers, stream=True)
        with resp:
            if offset and resp.status_code == 200:  # server ignored Range: start again
                offset = 0
            if resp.status_code == 416:
                raise TransferError(url, "download: range not satisfiable (file changed?)", transient=True)
            raise_for(url, resp, "download")
            with open(dest, "r+b" if offset else "wb") as out:
                if offset:
                    while digesters and (chunk := out.read(BLOCK)):
                        for d in digesters.values():
                            d.update(chunk)
                    out.seek(offset)
                    out.truncate()
                try:
                    self._stream(resp, out, offset, digesters.values(), progress, writeback)
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        requests.Timeout, urllib3.exceptions.HTTPError, OSError) as err:
                    raise TransferError(url, f"download interrupted: {_short(err)}", transient=True) from err
        return {a: d.hexdigest() for a, d in digesters.items()}

    @staticmethod
    def _stream(resp: requests.Response, out: BinaryIO, offset: int, digesters, progress: Progress,
                writeback: bool) -> None:
        """Body -> file through one reused buffer (``BLOCK``, sized to stay in the CPU cache);
        writeback is started as we go (``appliance.fsutil.start_writeback``)."""
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        raw = resp.raw
        fd = out.fileno()
        synced = written = offset
        encoded = resp.headers.get("Content-Encoding", "identity") not in ("identity", "")
        # http.client's response reads straight into our buffer (urllib3's readinto reads, then
        # copies); the byte count is checked by the engine against the size the server stated.
        direct = getattr(raw, "_fp", None)
        readinto = direct.readinto if (direct is not None and hasattr(direct, "readinto")
                                       and not encoded) else raw.readinto
        while True:
            if encoded:  # let urllib3 decode; rare for data files
                chunk = raw.read(BLOCK, decode_content=True)
                n = len(chunk)
                if n:
                    view[:n] = chunk
            else:
                n = readinto(buf)
            if not n:
                break
            out.write(view[:n])
            for d in digesters:
                d.update(view[:n])
            written += n
            progress(n)
            if writeback and written - synced >= WRITEBACK_STEP:
                out.flush()
                start_writeback(fd, synced, written - synced)
                synced = written

    def upload(self, src: Path, url: str, progress: Progress) -> None:
        self._make_parents(url)
        size = src.stat().st_size
        with open(src, "rb") as f:
            resp = self._request("PUT", url, "upload", data=_ChunkedReader(f, size, progress),
                                 headers={"Content-Length": str(size)})
        raise_for(url, resp, "upload")

    def rename(self, src_url: str, dst_url: str) -> None:
        resp = self._request("MOVE", src_url, "rename",
                             headers={"Destination": to_http(dst_url), "Overwrite": "T"})
        raise_for(src_url, resp, "rename")

    def delete(self, url: str) -> None:
        raise_for(url, self._request("DELETE", url, "delete"), "delete")

    def mkdir(self, url: str) -> None:
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        path = ""
        for seg in segments:
            path += "/" + seg
            u = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
            resp = self._request("MKCOL", u, "mkdir")
            if resp.status_code == 409:  # nginx wants the trailing slash on collections
                resp = self._request("MKCOL", u + "/", "mkdir")
            if resp.status_code in (301, 405):
                continue  # exists already
            raise_for(u, resp, "mkdir")

    def listdir(self, url: str) -> list[RemoteStat]:
        resp = self._request("PROPFIND", url, "list", headers={"Depth": "1"}, data=_PROPFIND_BODY)
        raise_for(url, resp, "list")
        items = _parse_multistatus(url, resp.content)
        base = urlsplit(to_http(url)).path.rstrip("/")
        return [i for i in items if urlsplit(i.url).path.rstrip("/") != base]

    def _make_parents(self, url: str) -> None:
        parent = url.rstrip("/").rsplit("/", 1)[0]
        if urlsplit(parent).path in ("", "/"):
            return
        try:
            if self.stat(parent).is_dir:
                return
        except TransferError:  # absent, or a plain HTTP server that will not describe directories
            pass
        self.mkdir(parent)


def _short(err: Exception) -> str:
    text = str(err)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return text[:200]


def _parse_multistatus(url: str, body: bytes) -> list[RemoteStat]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as err:
        raise TransferError(url, f"malformed PROPFIND answer: {err}") from err
    parts = urlsplit(url)
    out = []
    for resp in root.iter(f"{_DAV}response"):
        href = unquote(resp.findtext(f"{_DAV}href") or "")
        # resolved as https (urljoin leaves an href bare for schemes it does not know, such as
        # davs), then given back the caller's scheme when it names the same server
        j = urlsplit(urljoin(urlunsplit(("https", parts.netloc, parts.path, "", "")), href))
        full = urlunsplit((parts.scheme if j.netloc == parts.netloc else j.scheme, j.netloc, j.path,
                           "", ""))
        size, is_dir, mtime = 0, False, None
        for prop in resp.iter(f"{_DAV}prop"):
            if prop.find(f"{_DAV}resourcetype/{_DAV}collection") is not None:
                is_dir = True
            length = prop.findtext(f"{_DAV}getcontentlength")
            if length and length.strip().isdigit():
                size = int(length)
            lm = prop.findtext(f"{_DAV}getlastmodified")
            if lm:
                try:
                    mtime = parsedate_to_datetime(lm).timestamp()
                except (TypeError, ValueError):
                    pass
        out.append(RemoteStat(full, size, is_dir, mtime))
    return out
