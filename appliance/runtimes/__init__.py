"""Container runtimes behind one seam (``base.ContainerRuntime``).

A runtime is one module of this package named after it (``docker``, ``podman``,
``charliecloud``, ``apptainer``) exposing ``create(settings) -> ContainerRuntime``: adding a
runtime is adding one file. Modules whose name starts with ``_`` and ``base`` are not runtimes.
``get_runtime`` imports only the module asked for (the Docker SDK costs ~0.3 s to import).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from appliance.errors import ConfigError
from appliance.runtimes.base import ContainerRuntime

if TYPE_CHECKING:
    from appliance.config import Settings

NOT_RUNTIMES = {"base"}


def runtime_names() -> list[str]:
    """The runtimes this installation offers, from the modules of this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in NOT_RUNTIMES)


def get_runtime(name: str, settings: Settings | None = None) -> ContainerRuntime:
    names = runtime_names()
    if name not in names:
        raise ConfigError(f"runtime: expected one of {', '.join(names)}, got {name!r}")
    module = importlib.import_module(f"appliance.runtimes.{name}")
    return module.create(settings)  # type: ignore[no-any-return]
