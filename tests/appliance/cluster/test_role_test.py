"""`appliance cluster test ROLE`: converge, verify, idempotence of one role on a fresh local node.

The slow tests really run each role that can run here (mariadb, archive, gridftp, pipeline) on a
container of the locked base image, and show that verify fails (exit 9, the assertion named) on a
node broken after converge; the fast ones check the refusals (exit 2, one line naming the reason)
and the one-host inventory the test node gets.
"""

from __future__ import annotations

import json
import os

import pytest

from appliance.cli import main
from appliance.cluster.inventory import load_inventory
from appliance.cluster.roletest import NOT_RUNNABLE, RUNNABLE, VERIFY_DIR, write_template
from appliance.exitcodes import Exit
from tests.prereq import require


def test_every_role_is_testable_or_has_a_reason():
    from appliance.cluster.inventory import PLAYBOOKS

    roles = {p.name for p in (PLAYBOOKS / "roles").iterdir() if p.is_dir()}
    assert roles <= set(RUNNABLE) | set(NOT_RUNNABLE), roles - set(RUNNABLE) - set(NOT_RUNNABLE)
    assert {"mariadb", "archive", "gridftp", "pipeline"} <= set(RUNNABLE)
    assert all((VERIFY_DIR / f"{r}.yml").is_file() for r in RUNNABLE)


@pytest.mark.parametrize(("role", "words"), [("beegfs_storage", "cannot be tested on this machine"),
                                             ("qserv_czar", "cannot be tested on this machine"),
                                             ("nosuch", "no role 'nosuch'")])
def test_refused_roles_exit_2_with_one_line(role, words, capsys, tmp_path):
    rc = main(["cluster", "test", role, "--state-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "s").exists()  # refused before any node was made


@pytest.mark.parametrize("role", sorted(RUNNABLE))
def test_template_puts_one_host_in_the_roles_groups(role, tmp_path):
    host = write_template(role, tmp_path / "t")
    inv = load_inventory([tmp_path / "t"])
    assert list(inv.nodes) == [host]
    assert set(inv.nodes[host].groups) == set(RUNNABLE[role])


def test_gridftp_node_gets_the_local_clusters_gridftp_settings_only(tmp_path):
    """In the local cluster GridFTP shares the archive node: its settings come from archive.yml."""
    import yaml

    write_template("gridftp", tmp_path / "t")
    got = yaml.safe_load((tmp_path / "t" / "group_vars" / "gridftp.yml").read_text())
    assert got["gridftp_hostcert_src"] == "{{ cluster_state_dir }}/pki/hostcert.pem"
    assert got["gridftp_gridmap_entries"][0]["user"] == "gridftp"
    assert all(k.startswith("gridftp_") for k in got), sorted(got)


@pytest.mark.parametrize("step", ["verify", "idempotence"])
def test_a_lone_step_without_a_kept_node_exits_2(step, capsys, tmp_path):
    rc = main(["cluster", "test", "gridftp", "--step", step, "--state-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"no test node for --step {step}" in err and "--keep" in err, err
    assert len(err.splitlines()) == 1, err


def _engine_ready() -> bool:
    from tests.appliance.cluster.test_local_cluster import _engine_ready as ready

    return ready()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", ["mariadb", "archive", "pipeline"])
def test_role_converges_verifies_and_is_idempotent(role, capsys, tmp_path):
    require(_engine_ready(), "Docker engine with the locked base/archive images (`appliance images ensure`)")
    name = f"rt{os.getpid() % 100000}{role[:3]}"
    rc, result = _run_json(["cluster", "test", role, "--state-dir", str(tmp_path / "state"), "--name", name], capsys)
    assert rc == 0 and result["ok"] and result["failed_step"] is None, json.dumps(result, indent=1)[-3000:]
    steps = {s["step"]: s for s in result["steps"]}
    assert list(steps) == ["converge", "verify", "idempotence"]
    assert steps["converge"]["changed"] > 0  # a fresh node: the role really did something
    assert steps["idempotence"]["changed"] == 0 and steps["idempotence"]["changed_tasks"] == []
    import docker

    left = docker.from_env().containers.list(all=True, filters={"label": f"org.appliance.cluster={name}"})
    assert left == []  # the node (and the archive container it started) were removed


def _run_json(argv: list[str], capsys) -> tuple[int, dict]:
    rc = main([*argv, "--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out[out.find("{"):])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gridftp_passes_then_verify_fails_on_a_broken_node(capsys, tmp_path):
    """One converged GridFTP node, kept: the full sequence passes; then a config value changed in
    the node makes a lone verify step fail with exit 9, naming the assertion and the missing line."""
    import docker

    require(_engine_ready(), "Docker engine with the locked base image (`appliance images ensure`)")
    name, state = f"rt{os.getpid() % 100000}gft", tmp_path / "state"
    client = docker.from_env()
    try:
        rc, result = _run_json(["cluster", "test", "gridftp", "--state-dir", str(state), "--name", name,
                                "--keep"], capsys)
        assert rc == 0 and result["ok"] and result["kept"], json.dumps(result, indent=1)[-3000:]
        steps = {s["step"]: s for s in result["steps"]}
        assert steps["converge"]["changed"] > 0 and steps["idempotence"]["changed"] == 0

        node = client.containers.get(f"{name}-rt-gridftp")
        broke = node.exec_run(["sed", "-i", "s/^log_level .*/log_level ALL/", "/etc/gridftp.conf"])
        assert broke.exit_code == 0, broke.output
        rc, result = _run_json(["cluster", "test", "gridftp", "--state-dir", str(state), "--step", "verify"],
                               capsys)
        assert rc == Exit.REMOTE == 9 and not result["ok"] and result["failed_step"] == "verify", result
        [verify] = result["steps"]
        assert verify["step"] == "verify" and not verify["ok"]
        [failure] = verify["failures"]
        assert failure.startswith("rt-gridftp: The configuration holds the inventory's port"), failure
        assert "lacks ['log_level ERROR,WARN,INFO']" in failure, failure
        assert result["kept"] and node.reload() is None and node.status == "running"  # a lone step keeps it
    finally:
        for c in client.containers.list(all=True, filters={"label": f"org.appliance.cluster={name}"}):
            c.remove(force=True)


def test_verify_playbooks_pass_the_syntax_check():
    """A YAML or task error in a verify playbook shows here, not minutes into a role test."""
    import subprocess

    from tests.playbooks.runner import BIN

    env = {**os.environ, "ANSIBLE_CONFIG": str(VERIFY_DIR.parent / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    books = sorted(str(VERIFY_DIR / f"{r}.yml") for r in RUNNABLE)
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", *books],
                          cwd=VERIFY_DIR.parent, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("playbook: ") == len(books), proc.stdout
