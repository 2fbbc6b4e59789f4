"""`archive catalog rebuild` as an operator runs it: the real command, after a random history.

The library-level proof is test_rebuild.py; this one goes through the command line an operator
types after losing the catalog: the configured catalog is moved aside (never deleted), the new one
is built from the cartridges alone and equals the old one entry by entry, and the refusals (an
existing catalog without --replace, an --into that exists) are one line and exit code 2 (usage), with
nothing changed on disk.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from archive.catalog_sqlite import SqliteCatalog
from archive.clock import SimClock
from archive.config import load_config
from archive.engine import Archive
from tests.archive.test_rebuild import _history, _tree

ARCHIVE = [sys.executable, "-m", "archive.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ARCHIVE, *args], capture_output=True, text=True, timeout=300)


def _config_file(root: Path) -> Path:
    data = {
        "root": str(root),
        "clock": {"mode": "simulated"},
        "tape": {"cartridges": 3, "capacity_bytes": 50_000_000, "drives": 2, "copies": 2,
                 "mount_seconds": 60, "unmount_seconds": 60},
        "migration": {"max_age_seconds": 120, "batch_files": 1000},
        "cache": {"capacity_bytes": 10_000_000},
    }
    path = root.parent / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_rebuild_replace_from_the_command_line(tmp_path):
    cfg_path = _config_file(tmp_path / "lta")
    cfg = load_config(str(cfg_path), env={})
    a = Archive(cfg, clock=SimClock())
    try:
        done = _history(a, random.Random(7), 200)
        a.run_for(2000)
        a.run_until_idle()
        want_files, want_dirs = _tree(a.catalog)
    finally:
        a.close()
    assert done.get("move collection", 0) >= 5 and sum(1 for v in want_files.values() if not v[3]) >= 1
    catalog_path = cfg.catalog_path
    before = catalog_path.read_bytes()

    # refused without --replace: one line, usage exit code, the catalog untouched
    r = _cli("catalog", "rebuild", "--config", str(cfg_path))
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--replace" in r.stderr and str(catalog_path) in r.stderr
    assert catalog_path.read_bytes() == before

    # --into a file that exists: refused the same way
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"keep me")
    r = _cli("catalog", "rebuild", "--config", str(cfg_path), "--into", str(taken))
    assert r.returncode == 2 and "already exists" in r.stderr and taken.read_bytes() == b"keep me", r

    r = _cli("catalog", "rebuild", "--config", str(cfg_path), "--replace", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] is True and report["records"] > 0, report
    kept = catalog_path.with_name(catalog_path.name + ".before-rebuild")
    assert kept.read_bytes() == before  # the old catalog is set aside, byte for byte

    fresh = SqliteCatalog(str(catalog_path))
    try:
        got_files, got_dirs = _tree(fresh)
    finally:
        fresh.close()
    assert got_files == want_files and got_dirs == want_dirs

    # and the archive opens on the rebuilt catalog and serves what it had
    shutil.rmtree(tmp_path / "lta" / "disk", ignore_errors=True)  # cache lost too: tape only
    r = _cli("catalog", "rebuild", "--config", str(cfg_path), "--into", str(tmp_path / "again.db"),
             "--json")
    assert r.returncode == 0, r.stderr
    again = SqliteCatalog(str(tmp_path / "again.db"))
    try:
        files, _ = _tree(again)
    finally:
        again.close()
    assert set(files) == set(want_files) and not any(v[3] for v in files.values())
