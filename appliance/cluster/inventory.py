"""Ansible inventories as plain values: which nodes exist, their groups and how to reach them.

Why ``ansible-inventory``: an inventory may be several sources (the template directory plus the
file ``cluster up`` writes, or Vagrant's generated file plus our group_vars); Ansible itself
merges them exactly as ``site.yml`` will see them. The parsing of its JSON is pure and tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.cluster.errors import InventoryError

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO_ROOT / "playbooks"
DOCKER_CONNECTIONS = {"community.docker.docker", "docker", "community.docker.docker_api"}


@dataclass(frozen=True)
class Node:
    """One inventory host and how to reach it."""

    name: str
    groups: tuple[str, ...]
    connection: str = "ssh"  # ssh | local | community.docker.docker
    address: str = ""  # ansible_host: DNS name/IP, or the container name
    user: str = ""
    port: int | None = None
    key_file: str = ""
    vars: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # probe variables

    @property
    def is_container(self) -> bool:
        return self.connection in DOCKER_CONNECTIONS

    @property
    def target(self) -> str:
        return self.address or self.name

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "groups": list(self.groups), "connection": self.connection,
                "address": self.target, "user": self.user, "port": self.port}


@dataclass(frozen=True)
class Inventory:
    sources: tuple[str, ...]
    nodes: dict[str, Node] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # group -> hosts (children resolved)

    def select(self, pattern: str | None) -> list[Node]:
        """Nodes matching a comma-separated list of host or group names (``None``/``all``: every node)."""
        if not pattern or pattern == "all":
            return [self.nodes[n] for n in sorted(self.nodes)]
        chosen: list[str] = []
        for word in (w.strip() for w in pattern.split(",")):
            if word in self.nodes:
                names: Sequence[str] = [word]
            elif word in self.groups:
                names = self.groups[word]
            else:
                raise InventoryError(
                    f"{', '.join(self.sources)}: no host or group named '{word}' "
                    f"(groups: {', '.join(sorted(g for g in self.groups if self.groups[g]))})")
            chosen += [n for n in names if n not in chosen]
        return [self.nodes[n] for n in chosen]


def _port(value: Any, host: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise InventoryError(f"host {host}: ansible_port {value!r} is not a number") from err


# Host variables the status probes read (appliance.cluster.health); kept on each Node.
PROBE_VARS = ("archive_port", "archive_bind_address", "archive_health_path", "archive_tls_cert_src",
              "gridftp_port", "gridftp_control_interface", "mariadb_port", "mariadb_bind_address",
              "qserv_port_proxy", "qserv_port_czar_http", "qserv_port_repl_controller")


def parse_inventory_json(data: dict[str, Any], sources: Sequence[str] = ()) -> Inventory:
    """Turn ``ansible-inventory --list`` output into an :class:`Inventory` (children resolved)."""
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    direct: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    for name, body in data.items():
        if name == "_meta" or not isinstance(body, dict):
            continue
        direct[name] = list(body.get("hosts", []))
        children[name] = list(body.get("children", []))

    def members(group: str, seen: frozenset[str] = frozenset()) -> list[str]:
        if group in seen:
            return []
        out = list(direct.get(group, []))
        for child in children.get(group, []):
            out += [h for h in members(child, seen | {group}) if h not in out]
        return out

    groups = {g: tuple(members(g)) for g in direct}
    all_hosts = set(hostvars) | {h for hs in groups.values() for h in hs}
    nodes = {}
    for host in sorted(all_hosts):
        hv = hostvars.get(host, {})
        in_groups = tuple(sorted(g for g, hs in groups.items() if host in hs and g not in ("all", "ungrouped")))
        nodes[host] = Node(
            name=host,
            groups=in_groups,
            connection=str(hv.get("ansible_connection", "ssh")),
            address=str(hv.get("ansible_host", "")),
            user=str(hv.get("ansible_user", "")),
            port=_port(hv.get("ansible_port"), host),
            key_file=str(hv.get("ansible_ssh_private_key_file", "")),
            vars={k: hv[k] for k in PROBE_VARS if k in hv},
        )
    return Inventory(tuple(sources), nodes, groups)


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Ansible tools: our ansible.cfg and roles, the venv's binaries first."""
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
           "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"), "ANSIBLE_NOCOLOR": "1",
           "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    env.update(extra or {})
    return env


def load_inventory(sources: Sequence[str | os.PathLike[str]],
                   vault_password_file: str | os.PathLike[str] | None = None) -> Inventory:
    """Ask ``ansible-inventory`` for the merged view of ``sources``.

    An inventory whose group_vars hold an ansible-vault file cannot be listed without the vault
    password: ``vault_password_file`` (or ``ANSIBLE_VAULT_PASSWORD_FILE`` in the environment).
    """
    paths = [str(Path(s)) for s in sources]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise InventoryError(f"inventory not found: {', '.join(missing)}")
    cmd = [str(Path(sys.executable).parent / "ansible-inventory"), "--list"]
    for p in paths:
        cmd += ["-i", p]
    if vault_password_file:
        if not Path(vault_password_file).is_file():
            raise InventoryError(f"--vault-password-file {vault_password_file}: no such file")
        cmd += ["--vault-password-file", str(vault_password_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(), timeout=120)
    if proc.returncode != 0:
        raise InventoryError(f"{', '.join(paths)}: ansible-inventory failed: {proc.stderr.strip()[-800:]}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise InventoryError(f"{', '.join(paths)}: unreadable ansible-inventory output: {err}") from err
    inv = parse_inventory_json(data, paths)
    if not inv.nodes:
        raise InventoryError(f"{', '.join(paths)}: the inventory has no hosts")
    return inv
