"""``appliance cluster test ROLE``: one role proven on its own, in the style of molecule.

A fresh one-node container cluster (the local machinery of :mod:`appliance.cluster.containers`:
a container of the locked base image, the host's network, the same-path state directory) whose
only host is in the groups the role's play in ``site.yml`` targets (plus ``docker_hosts`` when the
role runs containers). Then:

1. converge: ``site.yml`` on that host (only the plays of its groups run);
2. verify: ``playbooks/verify/ROLE.yml``, a playbook of assertions about the converged node (the
   service answers, its port is open, its configuration holds what the inventory asked for);
3. idempotence: ``site.yml`` again, which must change nothing (the code shipped to the node is a
   snapshot taken at the start, so edits to the working tree meanwhile do not count). Ansible's own per-host totals
   (``playbook_on_stats``) are the count, so a ``no_log`` task that reports changed is counted
   (its result is censored, its task name is not: the changed tasks are listed by name).

The node is removed afterwards unless ``--keep``. ``--step STEP`` runs that step alone on the node of
the state directory and keeps it (``converge`` makes the node if there is none; ``verify`` and
``idempotence`` need one, left by ``--keep`` or ``--step converge``), as ``molecule verify`` does:
break a kept node and watch verify fail. Remove it with ``appliance cluster down --state-dir DIR``.
Exit codes: 0 every step passed; 2 a role that
does not exist or cannot run on this machine (the reason is printed); 3 the engine or the locked
images are missing; 9 a step failed (``--json``: ``failed_step`` names it).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from appliance.cluster.containers import TEMPLATE, ClusterState, down, up
from appliance.cluster.errors import InventoryError
from appliance.cluster.inventory import PLAYBOOKS
from appliance.cluster.provision import _changed, run_site
from appliance.fsutil import atomic_write_bytes

VERIFY_DIR = PLAYBOOKS / "verify"
STEPS = ("converge", "verify", "idempotence")

# role -> inventory groups of its test node (the play of site.yml that applies it, and its needs)
RUNNABLE: dict[str, tuple[str, ...]] = {
    "mariadb": ("mariadb",),
    "archive": ("archive", "docker_hosts"),
    "gridftp": ("gridftp",),
    "pipeline": ("pipeline", "docker_hosts"),
}

# Settings a test node's group takes from another group's file of the local cluster: there the
# GridFTP server shares the archive node, so its variables are in group_vars/archive.yml. The test
# node gets those (``gridftp_*``) and nothing of the archive's.
VARS_FROM: dict[str, tuple[str, str]] = {"gridftp": ("archive", "gridftp_")}

NOT_RUNNABLE: dict[str, str] = {
    **dict.fromkeys(
        ("beegfs", "beegfs_mgmtd", "beegfs_meta", "beegfs_storage", "beegfs_client"),
        "the BeeGFS packages come from the vendor's repository, which this machine cannot reach "
        "(check mode and template rendering in tests/playbooks; the setup-marker rerun with a "
        "simulator in tests/appliance/cluster/test_beegfs_rerun.py)"),
    **dict.fromkeys(
        ("qserv", "qserv_czar", "qserv_worker"),
        "the Qserv images are on a public registry this machine cannot reach (commands checked "
        "against the upstream entrypoint table in tests/appliance/cluster/test_qserv_commands.py)"),
    "docker_host": "a prerequisite: converged by the archive and pipeline tests (engine 'external' "
                   "here: the node drives the host's engine; installing docker.io is not proven)",
    "base_images": "a prerequisite: converged and checked by the archive and pipeline tests",
    "appliance": "a prerequisite: converged by the archive and pipeline tests (their verify runs its CLI/server)",
}


def _unavailable(role: str) -> str:
    if role in NOT_RUNNABLE:
        return f"role {role} cannot be tested on this machine: {NOT_RUNNABLE[role]}"
    known = sorted((PLAYBOOKS / "roles").iterdir())
    return (f"no role '{role}' under {PLAYBOOKS / 'roles'} (roles: {', '.join(p.name for p in known)}); "
            f"testable here: {', '.join(sorted(RUNNABLE))}")


@dataclass
class Step:
    step: str
    ok: bool
    seconds: float
    changed: int
    artifacts: str
    failures: list[str] = field(default_factory=list)
    changed_tasks: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RoleTestResult:
    role: str
    node: str
    state_dir: str
    steps: list[Step] = field(default_factory=list)
    kept: bool = False
    planned: tuple[str, ...] = STEPS

    @property
    def failed_step(self) -> str | None:
        return next((s.step for s in self.steps if not s.ok), None)

    @property
    def ok(self) -> bool:
        return [s.step for s in self.steps] == list(self.planned) and self.failed_step is None

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "ok": self.ok, "failed_step": self.failed_step, "node": self.node,
                "state_dir": self.state_dir, "kept": self.kept, "steps": [s.to_json() for s in self.steps]}

    def report(self) -> str:
        lines = [f"role {self.role} on {self.node}: {'passed' if self.ok else 'FAILED at ' + str(self.failed_step)}"]
        for s in self.steps:
            lines.append(f"  {s.step:<11} {'ok' if s.ok else 'FAILED':<6} {s.seconds:6.1f} s  changed={s.changed}")
            lines += [f"    changed: {t}" for t in s.changed_tasks if s.step == "idempotence"]
            lines += [f"    {f}" for f in s.failures]
            lines.append(f"    artifacts: {s.artifacts}")
        lines.append(f"  state: {self.state_dir}{' (node kept)' if self.kept else ''}")
        return "\n".join(lines)


def write_template(role: str, dest: Path) -> str:
    """A one-host inventory directory for ``role`` (the local-containers group_vars, copied)."""
    groups = RUNNABLE[role]
    host = f"rt-{role}"
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / "group_vars").exists():
        shutil.rmtree(dest / "group_vars")
    shutil.copytree(TEMPLATE / "group_vars", dest / "group_vars")
    for group, (source, prefix) in VARS_FROM.items():
        if group in groups and not (dest / "group_vars" / f"{group}.yml").exists():
            found = yaml.safe_load((TEMPLATE / "group_vars" / f"{source}.yml").read_text()) or {}
            atomic_write_bytes(dest / "group_vars" / f"{group}.yml", yaml.safe_dump(
                {k: v for k, v in found.items() if k.startswith(prefix)}, sort_keys=True).encode())
    children: dict[str, Any] = {g: {"hosts": {host: None}} for g in groups if g != "docker_hosts"}
    if "docker_hosts" in groups:
        children["docker_hosts"] = {"children": {g: None for g in groups if g != "docker_hosts"}}
    atomic_write_bytes(dest / "hosts.yml", yaml.safe_dump({"all": {"children": children}},
                                                          sort_keys=True).encode())
    return host


def snapshot_source(dest: Path) -> Path:
    """The Python packages the appliance role ships (``appliance``, ``archive``), copied once."""
    from appliance.cluster.inventory import REPO_ROOT

    if dest.exists():
        shutil.rmtree(dest)
    for pkg in ("appliance", "archive"):
        shutil.copytree(REPO_ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _existing_node(role: str, state_dir: Path, step: str) -> ClusterState:
    """The kept test node a lone verify/idempotence step runs on (never a fresh, unconverged one)."""
    import docker
    from docker.errors import NotFound

    hint = (f"make one with `appliance cluster test {role} --keep --state-dir {state_dir}` "
            f"(or --step converge)")
    if not (state_dir / "cluster.json").is_file():
        raise InventoryError(f"{state_dir}: no test node for --step {step}; {hint}")
    state = ClusterState.load(state_dir)
    host = f"rt-{role}"
    if host not in state.containers:
        raise InventoryError(f"{state_dir}: holds nodes {sorted(state.containers)}, not {host} of role {role}")
    try:
        running = docker.from_env().containers.get(state.containers[host]).status == "running"
    except NotFound:
        running = False
    if not running:
        raise InventoryError(f"{state_dir}: node {state.containers[host]} is not running; {hint}")
    return state


def run_role_test(role: str, state_dir: Path, *, name: str | None = None, keep: bool = False,
                  extravars: dict[str, Any] | None = None, progress: bool = False,
                  steps: Sequence[str] = STEPS) -> RoleTestResult:
    """Run ``steps`` (all three by default) on the role's test node in ``state_dir``.

    Only the full sequence makes a fresh node and removes it (unless ``keep``); a lone step keeps
    it, and a lone verify or idempotence step needs the node a kept run left.
    """
    if role not in RUNNABLE:
        raise InventoryError(_unavailable(role))
    verify = VERIFY_DIR / f"{role}.yml"
    if not verify.is_file():
        raise InventoryError(f"{verify}: no verify playbook for role {role}")
    steps = tuple(steps)
    if not steps or any(s not in STEPS for s in steps):
        raise InventoryError(f"steps {list(steps)}: expected some of {', '.join(STEPS)}")
    alone = steps != STEPS
    keep = keep or alone
    state_dir = Path(state_dir).resolve()
    extravars = dict(extravars or {})
    if "appliance_python_source_dir" not in extravars:
        # A snapshot of the code shipped to the node: the idempotence step must not see edits
        # made to the working tree meanwhile (the source tar would differ: changed > 0). A lone
        # step reuses the snapshot its node was converged from.
        src = state_dir / "src"
        extravars["appliance_python_source_dir"] = str(
            src if alone and src.is_dir() else snapshot_source(src))
    if steps[0] == "converge":
        host = write_template(role, state_dir / "template")
        state = up(name or f"rt-{role}", state_dir, template=state_dir / "template")
    else:
        state = _existing_node(role, state_dir, steps[0])
        host = f"rt-{role}"
    result = RoleTestResult(role=role, node=host, state_dir=str(state_dir), kept=keep, planned=steps)
    playbooks = {"converge": None, "verify": verify, "idempotence": None}
    try:
        for step in steps:
            playbook = playbooks[step]
            changed_tasks: list[str] = []

            def on_event(event: dict[str, Any], seen: list[str] = changed_tasks) -> None:
                data = event.get("event_data") or {}
                if event.get("event") == "runner_on_ok" and _changed(data.get("res") or {}, event):
                    seen.append(f"{data.get('role', '') + ' : ' if data.get('role') else ''}{data.get('task', '?')}")

            t0 = time.monotonic()
            run = run_site(state.inventories, state_dir, extravars=extravars, progress=progress,
                           on_event=on_event, **({"playbook": playbook} if playbook else {}))
            if run.changed > len(changed_tasks):  # a censored result whose display line said nothing
                changed_tasks.append(f"{run.changed - len(changed_tasks)} more, hidden by no_log "
                                     f"(Ansible's per-host count)")
            ok = run.ok and (step != "idempotence" or run.changed == 0)
            failures = list(run.tally.failures)
            if step == "idempotence" and run.changed:
                failures.append(f"second converge changed {run.changed} task(s) (Ansible's count, "
                                f"no_log tasks included): {', '.join(changed_tasks) or '?'}")
            result.steps.append(Step(step, ok, round(time.monotonic() - t0, 1), run.changed,
                                     run.artifacts, failures, changed_tasks))
            if not ok:
                break
    finally:
        if not keep:
            down(state_dir)
    return result
