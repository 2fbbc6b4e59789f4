"""Render role templates and defaults the way Ansible does, without a host.

Why: BeeGFS and Qserv cannot be installed on this machine, so what their roles would write (config
files, container definitions) is rendered with Ansible's own templar from the roles' defaults plus
inventory-like variables, and checked against upstream's documented keys and our pinning rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
ROLES = PLAYBOOKS / "roles"


def _trust(value: Any) -> Any:
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trust(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trust(v) for v in value]
    return value


def role_defaults(*roles: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for role in roles:
        path = ROLES / role / "defaults" / "main.yml"
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def templar(roles: list[str], extra: dict[str, Any]) -> Templar:
    variables = {
        "ansible_managed": "Ansible managed (test render)",
        "inventory_hostname": "node1.test",
        "inventory_hostname_short": "node1",
        "ansible_distribution_release": "bookworm",
        "ansible_kernel": "6.1.0-test",
        "playbook_dir": str(PLAYBOOKS),
        "groups": {"all": ["node1.test"]},
        **role_defaults(*roles),
        **extra,
    }
    return Templar(loader=DataLoader(), variables=_trust(variables))


def render_file(roles: list[str], extra: dict[str, Any], template: Path) -> str:
    return str(templar(roles, extra).template(trust_as_template(template.read_text())))


def render_var(roles: list[str], extra: dict[str, Any], name: str) -> Any:
    t = templar(roles, extra)
    return t.template(trust_as_template("{{ " + name + " }}"))
