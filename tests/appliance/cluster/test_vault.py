"""Secrets in an ansible-vault encrypted group_vars/all/vault.yml reach every host that uses them.

Real ansible-vault (the venv's), real ansible-inventory and a real playbook run through
ansible-runner; the example-production inventory is used as shipped, its hosts reached by the
``local`` connection (nothing leaves this machine) and the rendered secrets written per host.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from appliance.cli import main
from appliance.cluster.inventory import PLAYBOOKS, ansible_env, load_inventory
from appliance.cluster.provision import run_site

BIN = Path(sys.executable).parent
EXAMPLE = PLAYBOOKS / "inventories" / "example-production"
SECRETS = {
    "vault_beegfs_conn_auth_secret": "s3cret-beegfs-auth-0123456789",
    "vault_qserv_mariadb_root_password": "s3cret-qserv-root",
    "vault_qserv_repl_auth_key": "s3cret-repl",
    "vault_qserv_repl_admin_auth_key": "s3cret-repl-admin",
    "vault_archive_catalog_dsn": "host=db port=5432 dbname=lta user=lta password=s3cret-dsn",
    "vault_mariadb_reference_password": "s3cret-reference",
    "vault_mariadb_root_password": "s3cret-mariadb-root",
}


def _encrypt(path: Path, data: dict, password_file: Path) -> None:
    path.write_text(yaml.safe_dump(data))
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password_file),
                    str(path)], check=True, env=ansible_env(), capture_output=True, timeout=60)
    assert path.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")


@pytest.fixture
def production(tmp_path):
    inv = tmp_path / "inv"
    shutil.copytree(EXAMPLE, inv)
    example = yaml.safe_load((inv / "group_vars" / "all" / "vault.yml.example").read_text())
    assert set(example) <= set(SECRETS), "the test knows every secret of the example vault"
    pw = tmp_path / "vault-pass"
    pw.write_text("correct horse battery staple\n")
    pw.chmod(0o600)
    _encrypt(inv / "group_vars" / "all" / "vault.yml", SECRETS, pw)
    return inv, pw


def test_example_vault_file_is_not_loaded_by_itself():
    """The .example file is ignored by Ansible (else its placeholders would be real values)."""
    inv = load_inventory([EXAMPLE])
    assert inv.nodes and "vault" not in inv.groups


def test_encrypted_vault_variables_arrive_rendered_at_every_host(production, tmp_path):
    inv, pw = production
    play = tmp_path / "show.yml"
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Write what this host sees\n"
        "      ansible.builtin.copy:\n"
        "        dest: '{{ out }}/{{ inventory_hostname }}.yml'\n"
        "        mode: '0600'\n"
        "        content: |\n"
        "          beegfs: {{ beegfs_conn_auth_secret | to_json }}\n"
        "          qserv_root: {{ qserv_mariadb_root_password | to_json }}\n"
        "          dsn: {{ archive_catalog_dsn | default('') | to_json }}\n"
        "          reference: {{ (mariadb_users | default([{'password': ''}]))[0].password | to_json }}\n"
        "      no_log: true\n")
    out = tmp_path / "out"
    out.mkdir()
    result = run_site([inv], tmp_path / "state", playbook=play, progress=False, vault_password_file=pw,
                      extravars={"out": str(out), "ansible_connection": "local",
                                 "ansible_python_interpreter": sys.executable})
    assert result.ok, result.report()
    seen = {p.stem: yaml.safe_load(p.read_text()) for p in out.glob("*.yml")}
    hosts = load_inventory([inv], pw).nodes
    assert set(seen) == set(hosts) and len(seen) >= 8
    for host, got in seen.items():
        assert got["beegfs"] == SECRETS["vault_beegfs_conn_auth_secret"], host
        assert got["qserv_root"] == SECRETS["vault_qserv_mariadb_root_password"], host
    assert seen["lta01.example.org"]["dsn"] == SECRETS["vault_archive_catalog_dsn"]
    assert seen["qserv-czar01.example.org"]["reference"] == SECRETS["vault_mariadb_reference_password"]
    # no_log tasks are counted (one changed file per host) and the secrets stay out of the artifacts
    assert result.changed_by_host() == dict.fromkeys(sorted(hosts), 1)
    artifacts = "".join(p.read_text(errors="replace") for p in Path(result.artifacts).rglob("*") if p.is_file())
    assert not any(s in artifacts for s in SECRETS.values())


def test_cli_takes_the_vault_password_file(tmp_path, capsys, monkeypatch):
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    n1:\n      ansible_connection: local\n")
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    _encrypt(inv / "group_vars" / "all" / "vault.yml", {"vault_x": "y"}, pw)
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    assert main(["cluster", "exec", "--inventory", str(inv), "--", "true"]) == 2
    assert "vault" in capsys.readouterr().err.lower()
    assert main(["cluster", "exec", "--inventory", str(inv), "--vault-password-file", str(pw),
                 "--", "true"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(pw))  # the documented alternative
    assert main(["cluster", "exec", "--inventory", str(inv), "--", "true"]) == 0
    assert main(["cluster", "exec", "--inventory", str(inv), "--vault-password-file",
                 str(tmp_path / "missing"), "--", "true"]) == 2
    assert "no such file" in capsys.readouterr().err
