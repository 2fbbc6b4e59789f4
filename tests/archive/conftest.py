"""Fixtures of the archive tests: a configured archive on a simulated clock, in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from archive.clock import SimClock
from archive.config import ArchiveConfig, load_config
from archive.engine import Archive


def sim_config(root: Path, **sections) -> ArchiveConfig:
    data = {
        "root": str(root),
        "clock": {"mode": "simulated"},
        "tape": {"cartridges": 3, "capacity_bytes": 50_000_000, "drives": 2,
                 "mount_seconds": 60, "unmount_seconds": 60},
        "migration": {"max_age_seconds": 300, "batch_files": 1000},
        "cache": {"capacity_bytes": 10_000_000},
    }
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return load_config(None, env={}, **data)


@pytest.fixture
def make_archive(tmp_path):
    made: list[Archive] = []

    def make(sub: str = "lta", **sections) -> Archive:
        cfg = sim_config(tmp_path / sub, **sections)
        a = Archive(cfg, clock=SimClock())
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()


# -- a real server over HTTPS, shared by the protocol tests ---------------------------------------
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from tests.pki import make_pki  # noqa: E402

ISSUER = "https://tokens.test"
ALL_SCOPES = "storage.read:/ storage.create:/ storage.modify:/ storage.stage:/"


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def token_key(tmp_path_factory):
    """An RS256 signing key; the server trusts its public half (config auth.token_keys)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = tmp_path_factory.mktemp("tokkey") / "issuer.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pub


@pytest.fixture(scope="session")
def mint(token_key):
    key, _ = token_key

    def mint(scope: str = ALL_SCOPES, sub: str = "alice", lifetime: float = 3600,
             issuer: str = ISSUER, signer=None) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "sub": sub, "scope": scope, "iat": now, "nbf": now - 5,
                  "exp": now + int(lifetime), "wlcg.ver": "1.0", "aud": "https://wlcg.cern.ch/jwt/v1/any"}
        return jwt.encode(claims, signer or key, algorithm="RS256")

    return mint


def server_config(root: Path, pki, pub: Path, **sections) -> ArchiveConfig:
    gridmap = root.parent / f"{root.name}-gridmap"
    gridmap.write_text(pki.gridmap_line("alice"))
    data = {
        "root": str(root),
        "server": {"port": 0, "tls_cert": str(pki.host_cert), "tls_key": str(pki.host_key),
                   "ca_dir": str(pki.cert_dir), "sitename": "TEST-LTA"},
        "clock": {"mode": "real", "speed": 600.0},
        "tape": {"cartridges": 2, "capacity_bytes": 10**9, "drives": 2},
        "migration": {"max_age_seconds": 30},
        "cache": {"capacity_bytes": 10**9},
        "auth": {"token_keys": [{"issuer": ISSUER, "algorithm": "RS256",
                                 "public_key_file": str(pub)}],
                 "token_audience": ["https://wlcg.cern.ch/jwt/v1/any"],
                 "gridmap_file": str(gridmap), "public_read": ["/public"],
                 "identities": {"alice": ["storage.read:/", "storage.modify:/",
                                          "storage.stage:/"]}},
    }
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    return load_config(None, env={}, **data)


@pytest.fixture(scope="session")
def lta(tmp_path_factory, pki, token_key):
    """The archive server over HTTPS (test CA), real clock sped up 600x, in this process."""
    from archive.server import serve_in_thread

    cfg = server_config(tmp_path_factory.mktemp("lta") / "root", pki, token_key[1])
    srv = serve_in_thread(cfg)
    yield srv
    srv.stop()


def tls_session(pki, token: str | None = None, base: str = "") -> requests.Session:
    """A client that trusts only the test CA (trust_env off: REQUESTS_CA_BUNDLE would override
    verify), with a bearer token when one is given; ``base`` is kept on the session for tests."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(pki.ca_cert)
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    s.base = base
    return s


def wait_for(pred, timeout: float = 20.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def gfal(pki):
    """Run a gfal-* command with the test CA trusted; pass token= or proxy= for credentials."""
    from tests.prereq import require

    require(subprocess.run(["which", "gfal-copy"], capture_output=True).returncode == 0,
            "gfal2-util-scripts (gfal-copy) not installed")

    def run(*args: str, token: str | None = None, proxy: Path | None = None,
            check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("X509_", "BEARER_TOKEN"))}
        env.update({"GFAL_PYTHONBIN": "/usr/bin/python3", "X509_CERT_DIR": str(pki.cert_dir),
                    "HOME": str(pki.root)})
        if token:
            env["BEARER_TOKEN"] = token
        if proxy:
            env["X509_USER_PROXY"] = str(proxy)
        else:
            env["X509_USER_PROXY"] = str(pki.root / "no-such-proxy")
        p = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    return run


@pytest.fixture(scope="session")
def pg_dsn():
    """A private PostgreSQL server for the catalog tests (tests/archive/pg.py)."""
    from tests.archive.pg import pg_bin, private_postgres
    from tests.prereq import require

    require(pg_bin("initdb") is not None, "PostgreSQL server (initdb) not installed")
    with private_postgres() as dsn:
        yield dsn
