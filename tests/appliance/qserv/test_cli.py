"""``appliance qserv`` end to end through the CLI, with --json outputs, export and the recipe's input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import yaml
from astropy.table import Table

from appliance.cli import main

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "recipes" / "cluster-catalog"


def run_json(capsys, *argv) -> tuple[int, dict]:
    rc = main(list(argv) + ["--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_cli_chain(tmp_path, capsys, mariadb):
    db = ["--socket", mariadb.unix_socket]
    rc, gen = run_json(capsys, "qserv", "generate", "--out", str(tmp_path / "f"), "--members", "150", "--background", "1200", "--stars", "50", "--visits", "1", "--radius", "0.25")
    assert rc == 0 and gen["n_objects"] > 1300
    rc, conv = run_json(capsys, "qserv", "convert", "--director", f"Object={tmp_path}/f/Object.fits", "--child", f"Source={tmp_path}/f/Source_*.fits", "--database", "clitest", "--out", str(tmp_path / "c"))
    assert rc == 0 and [t["name"] for t in conv["tables"]] == ["Object", "Source"]
    rc, part = run_json(capsys, "qserv", "partition", "--converted", str(tmp_path / "c"), "--out", str(tmp_path / "p"))
    assert rc == 0 and part["tables"][0]["overlap_rows"] > 0 and part["tables"][1]["director"] == "Object"
    rc, load = run_json(capsys, "qserv", "load", "--converted", str(tmp_path / "c"), "--partitioned", str(tmp_path / "p"), *db)
    assert rc == 0 and load["ok"] and len(load["loads"]) == 2
    rc, ver = run_json(capsys, "qserv", "verify", "--database", "clitest", *db)
    assert rc == 0 and ver["ok"] and len(ver["queries"]) == 8
    rc, exp = run_json(capsys, "qserv", "export", "--database", "clitest", "--out", str(tmp_path / "x.fits"), "--radius", "0.1", "--schema", str(tmp_path / "c" / "schema.yaml"), *db)
    assert rc == 0 and exp["rows"] > 100
    t = Table.read(tmp_path / "x.fits")
    assert str(t["coord_ra"].unit) == "deg" and list(t["objectId"]) == sorted(t["objectId"])
    rc, plan = run_json(capsys, "qserv", "ingest", "--converted", str(tmp_path / "c"), "--partitioned", str(tmp_path / "p"), "--dry-run")
    assert rc == 0 and plan["database"]["database"] == "clitest" and plan["uploads"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc = main(["qserv", "partition", "--converted", str(tmp_path / "missing"), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "schema.yaml" in err


def test_help_teaches():
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "qserv", "--help"], capture_output=True, text=True).stdout
    assert "Typical flow" in out and "QSERV_MYSQL_PASSWORD" in out


def test_recipe_input_matches_lock_and_analysis_runs(tmp_path):
    spec = yaml.safe_load((RECIPE / "recipe.yaml").read_text())
    data = RECIPE / spec["inputs"][0]["uri"]
    assert hashlib.sha256(data.read_bytes()).hexdigest() == spec["inputs"][0]["sha256"]
    p = spec["params"]
    cmd = [sys.executable, str(RECIPE / "cluster_catalog.py"), "--catalog", str(data), "--ra", str(p["ra"]), "--dec", str(p["dec"]), "--out", str(tmp_path)]
    subprocess.run(cmd, check=True)
    summary = (tmp_path / "summary.txt").read_text()
    members = Table.read(tmp_path / "members.fits")
    assert 300 < len(members) < 600  # 400 members were generated
    theta_e = float(summary.split("theta_E = ")[1].split()[0])
    assert 10 < theta_e < 40  # generated with theta_E = 25 arcsec
