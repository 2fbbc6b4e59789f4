"""CLI contract: one-line errors with meaningful exit codes, --help that teaches, --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli import main


def test_bad_recipe_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "recipe.yaml").write_text("name: x\nimage: pipeline\ncommand: []\n")
    assert main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "recipe.yaml:3" in err and "command" in err


def test_help_mentions_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "network none" in out and "Exit codes" in out


def test_images_list_json(capsys) -> None:
    assert main(["images", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["base"]["image_id"].startswith("sha256:") and rows["pipeline"]["image_id"].startswith("sha256:")
    assert set(rows["base"]) == {"image_id", "local"}  # local: this machine's stand-in, if any


def test_unknown_run(tmp_path: Path, capsys) -> None:
    assert main(["runs", "show", "nope", "--home", str(tmp_path)]) == 7
    assert "no run 'nope'" in capsys.readouterr().err


def test_help_needs_neither_numpy_nor_docker() -> None:
    """`appliance --help` must work on a node that only runs some commands (e.g. no numpy)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['numpy'] = None; sys.modules['docker'] = None\n"
            "from appliance.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    raise SystemExit(e.code)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for command in ("images", "run", "replay", "qserv", "cluster"):
        assert command in proc.stdout
