"""Every Qserv container command the roles would run is valid for upstream's `entrypoint`.

The roles' container definitions are rendered with Ansible's templar (tests/playbooks/render.py)
and each `entrypoint` command line is parsed against the option table derived from upstream's
source (playbooks/roles/qserv/files/entrypoint-options.yml, origin recorded there): an unknown
subcommand or option, a missing required option, an option without its value, or arguments
after "--" for a subcommand that takes none fail the test. Qserv images cannot be pulled here.
"""

from __future__ import annotations

import pytest
import yaml

from appliance.cluster.inventory import PLAYBOOKS
from tests.playbooks.render import render_var

TABLE = yaml.safe_load((PLAYBOOKS / "roles" / "qserv" / "files" / "entrypoint-options.yml").read_text())
VARS = {
    "qserv_image": "registry.invalid/lsst/qserv@sha256:" + "ab" * 32,
    "qserv_mariadb_image": "registry.invalid/lsst/qserv-mariadb@sha256:" + "cd" * 32,
    "qserv_mariadb_root_password": "root-secret-123",
    "qserv_repl_auth_key": "repl-secret-123",
    "qserv_repl_admin_auth_key": "admin-secret-123",
    "qserv_czar_host": "czar.test",
    "groups": {"qserv_czar": ["czar.test"], "qserv_worker": ["w1.test", "w2.test"]},
}


def check_entrypoint(argv: list[str], table: dict = TABLE) -> tuple[str, dict[str, list[str]], list[str]]:
    """Parse ``entrypoint [global opts] COMMAND [opts] [-- args]`` against the table; raise
    ValueError naming the first problem. Returns (command, options seen, extended args)."""
    if not argv or argv[0] != "entrypoint":
        raise ValueError(f"not an entrypoint command: {argv[:2]}")
    args, i = [str(a) for a in argv], 1
    while i < len(args) and args[i].startswith("--"):
        name, eq, _ = args[i].partition("=")
        if name not in table["global"]["options"]:
            raise ValueError(f"unknown global option {name} (before the subcommand)")
        i += 1 if eq else 2
    if i >= len(args) or args[i] not in table["commands"]:
        raise ValueError(f"unknown subcommand {args[i] if i < len(args) else '(none)'}")
    command, spec = args[i], table["commands"][args[i]]
    seen: dict[str, list[str]] = {}
    i += 1
    while i < len(args):
        word = args[i]
        if word == "--":
            if not spec["extended"]:
                raise ValueError(f"{command} takes no arguments after --")
            return _required(command, spec, seen), seen, args[i + 1:]
        name, eq, value = word.partition("=")
        if not name.startswith("-") or name not in spec["options"]:
            raise ValueError(f"{command}: unknown option {word!r}")
        if spec["options"][name] == "flag":
            if eq:
                raise ValueError(f"{command}: {name} is a flag and takes no value")
            seen.setdefault(name, []).append("")
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise ValueError(f"{command}: {name} needs a value")
            value, i = args[i + 1], i + 1
        if value == "":
            raise ValueError(f"{command}: {name} has an empty value")
        seen.setdefault(name, []).append(value)
        i += 1
    return _required(command, spec, seen), seen, []


def check_spawned(command: str, args: list[str], table: dict = TABLE) -> dict[str, str]:
    """The arguments after ``--`` against the spawned program's options (upstream's parser:
    options only as ``--name=value``, a bare ``--name`` is a flag, unknown names refused)."""
    spawned = table["spawned_apps"]
    app, common = spawned["apps"][command], spawned["common"]
    options = set(common["options"]) | set(app["options"]) | {
        f"--{cat}-{param}" for cat, params in common["schema"].items() for param in params}
    flags = set(common["flags"]) | set(app["flags"])
    seen: dict[str, str] = {}
    for word in args:
        name, eq, value = word.partition("=")
        if not name.startswith("--"):
            raise ValueError(f"{command}: positional argument {word!r} after --")
        if name in app["set_by_entrypoint"]:
            raise ValueError(f"{command}: {name} is set by the entrypoint itself")
        if name in flags:
            if eq:
                raise ValueError(f"{command}: {name} is a flag and takes no value")
        elif name not in options:
            raise ValueError(f"{command}: {name} is not an option of the spawned program")
        elif not eq or value == "":
            raise ValueError(f"{command}: {name} must be written {name}=VALUE")
        seen[name] = value
    return seen


