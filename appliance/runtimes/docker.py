"""Docker runtime through the Docker SDK (the engine's HTTP API on its unix socket)."""

from __future__ import annotations

import collections
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path


def _import_docker_sdk():  # type: ignore[no-untyped-def]
    """Import the Docker SDK without its SSH transport when the engine is local.

    The SDK imports paramiko (present here for Fabric) at import time only to offer ssh://
    engines; that costs ~0.6 s per command. Hiding it during the import skips that transport;
    paramiko stays importable for everything else afterwards.
    """
    if "paramiko" in sys.modules or os.environ.get("DOCKER_HOST", "").startswith("ssh://"):
        import docker
        return docker
    sys.modules["paramiko"] = None  # type: ignore[assignment]
    try:
        import docker
        import docker.errors
    finally:
        del sys.modules["paramiko"]
    return docker


docker = _import_docker_sdk()

from appliance.errors import RESTORE_ADVICE, EngineUnavailable, ImageMissing, RunFailed  # noqa: E402
from appliance.fsutil import atomic_open  # noqa: E402
from appliance.runtimes.base import ContainerResult, ContainerSpec  # noqa: E402


def _explain(err: docker.errors.APIError) -> str:
    """The engine's reason on one line, without the OCI runtime's wrapping."""
    text = str(getattr(err, "explanation", None) or err).replace("\n", " ")
    if "exec: " in text:  # 'OCI runtime create failed: ... exec: "x": executable file not found in $PATH: unknown'
        text = text[text.index("exec: "):].removesuffix(": unknown")
    return text


def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except docker.errors.DockerException as err:
        raise EngineUnavailable(
            f"no Docker engine answers ({err}); start it (make engine) or use --runtime podman"
        ) from err


class DockerRuntime:
    name = "docker"

    def __init__(self, client: docker.DockerClient | None = None):
        self._client = client

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker_client()
        return self._client

    def version(self) -> dict[str, str]:
        v = self.client.version()
        return {"runtime": "docker", "engine": v.get("Version", "?"), "api": v.get("ApiVersion", "?"),
                "sdk": docker.__version__}

    def has_image(self, image_id: str) -> bool:
        try:
            self.client.images.get(image_id)
            return True
        except docker.errors.ImageNotFound:
            return False

    def image_info(self, image_id: str) -> dict[str, object]:
        try:
            img = self.client.images.get(image_id)
        except docker.errors.ImageNotFound as err:
            raise ImageMissing(f"image {image_id} is not in the Docker engine") from err
        return {"id": img.id, "diff_ids": img.attrs["RootFS"].get("Layers", []), "tags": img.tags}

    def run(self, spec: ContainerSpec, on_log: Callable[[str], None]) -> ContainerResult:
        if not self.has_image(spec.image_id):
            raise ImageMissing(f"image {spec.image_id} is not in the Docker engine; {RESTORE_ADVICE}")
        volumes = {str(m.source): {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                   for m in spec.mounts}
        kwargs: dict[str, object] = {}
        if spec.cpus:
            kwargs["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.memory_bytes:
            kwargs["mem_limit"] = spec.memory_bytes
            kwargs["memswap_limit"] = spec.memory_bytes  # no swap: an OOM is an OOM
        try:
            container = self.client.containers.create(
                spec.image_id, command=spec.command, environment=spec.env, volumes=volumes,
                user=spec.user, working_dir=spec.workdir, network_mode=spec.network,
                read_only=spec.read_only_root, tmpfs={"/tmp": f"rw,size={spec.tmpfs_size},mode=1777"},
                security_opt=["no-new-privileges"], cap_drop=["ALL"], pids_limit=spec.pids_limit,
                labels=spec.labels, detach=True, **kwargs,
            )
        except docker.errors.APIError as err:
            raise RunFailed(f"the engine refused the container: {_explain(err)}") from err
        tail: collections.deque[str] = collections.deque(maxlen=50)
        try:
            try:
                container.start()
            except docker.errors.APIError as err:
                raise RunFailed(f"the engine could not start {spec.command[0]!r}: {_explain(err)}") from err
            buf = b""
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    tail.append(text)
                    on_log(text)
            if buf:
                tail.append(buf.decode(errors="replace"))
                on_log(tail[-1])
            status = container.wait()
            container.reload()
            state = container.attrs["State"]
            return ContainerResult(
                exit_code=int(status.get("StatusCode", -1)), oom_killed=bool(state.get("OOMKilled")),
                started_at=state.get("StartedAt", ""), finished_at=state.get("FinishedAt", ""),
                log_tail=list(tail),
            )
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)

    def stopped_containers(self, label: str) -> list[tuple[str, dict[str, str]]]:
        found = self.client.containers.list(all=True, filters={"label": label,
                                                               "status": ["created", "exited", "dead"]})
        return [(c.id, {m["Destination"]: m.get("Source", "") for m in c.attrs.get("Mounts", [])})
                for c in found]

    def remove_container(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(container_id).remove(force=True)

    def usage(self, run_id: str) -> dict[str, float] | None:
        """CPU seconds and memory of the running container of ``run_id`` (for the heartbeat)."""
        found = self.client.containers.list(filters={"label": f"org.appliance.run={run_id}"})
        if not found:
            return None
        stats = found[0].stats(stream=False, one_shot=True)
        cpu = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0) / 1e9
        return {"cpu_seconds": cpu, "memory_bytes": float(stats.get("memory_stats", {}).get("usage", 0))}

    def save_image(self, image_id: str, dest: Path) -> None:
        try:
            image = self.client.images.get(image_id)
        except docker.errors.ImageNotFound as err:
            raise ImageMissing(f"image {image_id} is not in the Docker engine") from err
        with atomic_open(dest, "wb") as f:
            for chunk in image.save(named=True):
                f.write(chunk)

    def load_image(self, src: Path) -> list[str]:
        with open(src, "rb") as f:
            images = self.client.images.load(f)
        return [img.id for img in images]

    def remove_image(self, image_id: str) -> None:
        with contextlib.suppress(docker.errors.ImageNotFound):
            self.client.images.remove(image_id, force=True)


def create(settings: object = None) -> DockerRuntime:
    """Registry entry (``appliance.runtimes.get_runtime``)."""
    return DockerRuntime()
