"""Replay verdicts on the real engine: identical, within tolerance, differs (located)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from appliance.cli import main as cli
from appliance.config import REPO_ROOT
from appliance.runs.replay import replay
from tests.appliance.conftest import write_recipe
from tests.appliance.runs.test_run import det_recipe, quiet_runner

pytestmark = pytest.mark.docker


def test_replay_identical(settings, scratch_image, tmp_path: Path) -> None:
    r = quiet_runner(settings)
    rec = r.run(det_recipe(tmp_path, scratch_image)).record
    verdict, new = replay(r, rec.run_id)
    assert verdict.status == "identical" and verdict.ok and new.replay_of == rec.run_id
    assert new.verdict["status"] == "identical"


def test_replay_fits_recipe_within_tolerance(settings, locked_images, tmp_path: Path, capsys) -> None:
    d = tmp_path / "fits-sky-model"
    shutil.copytree(REPO_ROOT / "recipes" / "fits-sky-model", d, ignore=shutil.ignore_patterns("recipe.lock"))
    r = quiet_runner(settings)
    rec = r.run(d).record
    assert {o.name for o in rec.outputs} == {"sky.fits", "sources.fits", "summary.txt"}
    code = cli(["replay", rec.run_id, "--home", str(settings.home), "--json"])
    verdict = json.loads(capsys.readouterr().out)
    assert code == 0 and verdict["status"] == "within_tolerance"
    sky = next(o for o in verdict["outputs"] if o["path"] == "sky.fits")
    assert sky["status"] == "within_tolerance" and any("DATE" in t for t in sky["tolerated"])
    assert next(o for o in verdict["outputs"] if o["path"] == "sources.fits")["status"] == "identical"


UNSEEDED = """\
import os
import numpy as np
from astropy.io import fits
img = np.zeros((8, 8), dtype=np.float32)
img[2, 5] = int.from_bytes(os.urandom(4), "little")   # not seeded: differs on every run
fits.PrimaryHDU(img).writeto("/output/img.fits")
"""


def test_replay_unseeded_differs_with_position(settings, locked_images, tmp_path: Path, capsys) -> None:
    d = write_recipe(tmp_path / "unseeded", {"name": "unseeded", "image": "pipeline",
                                             "command": ["python3", "/recipe/main.py"],
                                             "outputs": [{"path": "img.fits", "compare": "fits"}]},
                     {"main.py": UNSEEDED})
    r = quiet_runner(settings)
    rec = r.run(d).record
    code = cli(["replay", rec.run_id, "--home", str(settings.home), "--json"])
    verdict = json.loads(capsys.readouterr().out)
    assert code == 6 and verdict["status"] == "differs" and not verdict["ok"]
    diffs = verdict["outputs"][0]["differences"]
    assert diffs[0]["hdu"].startswith("0") and diffs[0]["pixel_fits_xy"] == [6, 3]


def test_replay_detects_tampered_output(settings, scratch_image, tmp_path: Path) -> None:
    """Tampering the recorded output (as if the archive copy rotted) is caught by replay."""
    r = quiet_runner(settings)
    rec = r.run(det_recipe(tmp_path, scratch_image)).record
    tampered = r.store.add_bytes(b"tampered\n")
    record_path = settings.home / "runs" / rec.run_id / "record.json"
    data = json.loads(record_path.read_text())
    data["outputs"][0]["sha256"] = tampered.sha256
    record_path.write_text(json.dumps(data))
    verdict, _ = replay(r, rec.run_id)
    assert verdict.status == "differs"
    assert verdict.comparisons[0].differences == [{"first_differing_byte": 0}]
