"""dataclient configuration: one typed object from ``config.yaml`` plus the environment.

File: ``$DATACLIENT_CONFIG``, else ``$XDG_CONFIG_HOME/dataclient/config.yaml``, else
``~/.config/dataclient/config.yaml``; missing file means defaults. Example::

    sites:
      lta:                              # 'lta:/obs/x.fits' -> davs://lta.example.org:8443/obs/x.fits
        url: davs://lta.example.org:8443
        backend: http                   # optional: force a transfer backend for this site
    default_site: lta                   # used by status/release without --site
    checksum: adler32                   # adler32 (WLCG default) | sha256 | md5
    parallel: 4                         # files copied at once
    retries: 4                          # attempts per file, backoff 1 s, 2 s, 4 s ...
    fsync: true                         # data on disk before the final rename
    ca_dir: /etc/grid-security/certificates
    proxy:
      path: /tmp/x509up_u1000           # default: $X509_USER_PROXY or /tmp/x509up_u<uid>
      cert: ~/.globus/usercert.pem
      key: ~/.globus/userkey.pem
      lifetime_hours: 12
      min_remaining_minutes: 30         # renew (or refuse) below this
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError
from appliance.transfer.credentials import default_ca_dir, default_proxy_path

_ALIAS = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*):(?!//)(.*)$")


@dataclass(frozen=True)
class Site:
    name: str
    url: str
    backend: str | None = None


@dataclass(frozen=True)
class ProxySettings:
    path: Path
    cert: Path
    key: Path
    lifetime_hours: float = 12.0
    min_remaining_minutes: float = 30.0


@dataclass(frozen=True)
class Config:
    sites: dict[str, Site] = field(default_factory=dict)
    default_site: str | None = None
    checksum: str = "adler32"
    parallel: int = 4
    retries: int = 4
    fsync: bool = True
    ca_dir: str | None = None
    proxy: ProxySettings = field(default_factory=lambda: default_proxy_settings({}))
    source: str | None = None  # the file it came from

    def expand(self, target: str) -> str:
        """``lta:/obs/a.fits`` -> the site's URL + path; URLs and local paths are unchanged."""
        m = _ALIAS.match(target)
        if not m or len(m.group(1)) == 1:  # 'C:' never is an alias
            return target
        name, rest = m.groups()
        if name not in self.sites:
            if name in ("file", "http", "https", "davs", "dav", "gsiftp", "root", "srm", "ftp"):
                return target
            raise ConfigError(f"unknown site alias '{name}:' (known: {', '.join(self.sites) or 'none'}"
                              f"; define it under 'sites:' in {self.source or config_path()})")
        base = self.sites[name].url.rstrip("/")
        return f"{base}/{rest.lstrip('/')}"

    def site_for(self, url: str) -> Site | None:
        for site in self.sites.values():
            if url.startswith(site.url.rstrip("/") + "/") or url == site.url:
                return site
        return None


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("DATACLIENT_CONFIG"):
        return Path(env["DATACLIENT_CONFIG"])
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "dataclient" / "config.yaml"


def default_proxy_settings(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> ProxySettings:
    env = os.environ if env is None else env
    globus = Path.home() / ".globus"
    cert = raw.get("cert") or env.get("X509_USER_CERT") or globus / "usercert.pem"
    key = raw.get("key") or env.get("X509_USER_KEY") or globus / "userkey.pem"
    return ProxySettings(
        path=Path(os.path.expanduser(str(raw.get("path") or default_proxy_path(env)))),
        cert=Path(os.path.expanduser(str(cert))), key=Path(os.path.expanduser(str(key))),
        lifetime_hours=float(raw.get("lifetime_hours", 12)),
        min_remaining_minutes=float(raw.get("min_remaining_minutes", 30)),
    )


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    p = Path(path) if path else config_path(env)
    raw: dict[str, Any] = {}
    if p.is_file():
        import yaml  # only when there is a file to read (~20 ms of start-up otherwise)

        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{p}: not valid YAML ({err})") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
    elif path:
        raise ConfigError(f"{p}: no such configuration file")
    sites = {}
    for name, entry in (raw.get("sites") or {}).items():
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict) or "url" not in entry:
            raise ConfigError(f"{p}: field 'sites.{name}': needs a 'url'")
        sites[name] = Site(name, str(entry["url"]), entry.get("backend"))
    try:
        cfg = Config(
            sites=sites,
            default_site=raw.get("default_site") or (next(iter(sites)) if len(sites) == 1 else None),
            checksum=str(raw.get("checksum", "adler32")),
            parallel=int(raw.get("parallel", 4)),
            retries=int(raw.get("retries", 4)),
            fsync=bool(raw.get("fsync", True)),
            ca_dir=raw.get("ca_dir") or default_ca_dir(env),
            proxy=default_proxy_settings(raw.get("proxy") or {}, env),
            source=str(p),
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{p}: {err}") from err
    return cfg
