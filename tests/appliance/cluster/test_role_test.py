"""`appliance cluster test ROLE`: converge, verify, idempotence of one role on a fresh local node.

The slow tests really run each role that can run here (mariadb, archive) on a container of the
locked base image; the fast ones check the refusals (exit 2, one line naming the reason) and the
one-host inventory the test node gets.
"""

from __future__ import annotations

import json
import os

import pytest

from appliance.cli import main
from appliance.cluster.inventory import load_inventory
from appliance.cluster.roletest import NOT_RUNNABLE, RUNNABLE, VERIFY_DIR, write_template
from tests.prereq import require


def test_every_role_is_testable_or_has_a_reason():
    from appliance.cluster.inventory import PLAYBOOKS

    roles = {p.name for p in (PLAYBOOKS / "roles").iterdir() if p.is_dir()}
    assert roles <= set(RUNNABLE) | set(NOT_RUNNABLE), roles - set(RUNNABLE) - set(NOT_RUNNABLE)
    assert {"mariadb", "archive"} <= set(RUNNABLE)
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


def _engine_ready() -> bool:
    from tests.appliance.cluster.test_local_cluster import _engine_ready as ready

    return ready()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", ["mariadb", "archive"])
def test_role_converges_verifies_and_is_idempotent(role, capsys, tmp_path):
    require(_engine_ready(), "Docker engine with the locked base/archive images (`appliance images ensure`)")
    name = f"rt{os.getpid() % 100000}{role[:3]}"
    rc = main(["cluster", "test", role, "--state-dir", str(tmp_path / "state"), "--name", name, "--json"])
    out = capsys.readouterr().out
    result = json.loads(out[out.find("{"):])
    assert rc == 0 and result["ok"] and result["failed_step"] is None, json.dumps(result, indent=1)[-3000:]
    steps = {s["step"]: s for s in result["steps"]}
    assert list(steps) == ["converge", "verify", "idempotence"]
    assert steps["converge"]["changed"] > 0  # a fresh node: the role really did something
    assert steps["idempotence"]["changed"] == 0 and steps["idempotence"]["changed_tasks"] == []
    import docker

    left = docker.from_env().containers.list(all=True, filters={"label": f"org.appliance.cluster={name}"})
    assert left == []  # the node (and the archive container it started) were removed
