"""gfal2 (Debian's python3-gfal2) behind the transfer seam: gsiftp, ftp, davs/https, root, srm.

gfal2 is the WLCG data-management library (FTS and the gfal-* tools use it), so the protocol
details (GridFTP restart/CKSM, davix for WebDAV) are those our users already rely on. It copies
whole files: a failed attempt starts again from zero (``supports_resume = False``). gfal2
contexts are pooled: each operation borrows one, so cached sessions (and their GSI or TLS
handshakes) are reused, and no context is used by two operations at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import stat as statmod
from collections.abc import Iterable
from pathlib import Path

from appliance.transfer.base import Progress, RemoteStat
from appliance.transfer.credentials import Credentials
from appliance.transfer.errors import NotFound, PermissionDenied, TransferError
from appliance.transfer.follow import Follower

try:  # Debian's binding, exposed to the venv; absent elsewhere
    import gfal2
except ImportError:  # pragma: no cover - depends on the machine
    gfal2 = None

# errno values after which another attempt cannot help
_PERMANENT = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EEXIST, errno.EISDIR, errno.ENOTDIR,
              errno.EINVAL, errno.ENOSYS, errno.ENOTEMPTY, errno.ENOSPC, errno.EFBIG, errno.ENOTSUP}


def available() -> bool:
    return gfal2 is not None


def _error(url: str, what: str, err: Exception) -> TransferError:
    code = getattr(err, "code", None)
    message = getattr(err, "message", None) or str(err)
    message = clean_message(message)
    if code == errno.ENOENT:
        return NotFound(url, f"{what}: {message}")
    if code in (errno.EACCES, errno.EPERM):
        return PermissionDenied(url, f"{what}: {message}")
    return TransferError(url, f"{what}: {message}", transient=code not in _PERMANENT)


def clean_message(message: str) -> str:
    """Globus errors repeat themselves over several lines; keep the part a person needs."""
    text = " ".join(message.split())
    if "Connection refused" in text:
        return "connection refused"
    if "Valid credentials could not be found" in text:
        return "no valid X.509 credentials (proxy missing or expired?)"
    if "GSS Major Status" in text:
        m = re.search(r"(globus_gsi_\w+: [^:]*?(?:expired|not trusted|untrusted|CA)[^.]*)", text)
        return "GSI authentication failed" + (f": {m.group(1)}" if m else "")
    m = re.search(r"GridFTP-Error-String: (.*?)(?: 5\d\d[ -]|$)", text)
    if m:
        return m.group(1).strip()
    m = re.search(r"the server responded with an error (\d{3}) (.*)", text)
    if m:
        return f"server error {m.group(1)}: {_server_reason(m.group(2))}"
    return _shorten(text, 300)


def _shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


def _server_reason(body: str) -> str:
    """The person-readable reason in a GridFTP multi-line reply: Globus repeats it as
    ``500-globus_xio: Unable to open file F 500-globus_xio: System error in open: No such file
    or directory 500-...``; keep 'Unable to open file F: No such file or directory'."""
    parts = [p.strip() for p in re.split(r"\s*\b\d{3}[- ]", " " + body) if p.strip()]
    xio = [p.removeprefix("globus_xio:").strip() for p in parts if p.startswith("globus_xio:")]
    what = next((p for p in xio if not p.startswith(("System error", "A system call failed"))), None)
    errno_text = next((p.rsplit(": ", 1)[-1] for p in xio if p.startswith(("System error", "A system call"))), None)
    if what or errno_text:
        return ": ".join(x for x in (what, errno_text) if x)
    return _shorten(" ".join(parts) or body, 200)


class GfalBackend:
    name = "gfal2"
    schemes = frozenset({"gsiftp", "ftp", "davs", "https", "dav", "http", "root", "xroot", "srm"})
    supports_resume = False

    def __init__(self, credentials: Credentials | None = None, timeout: int = 3600,
                 streams: int = 1):
        if gfal2 is None:
            raise TransferError("gfal2://", "gfal2 is not installed (Debian package python3-gfal2)")
        self.credentials = credentials or Credentials()
        self.timeout, self.streams = timeout, streams
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        if self.credentials.ca_dir:
            # globus GSI and davix read the trusted CA directory from the environment only.
            os.environ["X509_CERT_DIR"] = self.credentials.ca_dir

    @contextlib.contextmanager
    def ctx(self):
        """A context for one operation: pooled, so sessions (and GSI handshakes) are reused,
        never shared by two operations at once."""
        try:
            c = self._pool.get_nowait()
        except queue.Empty:
            c = self._new_context()
        try:
            yield c
        except gfal2.GError as err:
            if err.code not in _PERMANENT:  # its cached session may be dead: drop the context
                raise
            self._pool.put(c)
            raise
        else:
            self._pool.put(c)

    def _new_context(self):
        c = gfal2.creat_context()
        cred = self.credentials
        if cred.token:
            for prefix in ("davs://", "https://", "root://", "xroot://"):
                c.cred_set(prefix, c.cred_new("BEARER", cred.token))
        if cred.proxy:
            c.set_opt_string("X509", "CERT", str(cred.proxy))
            c.set_opt_string("X509", "KEY", str(cred.proxy))
        if cred.ca_dir:
            c.set_opt_string("X509", "CA_PATH", cred.ca_dir)
        if cred.insecure:
            c.set_opt_boolean("HTTP PLUGIN", "INSECURE", True)
        c.set_opt_integer("CORE", "NAMESPACE_TIMEOUT", 60)
        c.set_opt_integer("GRIDFTP PLUGIN", "OPERATION_TIMEOUT", 120)
        return c

    def _params(self, c):
        p = c.transfer_parameters()
        p.overwrite = True
        p.create_parent = True
        p.timeout = self.timeout
        p.nbstreams = self.streams
        p.set_checksum(gfal2.checksum_mode.none, "", "")  # the engine compares end to end itself
        return p

    def stat(self, url: str) -> RemoteStat:
        try:
            with self.ctx() as c:
                st = c.stat(url)
        except gfal2.GError as err:
            raise _error(url, "stat", err) from err
        return RemoteStat(url, int(st.st_size), statmod.S_ISDIR(st.st_mode), float(st.st_mtime))

    def checksum(self, url: str, algorithm: str) -> str | None:
        try:
            with self.ctx() as c:
                value = c.checksum(url, algorithm.upper())
        except gfal2.GError as err:
            if err.code in (errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
                return None
            raise _error(url, "checksum", err) from err
        value = (value or "").strip().lower()
        if not value:
            return None
        return value.rjust(8, "0") if algorithm == "adler32" else value

    def download(self, url: str, dest: Path, offset: int, progress: Progress,
                 algorithms: Iterable[str] = (), writeback: bool = True) -> dict[str, str]:
        if offset:
            raise TransferError(url, "gfal2 backend cannot resume", transient=False)
        follower = Follower(dest, progress, algorithms, writeback)
        follower.start()
        try:
            with self.ctx() as c:
                c.filecopy(self._params(c), url, dest.resolve().as_uri())
        except gfal2.GError as err:
            raise _error(url, "download", err) from err
        finally:
            sums = follower.stop()
        return sums

    def upload(self, src: Path, url: str, progress: Progress) -> None:
        size = src.stat().st_size
        try:
            with self.ctx() as c:
                c.filecopy(self._params(c), src.resolve().as_uri(), url)
        except gfal2.GError as err:
            raise _error(url, "upload", err) from err
        progress(size)

    def rename(self, src_url: str, dst_url: str) -> None:
        try:
            with self.ctx() as c:
                c.rename(src_url, dst_url)
        except gfal2.GError as err:
            raise _error(src_url, "rename", err) from err

    def delete(self, url: str) -> None:
        try:
            with self.ctx() as c:
                c.unlink(url)
        except gfal2.GError as err:
            raise _error(url, "delete", err) from err

    def mkdir(self, url: str) -> None:
        try:
            with self.ctx() as c:
                c.mkdir_rec(url, 0o755)
        except gfal2.GError as err:
            if err.code != errno.EEXIST:
                raise _error(url, "mkdir", err) from err

    def listdir(self, url: str) -> list[RemoteStat]:
        base = url.rstrip("/")
        try:
            out = []
            with self.ctx() as c:
                d = c.opendir(url)
                while True:
                    dirent, st = d.readpp()
                    if dirent is None:
                        break
                    if dirent.d_name in (".", ".."):
                        continue
                    out.append(RemoteStat(f"{base}/{dirent.d_name}", int(st.st_size),
                                          statmod.S_ISDIR(st.st_mode), float(st.st_mtime)))
        except gfal2.GError as err:
            raise _error(url, "list", err) from err
        return sorted(out, key=lambda s: s.url)


