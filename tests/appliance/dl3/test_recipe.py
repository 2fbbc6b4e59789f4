"""recipes/dl3-crab on the real engine: conversion and gammapy fit in the locked dl3 image, cache hit,
replay with a FITS-aware verdict, a changed converter refused, and the committed lock up to date."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from appliance.cli import main as cli
from appliance.config import REPO_ROOT
from tests.prereq import require

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RECIPE = REPO_ROOT / "recipes" / "dl3-crab"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_committed_lock_matches_the_converter_sources() -> None:
    """The lock pins the converter: every input is a source file of appliance.dl3 (or what it imports) at
    its current bytes, and the image is the tracked dl3 image. Fails after a change to appliance/dl3 until
    `appliance lock recipes/dl3-crab` is run."""
    recipe = yaml.safe_load((RECIPE / "recipe.yaml").read_text())
    lock = yaml.safe_load((RECIPE / "recipe.lock").read_text())
    images = yaml.safe_load((REPO_ROOT / "images" / "images.lock").read_text())
    assert lock["image"]["image_id"] == images["images"]["dl3"]["image_id"]
    sources = {f"{'.'.join(p.relative_to(REPO_ROOT).with_suffix('').parts)}.py": p
               for p in [*(REPO_ROOT / "appliance" / "dl3").glob("*.py")]}
    assert {i["name"] for i in recipe["inputs"]} >= set(sources), "a module of appliance/dl3 is not an input"
    stale = [i["name"] for i in lock["inputs"]
             if i["sha256"] != _sha256((RECIPE / i["uri"]).resolve())]
    assert not stale, f"recipe.lock is stale for {stale}: run `appliance lock recipes/dl3-crab`"
    assert [i["name"] for i in lock["inputs"]] == [i["name"] for i in recipe["inputs"]]


def _tree(tmp_path: Path) -> Path:
    """The recipe and the converter's sources in the repository's layout (the inputs' ../../ URIs hold)."""
    shutil.copytree(RECIPE, tmp_path / "recipes" / "dl3-crab", ignore=shutil.ignore_patterns("recipe.lock"))
    for name in ("__init__.py", "errors.py", "exitcodes.py", "fsutil.py"):
        (tmp_path / "appliance").mkdir(exist_ok=True)
        shutil.copyfile(REPO_ROOT / "appliance" / name, tmp_path / "appliance" / name)
    shutil.copytree(REPO_ROOT / "appliance" / "dl3", tmp_path / "appliance" / "dl3",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "recipes" / "dl3-crab"


def test_dl3_crab_runs_fits_and_replays(locked_images, tmp_path: Path, capsys) -> None:
    require("dl3" in locked_images.images, "image 'dl3' not locked: run `make images`")
    home = str(tmp_path / "home")
    d = _tree(tmp_path)
    assert cli(["lock", str(d), "--home", home]) == 0
    capsys.readouterr()
    assert cli(["run", str(d), "--home", home, "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["state"] == "succeeded" and not rec["cache_hit"], rec
    outputs = rec["outputs"]  # name -> sha256
    assert {"dl3/obs-index.fits.gz", "dl3/hdu-index.fits.gz", "fit.json", "summary.txt"} <= set(outputs)
    assert sum(n.startswith("dl3/obs_") for n in outputs) == 4
    record = json.loads((tmp_path / "home" / "runs" / rec["run_id"] / "record.json").read_text())
    recorded = {i["name"]: i["sha256"] for i in record["inputs"]}
    assert recorded["appliance.dl3.irf.py"] == _sha256(tmp_path / "appliance" / "dl3" / "irf.py")

    fit_sha = outputs["fit.json"]
    fit = json.loads((tmp_path / "home" / "store" / "objects" / "sha256" / fit_sha[:2] / fit_sha).read_text())
    assert fit["success"] and fit["observations"] == [5000, 5001, 5002, 5003]
    pulls = {p: v["pull"] for p, v in fit["parameters"].items()}
    # The same data set as test_proof's fit (seed 3): within 1 sigma for amplitude and index, 3 for beta.
    assert abs(pulls["amplitude"]) < 1 and abs(pulls["alpha"]) < 1 and abs(pulls["beta"]) < 3, pulls
    assert fit["parameters"]["amplitude"]["error"] / fit["parameters"]["amplitude"]["value"] < 0.06

    assert cli(["run", str(d), "--home", home, "--json"]) == 0  # same lock, same key: the cache answers
    again = json.loads(capsys.readouterr().out)
    assert again["cache_hit"] and again["run_id"] == rec["run_id"] and again["outputs"] == outputs, again

    assert cli(["replay", rec["run_id"], "--home", home, "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["status"] == "identical", verdict
    kinds = {o["path"]: o["policy"] for o in verdict["outputs"]}
    assert kinds["dl3/obs_005000.fits.gz"] == "fits" and kinds["fit.json"] == "text"


def test_a_changed_converter_is_refused(locked_images, tmp_path: Path, capsys) -> None:
    require("dl3" in locked_images.images, "image 'dl3' not locked: run `make images`")
    home = str(tmp_path / "home")
    d = _tree(tmp_path)
    assert cli(["lock", str(d), "--home", home]) == 0
    irf = tmp_path / "appliance" / "dl3" / "irf.py"
    irf.write_text(irf.read_text() + "\n# changed\n")
    capsys.readouterr()
    assert cli(["run", str(d), "--home", home]) == 4
    err = capsys.readouterr().err
    assert "appliance.dl3.irf.py" in err and "Traceback" not in err
