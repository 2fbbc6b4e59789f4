"""Container runtimes behind one seam (``base.ContainerRuntime``).

``docker`` (the Docker SDK; default) and ``podman`` (Debian's podman CLI). Apptainer is a planned
backend: see docs/RECIPES.md for the conversion path (docker-archive -> SIF). ``get_runtime``
picks one by name.
"""

from __future__ import annotations

from appliance.errors import ConfigError
from appliance.runtimes.base import ContainerRuntime


def get_runtime(name: str) -> ContainerRuntime:
    if name == "docker":
        from appliance.runtimes.docker import DockerRuntime

        return DockerRuntime()
    if name == "podman":
        from appliance.runtimes.podman import PodmanRuntime

        return PodmanRuntime()
    raise ConfigError(f"runtime: expected 'docker' or 'podman', got {name!r}")
