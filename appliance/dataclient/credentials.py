"""Finding, creating and renewing credentials before every command, so users never have to.

Order: a bearer token (WLCG discovery: ``BEARER_TOKEN``, ``BEARER_TOKEN_FILE``,
``$XDG_RUNTIME_DIR/bt_u<uid>``, ``/tmp/bt_u<uid>``); else an X.509 proxy with enough time left;
else a new proxy made from ``usercert.pem``/``userkey.pem`` (asking for the passphrase only when
the key is encrypted); an expired proxy is renewed the same way, or refused with a clear message.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.dataclient.config import Config
from appliance.dataclient.errors import CredentialError, PassphraseNeeded, ProxyExpired
from appliance.transfer.credentials import Credentials, discover_token

if TYPE_CHECKING:
    from appliance.dataclient.proxy import ProxyInfo

# appliance.dataclient.proxy (the cryptography library, ~40 ms) is imported only when a proxy is
# read or made: token and anonymous commands start without it.

PassphraseSource = Callable[[Path], bytes | None]


def passphrase_source(passphrase_file: str | None) -> PassphraseSource:
    """From a file (first line), else an interactive prompt, else none (error later)."""

    def get(key: Path) -> bytes | None:
        if passphrase_file:
            return Path(passphrase_file).read_bytes().splitlines()[0] if Path(
                passphrase_file).stat().st_size else b""
        if sys.stdin.isatty():
            return getpass.getpass(f"Passphrase for {key}: ").encode()
        return None

    return get


@dataclass
class CredentialStatus:
    credentials: Credentials
    kind: str  # "token", "proxy", "created-proxy", "renewed-proxy", "none"
    where: str = ""
    proxy: ProxyInfo | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "where": self.where,
                "proxy": self.proxy.to_json() if self.proxy else None}


def new_proxy(cfg: Config, passphrase: PassphraseSource, hours: float | None = None) -> ProxyInfo:
    from appliance.dataclient.proxy import create_proxy, key_is_encrypted

    p = cfg.proxy
    secret = None
    if key_is_encrypted(p.key):
        secret = passphrase(p.key)
        if secret is None:
            raise PassphraseNeeded(str(p.key))
    return create_proxy(p.cert, p.key, p.path, hours or p.lifetime_hours, secret)


def ensure_credentials(cfg: Config, passphrase: PassphraseSource, use_token: bool = True,
                       insecure: bool = False) -> CredentialStatus:
    ca = cfg.ca_dir
    if use_token:
        token, where = discover_token()
        if token:
            # GridFTP knows no tokens: keep a valid proxy alongside, if there is one.
            proxy = None
            if cfg.proxy.path.is_file():
                from appliance.dataclient.proxy import read_proxy

                try:
                    if read_proxy(cfg.proxy.path).seconds_left() > 0:
                        proxy = cfg.proxy.path
                except CredentialError:
                    proxy = None
            return CredentialStatus(Credentials(token=token, proxy=proxy, ca_dir=ca, insecure=insecure),
                                    "token", where)
    p = cfg.proxy
    have_key = p.cert.is_file() and p.key.is_file()
    if p.path.is_file():
        from appliance.dataclient.proxy import read_proxy

        info = read_proxy(p.path)
        if info.seconds_left() >= p.min_remaining_minutes * 60:
            return CredentialStatus(Credentials(proxy=p.path, ca_dir=ca, insecure=insecure),
                                    "proxy", str(p.path), info)
        if not have_key:
            if info.seconds_left() > 0:  # short but still valid: use it, the server decides
                return CredentialStatus(Credentials(proxy=p.path, ca_dir=ca, insecure=insecure),
                                        "proxy", str(p.path), info)
            raise ProxyExpired(str(p.path), f"{info.not_after:%Y-%m-%d %H:%M:%S} UTC")
        info = new_proxy(cfg, passphrase)
        return CredentialStatus(Credentials(proxy=p.path, ca_dir=ca, insecure=insecure),
                                "renewed-proxy", str(p.path), info)
    if have_key:
        info = new_proxy(cfg, passphrase)
        return CredentialStatus(Credentials(proxy=p.path, ca_dir=ca, insecure=insecure),
                                "created-proxy", str(p.path), info)
    return CredentialStatus(Credentials(ca_dir=ca, insecure=insecure), "none")
