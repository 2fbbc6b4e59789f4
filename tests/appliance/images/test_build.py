"""`images verify` rebuilds every image without cache and says which guarantee held: here the
package store's, bit for bit (real mmdebstrap in a network namespace, real docker build)."""

from __future__ import annotations

import shutil

import pytest

from appliance.config import REPO_ROOT, Settings
from appliance.images.lock import ImagesLock
from appliance.images.manage import ImageManager
from tests.prereq import require


@pytest.mark.slow
@pytest.mark.docker
def test_verify_reproduces_the_images_from_the_package_store(locked_images, tmp_path) -> None:
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap not installed")
    images_dir = tmp_path / "images"
    for name in ("base", "pipeline"):
        shutil.copytree(REPO_ROOT / "images" / name, images_dir / name)
    # the identities this engine runs (tracked, or this machine's stand-ins), as a lock
    ImagesLock(images_dir / "images.lock", {n: locked_images.images[n] for n in ("base", "pipeline")}).save()
    manager = ImageManager(Settings.load(config_file=tmp_path / "none.yaml", images_dir=images_dir))
    checks = {c.name: c for c in manager.verify(["pipeline"])}
    for name in ("base", "pipeline"):
        assert checks[name].verdict == "identical-store", checks[name].report()
        assert checks[name].actual_id == locked_images.images[name].image_id
