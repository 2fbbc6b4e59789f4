"""The newcomer: a machine whose engine has none of the locked images, whose mirror has moved on
and which never kept the packages. `images ensure` and the demo must proceed with a drift report,
the tracked lock must stay as it is, and a recipe pinned to an absent image must say how to get
it back (exit 3, one line)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from appliance.config import REPO_ROOT
from tests.bare_engine import bare_engine

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1500)]
APPLIANCE = str(Path(sys.executable).with_name("appliance"))


def fake_id(what: str) -> str:
    return "sha256:" + hashlib.sha256(what.encode()).hexdigest()


def moved_images_dir(dest: Path, lock_source: dict) -> tuple[Path, dict[str, str]]:
    """base + pipeline specs, with a lock whose IDs no engine has and whose zlib1g is an older
    version than any mirror serves today."""
    images = dest / "images"
    for name in ("base", "pipeline"):
        shutil.copytree(REPO_ROOT / "images" / name, images / name)
    lock = {"images": {n: dict(lock_source["images"][n]) for n in ("base", "pipeline")}}
    ids = {"base": fake_id("newcomer-base"), "pipeline": fake_id("newcomer-pipeline")}
    base = lock["images"]["base"]
    base["image_id"], base["diff_ids"] = ids["base"], [fake_id("newcomer-layer")]
    for deb in base["debs"]:
        if deb["package"] == "zlib1g":
            deb["version"], deb["sha256"] = "1:1.2.13.dfsg-0.1", hashlib.sha256(b"gone").hexdigest()
    lock["images"]["pipeline"].update(image_id=ids["pipeline"], base_image_id=ids["base"])
    (images / "images.lock").write_text(yaml.safe_dump(lock, sort_keys=True))
    return images, ids


def test_moved_mirror_fresh_engine_proceeds_with_a_drift_report(tmp_path: Path) -> None:
    tracked = yaml.safe_load((REPO_ROOT / "images" / "images.lock").read_text())
    images, ids = moved_images_dir(tmp_path, tracked)
    lock_before = (images / "images.lock").read_bytes()
    store = tmp_path / "image-store"
    env = {"APPLIANCE_IMAGES_DIR": str(images), "APPLIANCE_IMAGE_STORE": str(store),
           "APPLIANCE_CONFIG": str(tmp_path / "none.yaml")}
    with bare_engine() as engine:
        proc = engine.run([APPLIANCE, "images", "ensure", "--json"], env=env)
        checks = {c["name"]: c for c in json.loads(proc.stdout)}
        assert {n: c["verdict"] for n, c in checks.items()} == {"base": "stand-in", "pipeline": "stand-in"}
        report = checks["base"]["reasons"][0]
        assert f"The locked identity {ids['base']}" in report
        assert "zlib1g: 1:1.2.13.dfsg-0.1 -> " in report  # the package that moved, old -> new
        assert str(store / "images.lock.local") in report and "--update-lock" in report
        assert "appliance import BUNDLE" in report and "rebuild --offline --packages FILE" in report
        assert (images / "images.lock").read_bytes() == lock_before  # the tracked lock never changes
        local = yaml.safe_load((store / "images.lock.local").read_text())["images"]
        assert local["base"]["replaces"] == ids["base"] and local["pipeline"]["replaces"] == ids["pipeline"]
        assert local["pipeline"]["base_image_id"] == local["base"]["image_id"]
        assert local["base"]["debs"] and store.joinpath("packages", "sha256").is_dir()

        again = engine.run([APPLIANCE, "images", "ensure"], env=env)
        assert again.stdout.count("present as its local stand-in") == 2, again.stdout

        demo = engine.run([sys.executable, "-m", "appliance.demo"],
                          env={**env, "APPLIANCE_DEMO_DIR": str(tmp_path / "demo")})
        assert demo.stdout.count("REPRODUCED: within tolerance") == 2, demo.stdout[-3000:]
        assert (images / "images.lock").read_bytes() == lock_before

        pinned = tmp_path / "pinned"
        shutil.copytree(REPO_ROOT / "recipes" / "fits-sky-model", pinned)
        text = (pinned / "recipe.lock").read_text()
        locked_id = yaml.safe_load(text)["image"]["image_id"]
        (pinned / "recipe.lock").write_text(text.replace(locked_id, ids["pipeline"]))
        run = engine.run([APPLIANCE, "run", "-q", str(pinned), "--home", str(tmp_path / "home")],
                         env=env, check=False)
        assert run.returncode == 3, run.stdout + run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
        assert ids["pipeline"] in lines[0] and "rebuild --offline --packages FILE" in lines[0]


def test_git_status_stays_empty_after_the_demo(tmp_path: Path, locked_images) -> None:
    """`make demo` writes only under .demo/ (ignored) and its own homes: never a tracked file."""
    if not (REPO_ROOT / ".git").exists():
        pytest.fail("the tests run from a git checkout (make test)")

    def status() -> str:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True).stdout

    before = status()
    env = {k: v for k, v in __import__("os").environ.items() if k != "APPLIANCE_DEMO_DIR"}
    proc = subprocess.run([sys.executable, "-m", "appliance.demo"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert status() == before
