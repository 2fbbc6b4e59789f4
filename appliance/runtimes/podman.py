"""Podman runtime through Debian's ``podman`` CLI (4.3), daemonless, for clusters without Docker.

Podman 4.3 on this host works only with ``--runtime runc`` (crun fails on hybrid cgroups) and
with rlimits at or below the caller's (raising them is refused), hence the fixed options below.
Images move in as docker-archive tars, so the image ID is the same as under Docker.
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from appliance.errors import EngineUnavailable, ImageMissing
from appliance.fsutil import atomic_open
from appliance.runtimes.base import ContainerResult, ContainerSpec

BASE_OPTIONS = ["--runtime", "runc"]
RUN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]


class PodmanRuntime:
    name = "podman"

    def __init__(self, binary: str | None = None):
        found = binary or shutil.which("podman")
        if not found:
            raise EngineUnavailable("podman is not installed (apt-get install podman)")
        self.binary = found

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, *BASE_OPTIONS, *args], capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise EngineUnavailable(f"podman {args[0]} failed: {proc.stderr.strip()[-500:]}")
        return proc

    def version(self) -> dict[str, str]:
        out = json.loads(self._run("version", "--format", "json").stdout)
        return {"runtime": "podman", "engine": out.get("Client", {}).get("Version", "?"),
                "oci_runtime": "runc"}

    def has_image(self, image_id: str) -> bool:
        return self._run("image", "exists", image_id, check=False).returncode == 0

    def image_info(self, image_id: str) -> dict[str, object]:
        proc = self._run("image", "inspect", image_id, check=False)
        if proc.returncode != 0:
            raise ImageMissing(f"image {image_id} is not in podman's store")
        info = json.loads(proc.stdout)[0]
        return {"id": "sha256:" + info["Id"].removeprefix("sha256:"),
                "diff_ids": info.get("RootFS", {}).get("Layers", []), "tags": info.get("RepoTags", [])}

    def run(self, spec: ContainerSpec, on_log: Callable[[str], None]) -> ContainerResult:
        if not self.has_image(spec.image_id):
            raise ImageMissing(
                f"image {spec.image_id} is not in podman's store; load it with "
                "`appliance images save` + `podman load`, or `appliance import BUNDLE --runtime podman`"
            )
        name = f"appliance-{uuid.uuid4().hex[:12]}"
        cmd = [self.binary, *BASE_OPTIONS, "run", "--name", name, *RUN_LIMITS,
               "--network", spec.network, "--user", spec.user, "--workdir", spec.workdir,
               "--security-opt", "no-new-privileges", "--cap-drop", "ALL",
               "--pids-limit", str(spec.pids_limit),
               "--tmpfs", f"/tmp:rw,size={spec.tmpfs_size},mode=1777"]
        if spec.read_only_root:
            cmd.append("--read-only")
        if spec.cpus:
            cmd += ["--cpus", str(spec.cpus)]
        if spec.memory_bytes:
            cmd += ["--memory", str(spec.memory_bytes), "--memory-swap", str(spec.memory_bytes)]
        for m in spec.mounts:
            cmd += ["-v", f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}"]
        for k, v in spec.env.items():
            cmd += ["-e", f"{k}={v}"]
        for k, v in spec.labels.items():
            cmd += ["--label", f"{k}={v}"]
        cmd += ["--", spec.image_id.removeprefix("sha256:"), *spec.command]
        tail: collections.deque[str] = collections.deque(maxlen=50)
        try:
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
                assert p.stdout is not None
                for line in p.stdout:
                    tail.append(line.rstrip("\n"))
                    on_log(tail[-1])
            proc = self._run("inspect", name, check=False)
            if proc.returncode != 0:
                raise EngineUnavailable(f"podman could not start the container: {' '.join(tail)[-500:]}")
            state = json.loads(proc.stdout)[0]["State"]
            return ContainerResult(
                exit_code=int(state.get("ExitCode", -1)), oom_killed=bool(state.get("OOMKilled")),
                started_at=state.get("StartedAt", ""), finished_at=state.get("FinishedAt", ""),
                log_tail=list(tail),
            )
        finally:
            self._run("rm", "-f", name, check=False)

    def save_image(self, image_id: str, dest: Path) -> None:
        with atomic_open(dest, "wb") as f:
            proc = subprocess.run([self.binary, *BASE_OPTIONS, "save", "--format", "docker-archive",
                                   image_id.removeprefix("sha256:")], stdout=f, stderr=subprocess.PIPE)
            if proc.returncode != 0:
                raise ImageMissing(f"podman save {image_id}: {proc.stderr.decode()[-300:]}")

    def load_image(self, src: Path) -> list[str]:
        out = self._run("load", "-i", str(src)).stdout
        ids = []
        for line in out.splitlines():
            if line.startswith("Loaded image"):
                ref = line.split(":", 1)[1].strip()
                info = self._run("image", "inspect", ref, check=False)
                if info.returncode == 0:
                    ids.append("sha256:" + json.loads(info.stdout)[0]["Id"].removeprefix("sha256:"))
        return ids

    def stopped_containers(self, label: str) -> list[tuple[str, dict[str, str]]]:
        ids = self._run("ps", "-a", "-q", "--no-trunc", "--filter", f"label={label}",
                        "--filter", "status=created", "--filter", "status=exited").stdout.split()
        if not ids:
            return []
        info = json.loads(self._run("inspect", *ids).stdout or "[]")
        return [(c["Id"], {m["Destination"]: m.get("Source", "") for m in c.get("Mounts", [])}) for c in info]

    def remove_container(self, container_id: str) -> None:
        self._run("rm", "-f", container_id, check=False)

    def remove_image(self, image_id: str) -> None:
        self._run("rmi", "-f", image_id.removeprefix("sha256:"), check=False)


def create(settings: object = None) -> PodmanRuntime:
    """Registry entry (``appliance.runtimes.get_runtime``)."""
    return PodmanRuntime()
