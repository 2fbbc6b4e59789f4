"""The project's archive server (``archive.server``) over HTTPS with the test CA, for staging tests.

Real clock sped up 600x (a 60 s tape mount takes 0.1 s); the test user's proxy maps to 'alice',
who may read, write and stage. ``on_tape(path)`` waits until a file has its tape copy and drops
the disk copy, so the file is NEARLINE (archiveinfo locality TAPE) and must be staged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pki import PKI
from tests.prereq import require

ISSUER = "https://tokens.test"
AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"


class Archive:
    def __init__(self, running, root: Path, token_key):
        self.running = running
        self.root = root
        self.token_key = token_key
        self.url = running.url.replace("https://", "davs://")
        self.engine = running.archive

    def put(self, path: str, data: bytes, tmp: Path) -> None:
        src = tmp / "ingest.bin"
        src.write_bytes(data)
        self.engine.ingest_local(src, path, owner="alice")

    def mint(self, scope: str, sub: str = "bob", lifetime: int = 3600) -> str:
        """A WLCG profile token signed by the issuer the archive trusts."""
        import jwt

        now = int(time.time())
        claims = {"iss": ISSUER, "sub": sub, "scope": scope, "iat": now, "nbf": now - 5,
                  "exp": now + lifetime, "wlcg.ver": "1.0", "aud": AUDIENCE}
        return jwt.encode(claims, self.token_key, algorithm="RS256")

    def wait_migrated(self, path: str, timeout: float = 30.0) -> None:
        file_id = self.engine.stat(path).file_id
        deadline = time.monotonic() + timeout
        while not self.engine.catalog.tape_replicas(file_id):
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} did not reach tape within {timeout} s")
            time.sleep(0.05)

    def on_tape(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.engine.evict_path(path):
                assert self.engine.locality(path) in ("TAPE", "NEARLINE"), self.engine.locality(path)
                return
            time.sleep(0.05)
        raise AssertionError(f"{path} did not reach tape within {timeout} s")


@pytest.fixture(scope="session")
def archive(pki: PKI, tmp_path_factory) -> Iterator[Archive]:
    try:
        from archive.config import load_config
        from archive.server import serve_in_thread
    except ImportError as err:  # the archive package is built in parallel
        require(False, f"archive server not importable: {err}")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    root = tmp_path_factory.mktemp("lta")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = root / "issuer.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    gridmap = root / "gridmap"
    gridmap.write_text(pki.gridmap_line("alice"))
    cfg = load_config(None, env={}, **{
        "root": str(root / "root"),
        "server": {"port": 0, "tls_cert": str(pki.host_cert), "tls_key": str(pki.host_key),
                   "ca_dir": str(pki.cert_dir), "sitename": "TEST-LTA"},
        "clock": {"mode": "real", "speed": 600.0},
        "tape": {"cartridges": 2, "capacity_bytes": 10**10, "drives": 2},
        "migration": {"max_age_seconds": 30},
        "cache": {"capacity_bytes": 10**10},
        "auth": {"gridmap_file": str(gridmap),
                 "token_keys": [{"issuer": ISSUER, "algorithm": "RS256", "public_key_file": str(pub)}],
                 "token_audience": [AUDIENCE],
                 "identities": {"alice": ["storage.read:/", "storage.create:/", "storage.modify:/",
                                          "storage.stage:/"]}},
    })
    running = serve_in_thread(cfg)
    yield Archive(running, root, key)
    running.stop()
