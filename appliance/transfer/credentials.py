"""What a transfer authenticates with: a bearer token or an X.509 proxy, and the trusted CAs.

``Credentials`` is a plain value handed to every backend; ``discover()`` fills it the way WLCG
clients do, so the same environment works for gfal2, globus and us:

* token: ``BEARER_TOKEN``, then the file named by ``BEARER_TOKEN_FILE``, then
  ``$XDG_RUNTIME_DIR/bt_u<uid>``, then ``/tmp/bt_u<uid>`` (WLCG Bearer Token Discovery);
* proxy: ``X509_USER_PROXY``, then ``/tmp/x509up_u<uid>``;
* CAs: ``X509_CERT_DIR``, then ``/etc/grid-security/certificates`` when it exists.

The token text is never part of ``repr()`` or any report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CA_DIR = "/etc/grid-security/certificates"


def token_locations(env: Mapping[str, str] | None = None, uid: int | None = None) -> list[Path]:
    env = os.environ if env is None else env
    uid = os.getuid() if uid is None else uid
    out: list[Path] = []
    if env.get("BEARER_TOKEN_FILE"):
        out.append(Path(env["BEARER_TOKEN_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        out.append(Path(env["XDG_RUNTIME_DIR"]) / f"bt_u{uid}")
    out.append(Path(f"/tmp/bt_u{uid}"))
    return out


def discover_token(env: Mapping[str, str] | None = None, uid: int | None = None) -> tuple[str | None, str]:
    """(token, where it came from) following the WLCG discovery order; (None, "") if none."""
    env = os.environ if env is None else env
    if env.get("BEARER_TOKEN", "").strip():
        return env["BEARER_TOKEN"].strip(), "BEARER_TOKEN"
    for path in token_locations(env, uid):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text:
            return text, str(path)
    return None, ""


def default_proxy_path(env: Mapping[str, str] | None = None, uid: int | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("X509_USER_PROXY"):
        return Path(env["X509_USER_PROXY"])
    return Path(f"/tmp/x509up_u{os.getuid() if uid is None else uid}")


def default_ca_dir(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    if env.get("X509_CERT_DIR"):
        return env["X509_CERT_DIR"]
    return DEFAULT_CA_DIR if Path(DEFAULT_CA_DIR).is_dir() else None


@dataclass(frozen=True)
class Credentials:
    token: str | None = field(default=None, repr=False)
    proxy: Path | None = None  # PEM file: proxy cert, its key, then the chain
    ca_dir: str | None = None  # OpenSSL hashed CA directory (X509_CERT_DIR)
    insecure: bool = False  # skip server certificate checks (tests only)

    @classmethod
    def discover(cls, env: Mapping[str, str] | None = None) -> Credentials:
        token, _ = discover_token(env)
        proxy = default_proxy_path(env)
        return cls(token=token, proxy=proxy if proxy.is_file() else None, ca_dir=default_ca_dir(env))

    def describe(self) -> str:
        """Safe for logs: says which kind of credential is used, never its content."""
        if self.token:
            return "bearer token"
        if self.proxy:
            return f"X.509 proxy {self.proxy}"
        return "no credentials"
