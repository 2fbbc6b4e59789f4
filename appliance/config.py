"""Appliance settings: one typed object, from YAML (``~/.config/appliance/config.yaml``) and env.

Precedence: explicit argument > environment (``APPLIANCE_*``) > config file > defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from appliance.errors import ConfigError, yaml_problem

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "appliance"


@dataclass
class Settings:
    home: Path = field(default_factory=_default_home)  # run store + content-addressed store
    images_dir: Path = REPO_ROOT / "images"  # image specs and images.lock
    runtime: str = "docker"  # a module of appliance/runtimes: docker | podman | charliecloud | apptainer
    run_uid: int = 65534  # non-root uid:gid inside analysis containers (nobody)
    run_gid: int = 65534
    # Extra options for input resolvers of remote schemes (site URLs, tokens files, CA dirs).
    resolvers: dict[str, Any] = field(default_factory=dict)
    # Machine-wide, unlike `home`: the package store (.deb files of every image build) and the
    # machine-local lock overlay. Images live in the engine, which one machine shares, so a
    # run store moved with --home/APPLIANCE_HOME still sees the images this machine built.
    image_store: Path = field(default_factory=lambda: _default_home() / "images")
    # A dated snapshot mirror (site or user config, never the repository), as a URL template with
    # {archive} (debian, debian-security) and {timestamp} (%Y%m%dT%H%M%SZ), e.g.
    # http://snapshot.example.org/archive/{archive}/{timestamp}; locked packages missing from the
    # package store are fetched from it by their pool path.
    snapshot_mirror: str | None = None
    # A directory of `appliance images save` tars (docker-archive) that engine-less runtimes
    # (charliecloud, apptainer) convert their images from, found by image ID.
    image_tars: Path | None = None
    # Seconds without a log line before a run prints a heartbeat (elapsed, CPU, memory); 0: never.
    heartbeat_seconds: float = 60.0

    @property
    def store_root(self) -> Path:
        return self.home / "store"

    @property
    def runs_root(self) -> Path:
        return self.home / "runs"

    @property
    def package_store(self) -> Path:
        return self.image_store / "packages"

    @classmethod
    def load(cls, config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
        path = Path(
            config_file
            or os.environ.get("APPLIANCE_CONFIG")
            or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
            / "appliance"
            / "config.yaml"
        )
        values: dict[str, Any] = {}
        if path.is_file():
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except (yaml.YAMLError, UnicodeDecodeError) as err:
                raise ConfigError(yaml_problem(path, err)) from err
            if not isinstance(loaded, dict):
                raise ConfigError(f"{path}: expected a mapping of settings")
            values.update(loaded)
        names = {f.name for f in fields(cls)}
        for name in names:
            env = os.environ.get(f"APPLIANCE_{name.upper()}")
            if env is not None:
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {sorted(unknown)}; known: {sorted(names)}")
        for key in ("home", "images_dir", "image_store", "image_tars"):
            if key in values:
                values[key] = Path(values[key]).expanduser()
        for key in ("run_uid", "run_gid"):
            if key in values:
                values[key] = int(values[key])
        if "heartbeat_seconds" in values:
            values["heartbeat_seconds"] = float(values["heartbeat_seconds"])
        mirror = values.get("snapshot_mirror")
        if mirror is not None and ("{timestamp}" not in str(mirror) or "{archive}" not in str(mirror)):
            raise ConfigError(f"{path}: snapshot_mirror must be a URL template with {{archive}} and "
                              f"{{timestamp}}, got {mirror!r}")
        from appliance.runtimes import runtime_names

        if values.get("runtime", "docker") not in runtime_names():
            raise ConfigError(f"runtime: expected one of {', '.join(runtime_names())}, "
                              f"got {values['runtime']!r}")
        return cls(**values)
