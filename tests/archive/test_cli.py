"""The ``archive`` command line: ingest (FITS metadata, symlinks refused), ls/stat --json,
catalog backup and rebuild from tapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from archive.cli import main


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_cli_cycle(tmp_path, capsys):
    from tests.archive.test_fits_search import write_fits

    cfg = tmp_path / "lta.yaml"
    cfg.write_text(yaml.safe_dump({"root": str(tmp_path / "lta"), "clock": {"mode": "simulated"},
                                   "migration": {"batch_files": 2}}))
    src = tmp_path / "obs"
    src.mkdir()
    write_fits(src / "a.fits", TELESCOP="LOFAR", INSTRUME="HBA", OBS_ID="L1", RA=10.0, DEC=5.0)
    (src / "b.txt").write_text("hello")
    code, out = run(capsys, "--config", str(cfg), "--json", "ingest", str(src), "--dest", "/l")
    assert code == 0 and len(json.loads(out)) == 2
    code, out = run(capsys, "ls", "/l/obs", "--config", str(cfg), "--json")
    assert {r["path"] for r in json.loads(out)} == {"/l/obs/a.fits", "/l/obs/b.txt"}
    code, out = run(capsys, "stat", "/l/obs/a.fits", "--config", str(cfg), "--json")
    assert json.loads(out)["metadata"]["observation"] == "L1"
    # symlinks are refused unless asked for
    os.symlink(src / "b.txt", tmp_path / "link.txt")
    code = main(["--config", str(cfg), "ingest", str(tmp_path / "link.txt"), "--dest", "/l"])
    assert code != 0 and "symbolic link" in capsys.readouterr().err
    # migrate to tape with the engine (simulated clock), then rebuild the catalog from tapes
    from archive.config import load_config
    from archive.engine import Archive

    a = Archive(load_config(cfg, env={}))
    a.run_for(1000)
    assert a.locality("/l/obs/a.fits") == "DISK_AND_TAPE"
    a.close()
    code, out = run(capsys, "--config", str(cfg), "catalog", "backup", str(tmp_path / "bk.db"))
    assert code == 0 and (tmp_path / "bk.db").exists()
    code, out = run(capsys, "--config", str(cfg), "--json", "catalog", "rebuild", "--into",
                    str(tmp_path / "re.db"))
    res = json.loads(out)
    assert code == 0 and res["ok"] and res["files"] == 2 and res["disk_copies"] == 2
    code, out = run(capsys, "--config", str(cfg), "--json", "tapes")
    assert sum(t["records"] for t in json.loads(out)) >= 2


def test_help_teaches():
    out = subprocess.run([sys.executable, "-m", "archive.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "typical session" in out and "catalog" in out and "stage" in out
