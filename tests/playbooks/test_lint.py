"""The playbooks pass --syntax-check with every inventory, ansible-lint, and `vagrant validate`."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.playbooks.render import PLAYBOOKS, REPO
from tests.playbooks.runner import BIN
from tests.prereq import require

INVENTORIES = ["vagrant", "local-containers", "example-production"]


def _env():
    import os

    return {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{BIN}:{os.environ['PATH']}"}


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_syntax_check(inventory):
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i",
                           str(PLAYBOOKS / "inventories" / inventory), "site.yml"],
                          cwd=PLAYBOOKS, capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_ansible_lint_production_profile():
    proc = subprocess.run([str(BIN / "ansible-lint"), "--profile", "production", "--nocolor"],
                          cwd=PLAYBOOKS, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def test_vagrantfile_validates():
    require(shutil.which("vagrant") is not None, "vagrant is not installed (Makefile APT_PACKAGES)")
    # No provider (libvirt/VirtualBox) exists here: validate everything else, as `vagrant` allows.
    proc = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    for machine in ("mgmt", "brick1", "brick2", "czar", "worker1", "worker2", "lta", "pipe"):
        assert f"{machine}:" in proc.stdout
