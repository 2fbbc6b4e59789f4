"""`appliance images save` + `load` preserve the exact image ID (no registry involved)."""

from __future__ import annotations

import io
import uuid

import pytest

from appliance.runtimes.docker import DockerRuntime

pytestmark = pytest.mark.docker


def test_save_remove_load_same_id(docker_client, locked_images, tmp_path) -> None:
    dockerfile = f"FROM {locked_images.images['base'].image_id}\nLABEL org.appliance.save={uuid.uuid4().hex}\n"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True, network_mode="none")
    runtime = DockerRuntime()
    runtime.save_image(image.id, tmp_path / "img.tar")
    runtime.remove_image(image.id)
    assert not runtime.has_image(image.id)
    assert runtime.load_image(tmp_path / "img.tar") == [image.id]
    runtime.remove_image(image.id)
