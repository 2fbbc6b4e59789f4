"""Local test hosts: long-running containers of the locked base image, provisioned like machines.

Why containers: no VM or network is available on a build machine, yet ``site.yml`` must really run.
Each inventory host becomes a container of the *locked* base image (by ID), running ``sleep
infinity`` (no systemd: services are started by their init scripts), with the host's network
(dockerd runs without a bridge here) and the host's Debian mirror copied from its apt sources at
run time. Services bind 127.0.0.1 on ports chosen free at ``up`` time.

Nodes that start containers (group ``docker_hosts``) get the host's engine socket; their
``appliance_root`` is a directory with the same path on the host and in the node, so whatever a
node bind-mounts into a container it starts exists for the engine too.
"""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from appliance.cluster.errors import InventoryError
from appliance.cluster.inventory import PLAYBOOKS, REPO_ROOT, Inventory, load_inventory
from appliance.errors import ConfigError, EngineUnavailable, ImageMissing
from appliance.fsutil import atomic_write_bytes, atomic_write_json

TEMPLATE = PLAYBOOKS / "inventories" / "local-containers"
LABEL = "org.appliance.cluster"
POLICY_RC = b"#!/bin/sh\n# appliance cluster: packages never start services; the roles do.\nexit 101\n"
SOCKET = "/var/run/docker.sock"


@dataclass
class ClusterState:
    """What ``up`` made: written to ``<state_dir>/cluster.json``, read by the other commands."""

    name: str
    state_dir: str
    template: str
    base_image_id: str
    containers: dict[str, str] = field(default_factory=dict)  # host -> container name
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def inventory_file(self) -> Path:
        return Path(self.state_dir) / "inventory.yml"

    @property
    def inventories(self) -> list[str]:
        return [self.template, str(self.inventory_file)]

    def save(self) -> None:
        atomic_write_json(Path(self.state_dir) / "cluster.json", self.__dict__)

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState:
        path = Path(state_dir) / "cluster.json"
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise ConfigError(f"{path}: no container cluster here ({err}); run `appliance cluster up "
                              f"--driver containers` first") from err


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (all sockets held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_range(width: int = 16, start: int = 42000, stop: int = 60000) -> tuple[int, int]:
    """A run of ``width`` consecutive ports free on 127.0.0.1 (GridFTP's data-channel range)."""
    port = start
    while port + width < stop:
        busy = None
        for p in range(port, port + width):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    busy = p
                    break
        if busy is None:
            return port, port + width - 1
        port = busy + 1
    raise ConfigError(f"no {width} consecutive free ports between {start} and {stop}")


def host_vars_for(state: ClusterState, inventory: Inventory, recipes: list[str]) -> dict[str, Any]:
    """The generated inventory (pure): connection, same-path roots, ports, PKI and recipes per host."""
    p = state.ports
    common = {
        "cluster_name": state.name,
        "cluster_state_dir": state.state_dir,
        "archive_port": p["archive"],
        "gridftp_port": p["gridftp"],
        "gridftp_port_range": f"{p['gridftp_range_low']},{p['gridftp_range_high']}",
        "mariadb_port": p["mariadb"],
        # the identities this engine has (see up()): base_images and pipeline check these IDs
        "base_images_lock_file": f"{state.state_dir}/images.lock",
        "pipeline_images_lock_file": f"{state.state_dir}/images.lock",
        "archive_images_lock_file": f"{state.state_dir}/images.lock",
    }
    hosts = {}
    for host in sorted(inventory.nodes):
        hosts[host] = {
            "ansible_host": state.containers[host],
            "appliance_root": f"{state.state_dir}/nodes/{host}",
            **common,
            "cluster_recipes": list(recipes),  # a copy per host: no YAML aliases in the file
        }
    return {"all": {"hosts": hosts}}


def _docker():
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except DockerException as err:
        raise EngineUnavailable(f"Docker engine not reachable: {err}") from err
    return client


def _put_file(container: Any, path: str, data: bytes, mode: int = 0o644) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(Path(path).name)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))
    container.put_archive(str(Path(path).parent), buf.getvalue())


def apt_sources_text(suite: str = "bookworm") -> bytes:
    """The host's Debian entries for ``suite`` (+updates, +security), read at run time."""
    from appliance.images.aptsources import debian_sources_for

    lines = [s.line() for s in debian_sources_for(suite, ("main",))]
    return ("# From the host's apt sources by `appliance cluster up`.\n" + "\n".join(lines) + "\n").encode()


