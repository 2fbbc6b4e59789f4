"""Rebuilding the base from its spec reproduces the locked rootfs and image ID (real mmdebstrap);
the derived pipeline image (docker build + canonical re-pack) reproduces its image ID too."""

from __future__ import annotations

import shutil

import pytest

from appliance.config import REPO_ROOT, Settings
from appliance.images.manage import ImageManager
from tests.prereq import require


@pytest.mark.slow
@pytest.mark.docker
def test_verify_reproduces_locked_images(locked_images, tmp_path) -> None:
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap not installed")
    images_dir = tmp_path / "images"
    shutil.copytree(REPO_ROOT / "images", images_dir, ignore=shutil.ignore_patterns("build"))
    manager = ImageManager(Settings.load(config_file=tmp_path / "none.yaml", images_dir=images_dir))
    checks = {c.name: c for c in manager.verify(["base", "pipeline"])}
    assert checks["base"].verdict == "identical", checks["base"].report()
    assert checks["pipeline"].verdict == "identical", checks["pipeline"].report()
