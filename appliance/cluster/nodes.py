"""Ad-hoc commands on every node: Fabric for nodes reached by SSH, ``docker exec`` for containers.

Why two transports behind one function: a Vagrant or production inventory reaches its nodes by SSH
(Fabric's ThreadingGroup runs the command on all of them at once), the local test cluster's nodes
are containers of this machine's engine. Callers get one :class:`CommandResult` per node either
way, failures included as values (a node that is down is a result, not an exception).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from appliance.cluster.inventory import Node

STATUS_COMMAND = (
    "printf 'uptime: '; cut -d' ' -f1 /proc/uptime; "
    "printf 'load: '; cut -d' ' -f1-3 /proc/loadavg; "
    "printf 'disk: '; df -h / | awk 'NR==2 {print $4\" free of \"$2}'"
)


@dataclass(frozen=True)
class CommandResult:
    node: str
    exit_code: int  # -1: the node could not be reached
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "ok": self.ok, "exit_code": self.exit_code,
                "stdout": self.stdout, "stderr": self.stderr}


@dataclass(frozen=True)
class GroupOutcome:
    results: tuple[CommandResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def report(self) -> str:
        lines = []
        for r in self.results:
            state = "ok" if r.ok else ("UNREACHABLE" if r.exit_code == -1 else f"FAILED rc={r.exit_code}")
            lines.append(f"== {r.node}: {state}")
            lines += [f"   {ln}" for ln in (r.stdout.rstrip().splitlines() + r.stderr.rstrip().splitlines())]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "nodes": [r.to_json() for r in self.results]}


def _docker_exec(node: Node, command: str, timeout: float) -> CommandResult:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=int(timeout))
        container = client.containers.get(node.target)
        if container.status != "running":
            return CommandResult(node.name, -1, "", f"container {node.target} is {container.status}")
        res = container.exec_run(["/bin/sh", "-c", command], demux=True)
    except DockerException as err:
        return CommandResult(node.name, -1, "", f"container {node.target}: {err}")
    out, err = res.output or (b"", b"")
    return CommandResult(node.name, int(res.exit_code), (out or b"").decode(errors="replace"),
                         (err or b"").decode(errors="replace"))


def _local(node: Node, command: str, timeout: float) -> CommandResult:
    try:
        p = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return CommandResult(node.name, -1, "", f"timed out after {timeout} s")
    return CommandResult(node.name, p.returncode, p.stdout, p.stderr)


def _ssh_group(nodes: Sequence[Node], command: str, timeout: float) -> list[CommandResult]:
    from fabric import Connection, ThreadingGroup
    from fabric.exceptions import GroupException

    conns = {}
    for n in nodes:
        kwargs: dict[str, Any] = {"timeout": timeout}
        if n.key_file:
            kwargs["key_filename"] = n.key_file
        conns[n.name] = Connection(n.target, user=n.user or None, port=n.port, connect_kwargs=kwargs,
                                   connect_timeout=timeout)
    by_conn = {id(c): name for name, c in conns.items()}
    group = ThreadingGroup.from_connections(list(conns.values()))
    try:
        outcome = group.run(command, hide=True, warn=True, timeout=timeout)
    except GroupException as exc:  # unreachable hosts: the per-host results are on the exception
        outcome = exc.result
    results = []
    for conn, res in outcome.items():
        name = by_conn.get(id(conn), conn.host)
        if isinstance(res, Exception):
            results.append(CommandResult(name, -1, "", f"{type(res).__name__}: {res}"))
        else:
            results.append(CommandResult(name, res.exited, res.stdout, res.stderr))
    return results


def run_on(nodes: Sequence[Node], command: str | Sequence[str] | Callable[[Node], str],
           timeout: float = 120.0) -> GroupOutcome:
    """Run ``command`` on every node concurrently: a shell string, argv quoted for the shell, or a
    function giving each node its own shell string (the status probe differs per group)."""
    def cmd_for(node: Node) -> str:
        if callable(command):
            return command(node)
        return command if isinstance(command, str) else shlex.join(command)

    ssh = [n for n in nodes if n.connection in ("ssh", "paramiko", "smart")]
    other = [n for n in nodes if n not in ssh]
    by_cmd: dict[str, list[Node]] = {}
    for n in ssh:  # one Fabric group per distinct command
        by_cmd.setdefault(cmd_for(n), []).append(n)
    results: list[CommandResult] = []
    with ThreadPoolExecutor(max_workers=max(1, len(other))) as pool:
        futures = [pool.submit(_docker_exec if n.is_container else _local, n, cmd_for(n), timeout)
                   for n in other]
        for cmd, group in by_cmd.items():
            results += _ssh_group(group, cmd, timeout)
        results += [f.result() for f in futures]
    order = {n.name: i for i, n in enumerate(nodes)}
    return GroupOutcome(tuple(sorted(results, key=lambda r: order.get(r.node, 0))))
