"""A derived image that installs a wheel from PyPI keeps it like its .debs: downloaded into the
package store, hashed in the lock, installed with `pip --require-hashes` from the store only, and
rebuilt bit for bit offline (a network namespace with loopback only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from appliance.config import REPO_ROOT
from appliance.images.lock import ImagesLock
from tests.bare_engine import bare_engine

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1500)]
APPLIANCE = str(Path(sys.executable).with_name("appliance"))
HERE = Path(__file__).resolve().parent


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([APPLIANCE, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_wheels_are_kept_hashed_and_rebuilt_offline(tmp_path: Path, locked_images) -> None:
    images = tmp_path / "images"
    shutil.copytree(REPO_ROOT / "images" / "base", images / "base")
    shutil.copytree(HERE / "wheelimage", images / "wheelimage")
    ImagesLock(images / "images.lock", {"base": locked_images.images["base"]}).save()
    store = tmp_path / "store"
    env = {"APPLIANCE_IMAGES_DIR": str(images), "APPLIANCE_CONFIG": str(tmp_path / "none.yaml"),
           "APPLIANCE_IMAGE_STORE": str(store)}
    # the base's packages, from this machine's store, into the test's own store
    machine = {k: v for k, v in env.items() if k != "APPLIANCE_IMAGE_STORE"}  # this machine's store
    cli("images", "export-packages", "base", "-o", str(tmp_path / "base.tar"), env=machine)
    cli("images", "import-packages", str(tmp_path / "base.tar"), env=env)

    built = json.loads(cli("images", "ensure", "wheelimage", "--json", env=env).stdout)
    assert {c["name"]: c["verdict"] for c in built} == {"base": "present", "wheelimage": "built"}
    local = yaml.safe_load((store / "images.lock.local").read_text())["images"]["wheelimage"]
    [wheel] = local["wheels"]
    assert (wheel["name"], wheel["version"]) == ("six", "1.16.0")
    assert wheel["filename"].endswith(".whl") and len(wheel["sha256"]) == 64
    assert (store / "packages" / "sha256" / wheel["sha256"][:2] / wheel["sha256"]).stat().st_size == wheel["size"]
    run = subprocess.run(["docker", "run", "--rm", "--network", "none", local["image_id"], "python3", "-c",
                          "import six; print(six.__version__, six.__file__)"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.split() == ["1.16.0", "/usr/local/lib/python3.11/dist-packages/six.py"]

    # lock it (as --update-lock would), keep everything in one file, rebuild with no network
    lock = ImagesLock.load(images / "images.lock")
    lock.images["wheelimage"] = ImagesLock.load(store / "images.lock.local").images["wheelimage"]
    lock.images["wheelimage"].replaces = None
    lock.save()
    cli("images", "export-packages", "-o", str(tmp_path / "all.tar"), env=env)
    with bare_engine(netns=True) as engine:
        proc = engine.run([APPLIANCE, "images", "rebuild", "--offline", "--packages", str(tmp_path / "all.tar"),
                           "--json"], env={**env, "APPLIANCE_IMAGE_STORE": str(tmp_path / "empty")})
        checks = {c["name"]: c for c in json.loads(proc.stdout)}
        assert {n: c["verdict"] for n, c in checks.items()} == {"base": "identical-store",
                                                                 "wheelimage": "identical-store"}
        assert checks["wheelimage"]["actual_id"] == local["image_id"]
    subprocess.run(["docker", "rmi", "-f", local["image_id"]], capture_output=True)
