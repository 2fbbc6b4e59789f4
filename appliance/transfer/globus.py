"""GridFTP data movement with Globus' own client, ``globus-url-copy`` (Debian globus-gass-copy-progs).

Why a second GridFTP backend: gfal2 2.21 moves gsiftp<->file through its POSIX layer ("streamed"
copy), measured here at about half the speed of globus-url-copy on the same server; gfal2 copies
natively only between two GridFTP servers. So the bytes go through globus-url-copy, as INFN's
dataclient did, while everything else (stat, server checksum via CKSM, rename, delete, listing)
stays with gfal2. Chosen automatically for gsiftp/ftp when both are installed and a proxy exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from appliance.transfer.base import GRIDFTP_SCHEMES, Progress, RemoteStat
from appliance.transfer.credentials import Credentials
from appliance.transfer.errors import NotFound, PermissionDenied, TransferError
from appliance.transfer.follow import Follower
from appliance.transfer.gfal import GfalBackend, clean_message


def available() -> bool:
    return shutil.which("globus-url-copy") is not None


def _error(url: str, what: str, text: str) -> TransferError:
    flat = " ".join(text.split())
    if re.search(r"No such file|PATH_NOT_FOUND|not found", flat, re.I):
        return NotFound(url, f"{what}: {clean_message(flat)}")
    if re.search(r"Permission denied|PERMISSION_DENIED|authorization|Authentication", flat, re.I):
        return PermissionDenied(url, f"{what}: {clean_message(flat)}")
    return TransferError(url, f"{what}: {clean_message(flat) or 'globus-url-copy failed'}", transient=True)


class GlobusBackend:
    name = "globus-url-copy"
    schemes = GRIDFTP_SCHEMES
    supports_resume = True  # -partial-offset N: the rest is written after the bytes already there

    def __init__(self, credentials: Credentials | None = None, streams: int = 1,
                 namespace: GfalBackend | None = None):
        self.credentials = credentials or Credentials()
        self.streams = streams
        self.namespace = namespace or GfalBackend(self.credentials)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.credentials.proxy:
            env["X509_USER_PROXY"] = str(self.credentials.proxy)
        if self.credentials.ca_dir:
            env["X509_CERT_DIR"] = self.credentials.ca_dir
        return env

    def _run(self, url: str, what: str, src: str, dst: str, offset: int = 0) -> None:
        cmd = ["globus-url-copy", "-cd"]
        if offset:
            cmd += ["-partial-offset", str(offset)]
        if url.startswith("gsiftp:"):
            # MODE E (extended block mode, GridFTP only; plain FTP servers lack it): on the
            # development machine a 1 GiB get took ~0.6 s of kernel time instead of ~1.3 s in
            # the default stream mode, and 1.4-1.6 s instead of 1.9-2.2 s of wall time.
            cmd.append("-fast")
        if self.streams > 1:
            cmd += ["-p", str(self.streams)]
        proc = subprocess.run([*cmd, src, dst], env=self._env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise _error(url, what, proc.stderr or proc.stdout)

    # data: globus-url-copy
    def download(self, url: str, dest: Path, offset: int, progress: Progress,
                 algorithms: Iterable[str] = (), writeback: bool = True) -> dict[str, str]:
        if offset:
            os.truncate(dest, offset)  # whatever lies beyond the resume point is redone
        # Several streams (MODE E) may land blocks out of order, leaving holes in the growing
        # file that the follower would hash: then the engine checksums the finished file.
        inline = algorithms if self.streams == 1 else ()
        follower = Follower(dest, progress, inline, writeback, resumed_from=offset)
        follower.start()
        try:
            self._run(url, "download", url, dest.resolve().as_uri(), offset)
        finally:
            sums = follower.stop()
        return sums

    def upload(self, src: Path, url: str, progress: Progress) -> None:
        self._run(url, "upload", src.resolve().as_uri(), url)
        progress(src.stat().st_size)

    # namespace: gfal2
    def stat(self, url: str) -> RemoteStat:
        return self.namespace.stat(url)

    def checksum(self, url: str, algorithm: str) -> str | None:
        return self.namespace.checksum(url, algorithm)

    def rename(self, src_url: str, dst_url: str) -> None:
        self.namespace.rename(src_url, dst_url)

    def delete(self, url: str) -> None:
        self.namespace.delete(url)

    def mkdir(self, url: str) -> None:
        self.namespace.mkdir(url)

    def listdir(self, url: str) -> list[RemoteStat]:
        return self.namespace.listdir(url)
