"""Session fixtures shared by the transfer, staging and dataclient tests (imported by conftests)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appliance.transfer.servers import GridFTPServer, NginxServer
from tests.pki import PKI, make_pki
from tests.prereq import require


@pytest.fixture(scope="session")
def pki() -> Iterator[PKI]:
    # Readable by 'nobody' (the GridFTP session user re-reads the CA directory after setuid);
    # the keys themselves stay 0600.
    root = Path(tempfile.mkdtemp(prefix="dc-pki-", dir="/tmp"))
    os.chmod(root, 0o755)
    yield make_pki(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def proxy(pki: PKI, tmp_path_factory) -> Path:
    return pki.make_proxy(tmp_path_factory.mktemp("proxy") / "x509up")


@pytest.fixture(scope="session")
def gridftp(pki: PKI, tmp_path_factory) -> Iterator[GridFTPServer]:
    require(shutil.which("globus-gridftp-server") is not None,
            "globus-gridftp-server (Debian globus-gridftp-server-progs) not installed")
    server = GridFTPServer(pki, tmp_path_factory.mktemp("gridftp"))
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def nginx(pki: PKI, tmp_path_factory) -> Iterator[NginxServer]:
    require(shutil.which("nginx") is not None, "nginx not installed")
    server = NginxServer(pki, tmp_path_factory.mktemp("web"))
    server.start()
    yield server
    server.stop()
