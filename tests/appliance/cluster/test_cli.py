"""`appliance cluster`: teaching help, clear errors and exit codes for bad inventories."""

from __future__ import annotations

from appliance.cli import main


def test_help_lists_actions(capsys):
    try:
        main(["cluster", "--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    for action in ("up", "provision", "status", "exec", "logs", "down"):
        assert action in out
    assert "--driver containers" in out


def test_provision_without_inventory_is_a_clear_error(tmp_path, capsys):
    rc = main(["cluster", "provision", "--state-dir", str(tmp_path / "none")])
    assert rc == 2
    assert "no --inventory given" in capsys.readouterr().err


def test_status_with_missing_inventory(tmp_path, capsys):
    rc = main(["cluster", "status", "--inventory", str(tmp_path / "missing.yml")])
    assert rc == 2 and "inventory not found" in capsys.readouterr().err


def test_exec_with_unknown_group(tmp_path, capsys):
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    n1:\n      ansible_connection: local\n")
    rc = main(["cluster", "exec", "--inventory", str(inv), "--limit", "qserv_czar", "--", "true"])
    assert rc == 2 and "no host or group named 'qserv_czar'" in capsys.readouterr().err


def test_exec_and_status_on_a_local_node(tmp_path, capsys):
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    n1:\n      ansible_connection: local\n")
    assert main(["cluster", "exec", "--inventory", str(inv), "--json", "--", "echo", "ok"]) == 0
    assert '"stdout": "ok\\n"' in capsys.readouterr().out
    assert main(["cluster", "status", "--inventory", str(inv)]) == 0
    assert "uptime:" in capsys.readouterr().out
