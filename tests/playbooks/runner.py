"""Run ansible-playbook on site.yml against a throw-away inventory (check mode, local connection)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.playbooks.render import PLAYBOOKS

BIN = Path(sys.executable).parent


def run_site(tmp: Path, groups: dict[str, dict[str, Any]], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``groups``: group name -> host vars of the single host ``testnode`` in that group."""
    hostvars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"children": {
        g: {"hosts": {"testnode": {**hostvars, **hv}}} for g, hv in groups.items()
    }}}
    inv = tmp / "hosts.yml"
    inv.write_text(yaml.safe_dump(inventory))
    cmd = [str(BIN / "ansible-playbook"), "-i", str(inv), str(PLAYBOOKS / "site.yml"), *args]
    if check:
        cmd.append("--check")
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"), "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-tmp")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
