"""A local apt repository made from the package store, for builds that touch no mirror.

Every image build installs from one of these, online or offline, so the two paths are the same
code: the online path only fills the store first. The repository has exactly the locked .deb
files, one suite named like the Debian suite (mmdebstrap selects essential and priority-required
packages by suite), and an override file with the archive's priority and section of each
package (see ``packages``). ``apt-ftparchive`` (apt-utils) writes the indices.

It is trusted without a signature (``[trusted=yes]``) on purpose: it lives for one build, is
read over loopback or a bind mount only, and every file in it was checked against the sha256
in the committed ``images.lock`` before it entered the store; apt still checks every .deb
against the Packages index and the index against the Release file. A throw-away signing key
made by the same process would add no trust.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from appliance.errors import ConfigError
from appliance.fsutil import link_or_copy
from appliance.images.packages import LockedDeb, PackagesMissing, PackageStore


def make_repository(debs: Sequence[LockedDeb], store: PackageStore, dest: Path, suite: str,
                    architecture: str, image: str = "?") -> Path:
    """Lay out ``dest`` as a one-suite repository (``dists/<suite>/main``, ``pool/main``)."""
    missing = store.missing(debs)
    if missing:
        raise PackagesMissing(image, missing)
    if shutil.which("apt-ftparchive") is None:
        raise ConfigError("apt-ftparchive is not installed (apt-get install apt-utils; `make deps` does it)")
    pool = dest / "pool" / "main"
    index_dir = dest / "dists" / suite / "main" / f"binary-{architecture}"
    pool.mkdir(parents=True, exist_ok=True)
    index_dir.mkdir(parents=True, exist_ok=True)
    override = dest / "override"
    lines = []
    for deb in sorted(debs, key=lambda d: (d.package, d.architecture)):
        link = pool / deb.deb_name
        if not link.exists():
            link_or_copy(store.path(deb.sha256), link)
        lines.append(f"{deb.package} {deb.priority} {deb.section}")
    override.write_text("\n".join(sorted(set(lines))) + "\n")
    run = functools.partial(subprocess.run, cwd=dest, capture_output=True, text=True)
    packages = run(["apt-ftparchive", "packages", "pool", "override"])
    if packages.returncode != 0:
        raise ConfigError(f"apt-ftparchive packages in {dest} failed: {packages.stderr.strip()[-400:]}")
    (index_dir / "Packages").write_text(packages.stdout)
    release = run(["apt-ftparchive",
                   "-o", f"APT::FTPArchive::Release::Suite={suite}",
                   "-o", f"APT::FTPArchive::Release::Codename={suite}",
                   "-o", "APT::FTPArchive::Release::Components=main",
                   "-o", f"APT::FTPArchive::Release::Architectures={architecture}",
                   "release", f"dists/{suite}"])
    if release.returncode != 0:
        raise ConfigError(f"apt-ftparchive release in {dest} failed: {release.stderr.strip()[-400:]}")
    (dest / "dists" / suite / "Release").write_text(release.stdout)
    return dest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` read-only over HTTP on 127.0.0.1 (a free port) for one build."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="apt-repo", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
