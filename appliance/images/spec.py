"""Image specs: ``images/<name>/spec.yaml`` (mmdebstrap) or ``image.yaml`` + Dockerfile."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from appliance.errors import ConfigError
from appliance.hashing import tree_hash


@dataclass(frozen=True)
class ImageSpec:
    name: str
    builder: str  # "mmdebstrap" | "dockerfile"
    directory: Path
    source_date_epoch: int
    suite: str = "bookworm"
    components: tuple[str, ...] = ("main",)
    variant: str = "minbase"
    architecture: str = "amd64"
    packages: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    base: str | None = None  # for dockerfile images: the spec name they build FROM
    apt: tuple[str, ...] = ()  # for dockerfile images: Debian packages, served to the build from the store
    pip: tuple[str, ...] = ()  # for dockerfile images: `name==version` wheels from PyPI, kept in the store
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def tag(self) -> str:
        return f"appliance/{self.name}"

    def definition_hash(self) -> str:
        """Hash of everything in the spec directory: a changed spec means a rebuild is due."""
        return tree_hash(self.directory)


def _need(data: dict[str, Any], key: str, path: Path, kind: type) -> Any:
    if key not in data:
        raise ConfigError(f"{path}: missing field '{key}'")
    if not isinstance(data[key], kind):
        raise ConfigError(f"{path}: field '{key}' must be {kind.__name__}")
    return data[key]


def load_spec(directory: Path) -> ImageSpec:
    path = directory / "spec.yaml"
    if not path.exists():
        path = directory / "image.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    builder = _need(data, "builder", path, str)
    sde = _need(data, "source_date_epoch", path, int)
    name = data.get("name", directory.name)
    if builder == "mmdebstrap":
        cfg = data.get("config") or {}
        return ImageSpec(
            name=name, builder=builder, directory=directory, source_date_epoch=sde,
            suite=_need(data, "suite", path, str),
            components=tuple(data.get("components", ["main"])),
            variant=data.get("variant", "minbase"),
            architecture=data.get("architecture", "amd64"),
            packages=tuple(_need(data, "packages", path, list)),
            env=tuple(cfg.get("env", [])), cmd=tuple(cfg.get("cmd", ["/bin/bash"])), raw=data,
        )
    if builder == "dockerfile":
        if not (directory / "Dockerfile").is_file():
            raise ConfigError(f"{directory}: builder 'dockerfile' needs a Dockerfile beside {path.name}")
        apt = data.get("apt", [])
        if not isinstance(apt, list) or not all(isinstance(p, str) and p for p in apt):
            raise ConfigError(f"{path}: field 'apt' must be a list of Debian package names")
        pip = data.get("pip", [])
        pinned = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$")
        if not isinstance(pip, list) or not all(isinstance(r, str) and pinned.match(r) for r in pip):
            raise ConfigError(f"{path}: field 'pip' must list pinned requirements `name==version` "
                              "(every distribution, dependencies included: they install with --no-deps)")
        if pip and "python3-pip" not in apt:
            raise ConfigError(f"{path}: field 'pip' needs python3-pip in field 'apt' (the build installs "
                              "the wheels with the image's own pip)")
        return ImageSpec(name=name, builder=builder, directory=directory, source_date_epoch=sde,
                         base=_need(data, "from", path, str), apt=tuple(apt), pip=tuple(pip), raw=data)
    raise ConfigError(f"{path}: field 'builder' must be 'mmdebstrap' or 'dockerfile', got {builder!r}")


def load_specs(images_dir: Path) -> list[ImageSpec]:
    """All specs, bases before the images built on them."""
    specs = {}
    for d in sorted(images_dir.iterdir()):
        if d.is_dir() and ((d / "spec.yaml").exists() or (d / "image.yaml").exists()):
            spec = load_spec(d)
            specs[spec.name] = spec
    ordered: list[ImageSpec] = []

    def visit(spec: ImageSpec, seen: tuple[str, ...]) -> None:
        if spec in ordered:
            return
        if spec.base:
            if spec.base not in specs:
                raise ConfigError(f"{spec.directory}: 'from: {spec.base}' names no image spec")
            if spec.base in seen:
                raise ConfigError(f"{spec.directory}: cycle in 'from' ({' -> '.join(seen)})")
            visit(specs[spec.base], (*seen, spec.name))
        ordered.append(spec)

    for spec in specs.values():
        visit(spec, (spec.name,))
    return ordered
