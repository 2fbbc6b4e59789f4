"""The archive's configuration: one typed object, loaded from YAML and then the environment.

Why one object: the server, the CLI, the tests and the benchmarks build the same archive from
the same description, and an unknown or mistyped key is an error naming the key, not a silent
default. Environment overrides use ``ARCHIVE__<SECTION>__<FIELD>`` (e.g.
``ARCHIVE__SERVER__PORT=8443``, ``ARCHIVE__CLOCK__SPEED=600``); ``ARCHIVE_ROOT`` sets ``root``.
Every field, its default and its meaning is listed in docs/ARCHIVE.md.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archive.errors import ConfigError


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8443  # 0 picks a free port
    tls_cert: str = ""  # host certificate (PEM); empty = plain HTTP
    tls_key: str = ""
    ca_dir: str = ""  # trusted CAs for client certificates (OpenSSL hashed dir)
    public_url: str = ""  # base URL advertised by Tape REST discovery; default from Host header
    sitename: str = "LTA"
    max_threads: int = 64


@dataclass
class CatalogConfig:
    backend: str = "sqlite"  # sqlite | postgresql
    path: str = ""  # SQLite file; default <root>/catalog.db
    dsn: str = ""  # PostgreSQL conninfo, e.g. "host=127.0.0.1 port=5432 dbname=lta user=lta"


@dataclass
class TapeConfig:
    cartridges: int = 8  # cartridges labelled per pool when the library is created
    capacity_bytes: int = 18_000_000_000_000  # LTO-9 native
    drives: int = 2
    mount_seconds: float = 60.0
    unmount_seconds: float = 60.0
    locate_base_seconds: float = 2.0
    locate_full_seconds: float = 100.0  # end-to-end locate; locate time is proportional to distance
    rate_bytes_per_second: float = 360e6  # LTO-9 class
    copies: int = 1  # tape copies per file, each on a distinct pool (LOFAR LTA: 1)


@dataclass
class MigrationConfig:
    max_age_seconds: float = 300.0  # a file waits at most this long before going to tape
    batch_bytes: int = 50_000_000_000  # or until this much is waiting
    batch_files: int = 1000  # or this many files


@dataclass
class CacheConfig:
    capacity_bytes: int = 100 * 2**30
    high_watermark: float = 0.90
    low_watermark: float = 0.75
    default_pin_lifetime: str = "P2D"  # dCache's default stage pin lifetime
    max_pin_lifetime: str = "P30D"


@dataclass
class ClockConfig:
    mode: str = "real"  # real | simulated
    speed: float = 1.0  # real clock speed-up factor (demo: 600 makes a 60 s mount take 0.1 s)


@dataclass
class TokenKey:
    issuer: str = ""
    algorithm: str = "RS256"  # RS256/ES256 with public_key_file, HS256 with secret
    public_key_file: str = ""
    secret: str = ""
    private_key_file: str = ""  # PEM signing key: `archive token issue` mints with it


@dataclass
class AuthConfig:
    public_read: list[str] = field(default_factory=list)  # path prefixes anyone may read
    token_keys: list[TokenKey] = field(default_factory=list)
    token_audience: list[str] = field(default_factory=list)  # empty = audience not checked
    token_base_path: str = "/"  # token scope paths are relative to this namespace path
    gridmap_file: str = ""  # '"/DC=org/CN=Name" identity' lines
    identities: dict[str, list[str]] = field(default_factory=dict)  # identity -> scopes


@dataclass
class ArchiveConfig:
    root: str = "./lta-data"
    server: ServerConfig = field(default_factory=ServerConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    tape: TapeConfig = field(default_factory=TapeConfig)
    migration: MigrationConfig = field(default_factory=MigrationConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)

    @property
    def root_path(self) -> Path:
        return Path(self.root).resolve()

    @property
    def catalog_path(self) -> Path:
        return Path(self.catalog.path) if self.catalog.path else self.root_path / "catalog.db"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    try:
        if tp is bool and isinstance(value, str):
            return value.lower() in {"1", "true", "yes", "on"}
        if tp is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if tp in (int, float, str, bool):
            return tp(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from err
    return value


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys are errors naming the key."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    if "ARCHIVE_ROOT" in env:
        data["root"] = env["ARCHIVE_ROOT"]
    for key, value in env.items():
        if not key.startswith("ARCHIVE__"):
            continue
        parts = [p.lower() for p in key[len("ARCHIVE__"):].split("__")]
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return data


def load_config(path: str | os.PathLike[str] | None = None,
                env: dict[str, str] | None = None, **overrides: Any) -> ArchiveConfig:
    """Load YAML (optional), then environment overrides, then keyword overrides (top level)."""
    data: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config: {err}") from err
    data = _apply_env(data, dict(os.environ if env is None else env))
    data.update(overrides)
    cfg = from_dict(ArchiveConfig, data)
    validate(cfg)
    return cfg


def validate(cfg: ArchiveConfig) -> None:
    if cfg.catalog.backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"catalog.backend: {cfg.catalog.backend!r} is not sqlite or postgresql")
    if cfg.clock.mode not in ("real", "simulated"):
        raise ConfigError(f"clock.mode: {cfg.clock.mode!r} is not real or simulated")
    if not 0 < cfg.cache.low_watermark < cfg.cache.high_watermark <= 1:
        raise ConfigError("cache: need 0 < low_watermark < high_watermark <= 1")
    if cfg.tape.copies < 1 or cfg.tape.copies > 4:
        raise ConfigError("tape.copies: must be 1..4")
    if cfg.tape.drives < 1:
        raise ConfigError("tape.drives: need at least one drive")