def _required(command: str, spec: dict, seen: dict) -> str:
    missing = [o for o in spec["required"] if o not in seen]
    if missing:
        raise ValueError(f"{command}: missing required option(s) {', '.join(missing)}")
    return command


def _containers(role: str) -> list[dict]:
    return render_var(["qserv", role], VARS, f"{role}_containers")


def test_table_records_its_origin():
    assert TABLE["origin"]["repository"] == "lsst/qserv" and len(TABLE["origin"]["commit"]) == 40
    assert {"proxy", "worker-cmsd", "worker-xrootd", "worker-repl", "replication-controller",
            "replication-registry", "smig-update"} <= set(TABLE["commands"])


@pytest.mark.parametrize("role", ["qserv_czar", "qserv_worker"])
def test_every_entrypoint_command_matches_upstream_options(role):
    commands = {}
    for c in _containers(role):
        argv = [str(a) for a in c["command"]]
        if c["image"] == VARS["qserv_mariadb_image"]:
            assert argv[:1] == ["--port"], c["name"]  # the MariaDB image: mysqld options
            continue
        commands[c["name"]] = check_entrypoint(argv)
        command, _, after = commands[c["name"]]
        if after:
            check_spawned(command, after)
    assert commands, role
    if role == "qserv_czar":
        assert {n: v[0] for n, v in commands.items()} == {
            "qserv-czar-proxy": "proxy", "qserv-czar-cmsd": "cmsd-manager",
            "qserv-czar-xrootd": "xrootd-manager", "qserv-repl-registry": "replication-registry",
            "qserv-repl-controller": "replication-controller"}
        ctl = commands["qserv-repl-controller"][1]
        assert ctl["--db-uri"][0].endswith(":3307/qservReplica")  # the replication database
        assert "--controller-http-server-port=25081" in commands["qserv-repl-controller"][2]
    else:
        assert {v[0] for v in commands.values()} == {"worker-cmsd", "worker-xrootd", "worker-repl"}
        xrd = commands["qserv-worker-xrootd"][1]
        assert xrd["--vnid-config"][0].startswith("@/usr/local/lib64/libreplica.so mysql://")
        assert xrd["--repl-registry-host"] == ["czar.test"]


def test_schema_migration_step_covers_every_database():
    argv = render_var(["qserv", "qserv_czar"], VARS, "qserv_czar_smig_command")
    command, seen, _ = check_entrypoint([str(a) for a in argv])
    assert command == "smig-update"
    assert seen["--czar-connection"][0].endswith("/qservMeta")
    assert seen["--repl-connection"][0].endswith(":3307/qservReplica")
    assert seen["--worker-connection"] == [f"mysql://root:root-secret-123@{w}:3306/qservw_worker"
                                           for w in ("w1.test", "w2.test")]


@pytest.mark.parametrize(("argv", "problem"), [
    (["entrypoint", "czar-http", "--port", "4048"], "unknown subcommand czar-http"),
    (["entrypoint", "proxy", "--db-uri", "mysql://a@h:1"], "missing required option(s) --db-admin-uri"),
    (["entrypoint", "worker-cmsd", "--port", "1"], "unknown option '--port'"),
    (["entrypoint", "proxy", "--db-uri", "--db-admin-uri", "x"], "--db-uri needs a value"),
    (["entrypoint", "cmsd-manager", "--", "--x"], "takes no arguments after --"),
])
def test_checker_rejects_what_upstream_rejects(argv, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        check_entrypoint(argv)


@pytest.mark.parametrize(("command", "args", "problem"), [
    ("replication-controller", ["--http-port=25081"], "--http-port is not an option"),  # the old role's
    ("worker-repl", ["--worker=w1"], "--worker is not an option"),                     # the old role's
    ("worker-repl", ["--instance-id"], "--instance-id must be written --instance-id=VALUE"),
    ("worker-repl", ["--debug=1"], "--debug is a flag"),
    ("worker-repl", ["--qserv-worker-db=mysql://x"], "set by the entrypoint itself"),
    ("replication-registry", ["w1"], "positional argument"),
])
def test_spawned_program_checker_rejects_what_upstream_rejects(command, args, problem):
    with pytest.raises(ValueError, match=problem):
        check_spawned(command, args)


def test_spawned_table_records_its_origin():
    origin = TABLE["spawned_apps"]["origin"]
    assert origin["repository"] == "lsst/qserv" and len(origin["commit"]) == 40
    assert check_spawned("replication-controller", ["--controller-http-server-port=25081", "--debug"]) == {
        "--controller-http-server-port": "25081", "--debug": ""}
