"""The container-runtime seam.

A runtime runs one ``ContainerSpec`` to completion and reports a ``ContainerResult``; it also
moves images in and out as docker-archive tars (the preservation format) so that a replay never
needs a registry. Contract for ``run``:

* the container gets exactly the mounts, environment, user, network mode and limits of the spec,
  a read-only root filesystem when ``read_only_root`` and a private ``/tmp`` tmpfs;
* log lines are passed to ``on_log`` as they arrive (streamed, not buffered to the end);
* the call returns when the container has exited, with ``exit_code`` and ``oom_killed``; the
  container is removed afterwards; engine failures raise ``EngineUnavailable``/``ImageMissing``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


@dataclass
class ContainerSpec:
    image_id: str
    command: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    user: str  # "uid:gid"
    workdir: str = "/output"
    network: str = "none"
    read_only_root: bool = True
    tmpfs_size: str = "512m"
    cpus: float | None = None
    memory_bytes: int | None = None
    pids_limit: int = 1000
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ContainerResult:
    exit_code: int
    oom_killed: bool
    started_at: str
    finished_at: str
    log_tail: list[str] = field(default_factory=list)


class ContainerRuntime(Protocol):
    name: str

    def version(self) -> dict[str, str]:
        """Engine and client versions, for the run record."""
        ...

    def has_image(self, image_id: str) -> bool: ...

    def image_info(self, image_id: str) -> dict[str, object]:
        """``{"id", "diff_ids", "tags"}`` of a present image; ImageMissing otherwise."""
        ...

    def run(self, spec: ContainerSpec, on_log: Callable[[str], None]) -> ContainerResult: ...

    def save_image(self, image_id: str, dest: Path) -> None: ...

    def load_image(self, src: Path) -> list[str]:
        """Load a docker-archive tar; return the IDs of the images it held."""
        ...

    def remove_image(self, image_id: str) -> None: ...

    # optional (docker, podman): the containers a run left behind when its caller was killed
    # before it could remove them (``run`` removes its own container when it returns)
    def stopped_containers(self, label: str) -> list[tuple[str, dict[str, str]]]:
        """``(id, {mount target: host source})`` of the created/exited/dead containers carrying
        ``label`` (``key=value``)."""
        ...

    def remove_container(self, container_id: str) -> None: ...