def up(name: str, state_dir: Path, template: Path = TEMPLATE, recipes: list[str] | None = None,
       lock_file: Path = REPO_ROOT / "images" / "images.lock") -> ClusterState:
    """Create (or reuse) the containers of ``template``'s hosts and write the cluster's inventory."""
    from docker.errors import NotFound

    from appliance.cluster.pki import make_cluster_pki
    from appliance.config import Settings
    from appliance.images.lock import ImagesLock, effective_lock, local_lock_path, resolve
    from appliance.runtimes.docker import DockerRuntime

    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    client = _docker()
    has_image = DockerRuntime(client).has_image

    # The nodes get the identities this engine really has (a local stand-in where the locked
    # image could not be reproduced here), written into the state dir.
    tracked = ImagesLock.load(lock_file)
    local = ImagesLock.load(local_lock_path(Settings.load().image_store))
    if "base" not in tracked.images:
        raise ImageMissing(f"{lock_file}: no locked 'base' image; run `appliance images ensure` first")
    base_id = resolve("base", tracked, local, has_image).image_id
    effective_lock(tracked, local, has_image, state_dir / "images.lock").save()

    template_inv = load_inventory([template])
    try:
        state = ClusterState.load(state_dir)
    except ConfigError:
        ports = free_ports(3)
        low, high = free_range()
        state = ClusterState(name=name, state_dir=str(state_dir), template=str(Path(template).resolve()),
                             base_image_id=base_id,
                             ports={"archive": ports[0], "gridftp": ports[1], "mariadb": ports[2],
                                    "gridftp_range_low": low, "gridftp_range_high": high})
    if state.name != name:
        raise InventoryError(f"{state_dir} holds cluster '{state.name}', not '{name}'")
    make_cluster_pki(state_dir / "pki")
    sources = apt_sources_text()
    docker_hosts = set(template_inv.groups.get("docker_hosts", ()))
    for host in sorted(template_inv.nodes):
        cname = f"{name}-{host}"
        state.containers[host] = cname
        (state_dir / "nodes" / host).mkdir(parents=True, exist_ok=True)
        try:
            container = client.containers.get(cname)
            if container.status != "running":
                container.start()
            continue
        except NotFound:
            pass
        volumes = {str(state_dir): {"bind": str(state_dir), "mode": "rw"}}
        if host in docker_hosts:
            volumes[engine_socket()] = {"bind": SOCKET, "mode": "rw"}
        container = client.containers.run(
            base_id, ["sleep", "infinity"], name=cname, detach=True, init=True, network_mode="host",
            volumes=volumes, labels={LABEL: name, "org.appliance.node": host},
            environment={"DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"},
        )
        _put_file(container, "/etc/apt/sources.list", sources)
        _put_file(container, "/usr/sbin/policy-rc.d", POLICY_RC, 0o755)
    staged = stage_recipes(recipes if recipes is not None else [str(REPO_ROOT / "recipes" / "fits-sky-model")],
                           state_dir / "recipes")
    atomic_write_bytes(state.inventory_file, yaml.safe_dump(
        host_vars_for(state, template_inv, staged), sort_keys=True).encode())
    state.save()
    return state


def engine_socket() -> str:
    """The socket of the engine this process talks to (DOCKER_HOST, if a unix socket): the one a
    docker_host node must see as its /var/run/docker.sock, or its images would not be ours."""
    host = os.environ.get("DOCKER_HOST", "")
    return host.removeprefix("unix://") if host.startswith("unix://") else SOCKET


def stage_recipes(recipes: list[str], dest: Path) -> list[str]:
    """Copies of the recipes for the nodes, without their recipe.lock: a node locks a recipe to
    the images its cluster was given (the lock pins a tracked image ID, which this machine may
    only have as a local stand-in)."""
    import shutil

    out = []
    for src in recipes:
        target = dest / Path(src).name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src, target, ignore=shutil.ignore_patterns("recipe.lock", "__pycache__"))
        out.append(str(target))
    return out


def down(state_dir: Path) -> list[str]:
    """Remove every container of the cluster (nodes and what the roles started); keep the state dir."""
    state = ClusterState.load(state_dir)
    client = _docker()
    removed = []
    for c in client.containers.list(all=True, filters={"label": f"{LABEL}={state.name}"}):
        c.remove(force=True)
        removed.append(c.name)
    return sorted(removed)


def node_logs(state: ClusterState, host: str, tail: int = 200) -> str:
    """Recent output of a node container, plus service logs under /var/log for container nodes."""
    client = _docker()
    cname = state.containers.get(host)
    if not cname:
        raise InventoryError(f"{state.state_dir}: no node '{host}' (nodes: {', '.join(sorted(state.containers))})")
    return client.containers.get(cname).logs(tail=tail).decode(errors="replace")
