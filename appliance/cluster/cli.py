"""``appliance cluster``: create, provision, inspect and remove appliance clusters.

Two kinds of cluster share the commands. A *container* cluster (``--driver containers``) is made on
this machine from the locked base image; its state (generated inventory, test PKI, ansible-runner
artifacts) lives in ``--state-dir``. Any other cluster (Vagrant, production) is named by
``--inventory`` (repeatable; an inventory directory or file as ``ansible-playbook -i`` takes it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from appliance.cluster.inventory import PLAYBOOKS, REPO_ROOT
from appliance.exitcodes import Exit

DEFAULT_NAME = "lc"


def _default_state_dir(name: str) -> Path:
    return REPO_ROOT / "build" / "cluster" / name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster", help="create, provision and inspect appliance clusters (playbooks/site.yml)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  appliance cluster up --driver containers          # local test cluster, provisioned\n"
            "  appliance cluster provision --state-dir build/cluster/lc   # again: changed=0\n"
            "  appliance cluster status --inventory playbooks/inventories/vagrant\n"
            "  appliance cluster exec --limit pipeline -- appliance images list\n"
            "  appliance cluster provision --inventory INV --tags beegfs --check\n"
            "  appliance cluster down\n"
        ),
    )
    cs = p.add_subparsers(dest="cluster_command", metavar="ACTION")
    cs.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--inventory", "-i", action="append", metavar="PATH",
                       help="Ansible inventory (repeatable); default: the container cluster's")
        q.add_argument("--state-dir", type=Path, metavar="DIR",
                       help="container cluster state (default build/cluster/NAME)")
        q.add_argument("--name", default=DEFAULT_NAME, help=f"container cluster name (default {DEFAULT_NAME})")
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.add_argument("--vault-password-file", type=Path, metavar="FILE",
                       help="decrypts ansible-vault files (group_vars/all/vault.yml); "
                            "default: $ANSIBLE_VAULT_PASSWORD_FILE if set")

    def provisioning(q: argparse.ArgumentParser) -> None:
        q.add_argument("--limit", help="hosts or groups (Ansible pattern)")
        q.add_argument("--tags", help="only these roles, e.g. archive,gridftp")
        q.add_argument("--skip-tags", help="skip these roles, e.g. beegfs,qserv")
        q.add_argument("--check", action="store_true", help="check mode: change nothing, report what would")
        q.add_argument("--no-progress", action="store_true", help="no progress bar")
        q.add_argument("--extra-vars", "-e", action="append", default=[], metavar="KEY=VALUE",
                       help="extra variable for every host (repeatable), e.g. -e archive_port=9443")

    q = cs.add_parser("up", help="create the nodes and provision them",
                      description="Create the cluster's nodes, write its inventory and run site.yml.")
    common(q)
    provisioning(q)
    q.add_argument("--driver", choices=["containers", "vagrant"], default="containers",
                   help="containers: local containers of the locked base image; vagrant: `vagrant up`")
    q.add_argument("--template", type=Path, help="inventory whose hosts become containers "
                   "(default playbooks/inventories/local-containers)")
    q.add_argument("--no-provision", action="store_true", help="only create the nodes")
    q.set_defaults(func=cmd_up)

    q = cs.add_parser("provision", help="run playbooks/site.yml on the cluster (idempotent)")
    common(q)
    provisioning(q)
    q.set_defaults(func=cmd_provision)

    q = cs.add_parser("status", help="every node's real host name, uptime, load, disk, and its "
                      "services' health (archive URL, GridFTP banner, MariaDB, Qserv czar ports)")
    common(q)
    q.add_argument("--limit", help="hosts or groups, comma-separated")
    q.set_defaults(func=cmd_status)

    q = cs.add_parser("exec", help="run a command on every (or --limit) node",
                      description="Run a shell command on nodes: appliance cluster exec --limit pipeline -- CMD ...")
    common(q)
    q.add_argument("--limit", help="hosts or groups, comma-separated")
    q.add_argument("--timeout", type=float, default=600.0, help="seconds per node (default 600)")
    q.add_argument("cmd", nargs=argparse.REMAINDER, help="command (after --)")
    q.set_defaults(func=cmd_exec)

    q = cs.add_parser("logs", help="recent logs of nodes: their service containers' output "
                      "(archive, Qserv), /var/log, journal")
    common(q)
    q.add_argument("--limit", help="hosts or groups, comma-separated")
    q.add_argument("--tail", type=int, default=50, help="lines per log (default 50)")
    q.set_defaults(func=cmd_logs)

    q = cs.add_parser("test", help="one role on a fresh local container node: converge, verify, "
                      "idempotence (molecule style)",
                      description=_roletest_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("role", metavar="ROLE", help="a role of playbooks/roles (mariadb, archive, gridftp, pipeline)")
    q.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="the test node's state (default build/cluster/test-ROLE)")
    q.add_argument("--name", help="cluster name, prefix of its containers (default rt-ROLE)")
    q.add_argument("--keep", action="store_true", help="leave the node running afterwards")
    q.add_argument("--step", choices=["converge", "verify", "idempotence"],
                   help="only this step, on the node of --state-dir (kept; verify and idempotence "
                        "need a node left by --keep or --step converge)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--extra-vars", "-e", action="append", default=[], metavar="KEY=VALUE",
                   help="extra variable (repeatable)")
    q.set_defaults(func=cmd_test)

    q = cs.add_parser("down", help="remove the cluster's containers (or `vagrant destroy`)")
    common(q)
    q.add_argument("--driver", choices=["containers", "vagrant"], default="containers")
    q.set_defaults(func=cmd_down)


# -- helpers -----------------------------------------------------------------------------------
def _state_dir(args: argparse.Namespace) -> Path:
    return (args.state_dir or _default_state_dir(args.name)).resolve()


def _inventories(args: argparse.Namespace) -> tuple[list[str], Path]:
    """Inventory sources and the directory for run artifacts."""
    from appliance.cluster.containers import ClusterState
    from appliance.cluster.errors import InventoryError

    if args.inventory:
        state = _state_dir(args) if args.state_dir else REPO_ROOT / "build" / "cluster" / "runs"
        return [str(Path(i).resolve()) for i in args.inventory], state
    sd = _state_dir(args)
    if (sd / "cluster.json").exists():
        return ClusterState.load(sd).inventories, sd
    raise InventoryError(f"no --inventory given and no container cluster in {sd}; "
                         "pass --inventory PATH or run `appliance cluster up` first")


def _vault_file(args: argparse.Namespace) -> Path | None:
    from appliance.cluster.errors import InventoryError

    path = getattr(args, "vault_password_file", None)
    if path is not None and not Path(path).is_file():
        raise InventoryError(f"--vault-password-file {path}: no such file")
    return path


def _roletest_doc() -> str:
    from appliance.cluster import roletest

    return roletest.__doc__ or ""


def _extravars(args: argparse.Namespace) -> dict[str, str]:
    from appliance.cluster.errors import InventoryError

    extravars = {}
    for item in args.extra_vars:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise InventoryError(f"--extra-vars {item!r}: expected KEY=VALUE")
        extravars[key] = value
    return extravars


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj, indent=2) if args.json else text)


def _provision(args: argparse.Namespace, inventories: list[str], state_dir: Path) -> int:
    from appliance.cluster.provision import run_site

    extravars = _extravars(args)
    result = run_site(inventories, state_dir, limit=args.limit, tags=args.tags, skip_tags=args.skip_tags,
                      check=args.check, extravars=extravars, progress=not (args.no_progress or args.json),
                      vault_password_file=_vault_file(args))
    _emit(args, result.to_json(), result.report())
    return 0 if result.ok else Exit.REMOTE


# -- commands ----------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    if args.driver == "vagrant":
        rc = subprocess.call(["vagrant", "up", "--no-provision"], cwd=REPO_ROOT)
        if rc or args.no_provision:
            return rc
        return subprocess.call(["vagrant", "provision"], cwd=REPO_ROOT)
    from appliance.cluster.containers import TEMPLATE, up

    state = up(args.name, _state_dir(args), template=args.template or TEMPLATE)
    if not args.json:
        print(f"cluster {state.name}: {len(state.containers)} node(s) "
              f"({', '.join(sorted(state.containers))}); inventory {state.inventory_file}")
    if args.no_provision:
        if args.json:
            print(json.dumps(state.__dict__, indent=2))
        return 0
    return _provision(args, state.inventories, Path(state.state_dir))


def cmd_provision(args: argparse.Namespace) -> int:
    inventories, state_dir = _inventories(args)
    return _provision(args, inventories, state_dir)


def _nodes(args: argparse.Namespace):
    from appliance.cluster.inventory import load_inventory

    inventories, _ = _inventories(args)
    return load_inventory(inventories, _vault_file(args)).select(args.limit)


def cmd_status(args: argparse.Namespace) -> int:
    from appliance.cluster.health import status_command
    from appliance.cluster.nodes import run_on

    outcome = run_on(_nodes(args), status_command, timeout=60)
    _emit(args, outcome.to_json(), outcome.report())
    return 0 if outcome.ok else Exit.REMOTE


def cmd_exec(args: argparse.Namespace) -> int:
    from appliance.cluster.errors import InventoryError
    from appliance.cluster.nodes import run_on

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise InventoryError("exec: give the command after --, e.g. appliance cluster exec -- uptime")
    outcome = run_on(_nodes(args), cmd[0] if len(cmd) == 1 else cmd, timeout=args.timeout)
    _emit(args, outcome.to_json(), outcome.report())
    return 0 if outcome.ok else Exit.REMOTE


def cmd_logs(args: argparse.Namespace) -> int:
    """Files under /var/log, the journal, and the output of the service containers each node's
    roles started (a container node's run on this machine's engine, an SSH node's on its own)."""
    from dataclasses import replace

    from appliance.cluster.health import service_container_logs, ssh_logs_command
    from appliance.cluster.nodes import GroupOutcome, run_on

    n = int(args.tail)
    files = (f"for f in /var/log/*.log /var/log/mysql/*.log; do [ -s \"$f\" ] && "
             f"{{ echo \"--- $f\"; tail -n {n} \"$f\"; }}; done; "
             f"command -v journalctl >/dev/null && journalctl -n {n} --no-pager -q 2>/dev/null; ")
    nodes = _nodes(args)
    outcome = run_on(nodes, lambda node: files + ("true" if node.is_container else ssh_logs_command(n) + "; true"),
                     timeout=60)
    by_name = {node.name: node for node in nodes}
    results = []
    for r in outcome.results:
        node = by_name.get(r.node)
        if node is not None and node.is_container and r.exit_code != -1:
            extra = service_container_logs(node, n)
            r = replace(r, stdout=r.stdout + (extra + "\n" if extra else ""))
        results.append(r)
    outcome = GroupOutcome(tuple(results))
    _emit(args, outcome.to_json(), outcome.report())
    return 0 if outcome.ok else Exit.REMOTE


def cmd_test(args: argparse.Namespace) -> int:
    from appliance.cluster.roletest import STEPS, run_role_test

    result = run_role_test(args.role, (args.state_dir or _default_state_dir(f"test-{args.role}")).resolve(),
                           name=args.name, keep=args.keep, extravars=_extravars(args),
                           progress=not (args.no_progress or args.json),
                           steps=(args.step,) if args.step else STEPS)
    _emit(args, result.to_json(), result.report())
    return 0 if result.ok else Exit.REMOTE


def cmd_down(args: argparse.Namespace) -> int:
    if args.driver == "vagrant":
        return subprocess.call(["vagrant", "destroy", "-f"], cwd=REPO_ROOT)
    from appliance.cluster.containers import down

    removed = down(_state_dir(args))
    _emit(args, {"removed": removed}, f"removed {len(removed)} container(s): {', '.join(removed)}")
    return 0


__all__ = ["register", "PLAYBOOKS"]
