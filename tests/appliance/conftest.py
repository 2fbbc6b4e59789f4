"""Fixtures for the appliance tests: a private appliance home, the real Docker engine, the
locked images, and a small throw-away image derived from the locked base (so tests can remove
it from the engine without touching the locked images)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from appliance.config import REPO_ROOT, Settings
from appliance.images.lock import ImagesLock
from tests.prereq import require


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(config_file=tmp_path / "none.yaml", home=tmp_path / "home",
                         images_dir=REPO_ROOT / "images")


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as err:  # noqa: BLE001
        require(False, f"Docker engine not reachable: {err}")
    return client


def engine_lock(docker_client) -> ImagesLock:
    """The identities the images have on this engine: the locked ones, or this machine's
    recorded stand-ins where the mirror moved (what `make images` leaves)."""
    from appliance.images.lock import effective_lock, local_lock_path
    from appliance.runtimes.docker import DockerRuntime

    has_image = DockerRuntime(docker_client).has_image

    tracked = ImagesLock.load(REPO_ROOT / "images" / "images.lock")
    local = ImagesLock.load(local_lock_path(Settings.load().image_store))
    lock = effective_lock(tracked, local, has_image, tracked.path)
    for name in ("base", "pipeline"):
        require(name in lock.images, f"image '{name}' not locked: run `make images`")
        require(has_image(lock.images[name].image_id),
                f"image {name} ({lock.images[name].image_id}) missing from the engine: run `make images`")
    return lock


@pytest.fixture(scope="session")
def locked_images(docker_client) -> ImagesLock:
    return engine_lock(docker_client)


@contextlib.contextmanager
def labelled_image(docker_client, base_image_id: str) -> Iterator[str]:
    """A tiny image FROM ``base_image_id`` with a unique label, removed afterwards."""
    dockerfile = f"FROM {base_image_id}\nLABEL org.appliance.test={uuid.uuid4().hex}\n"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True, network_mode="none")
    try:
        yield image.id
    finally:
        with contextlib.suppress(Exception):
            docker_client.images.remove(image.id, force=True)


@pytest.fixture(scope="session")
def scratch_image(docker_client, locked_images) -> Iterator[str]:
    """A session-wide removable image (tests may not remove the locked ones)."""
    with labelled_image(docker_client, locked_images.images["base"].image_id) as image_id:
        yield image_id


@pytest.fixture
def throwaway_image(docker_client, locked_images) -> Iterator[str]:
    """A per-test image that the test itself may remove from the engine."""
    with labelled_image(docker_client, locked_images.images["base"].image_id) as image_id:
        yield image_id


def write_recipe(directory: Path, recipe: dict, files: dict[str, str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    for name, text in (files or {}).items():
        p = directory / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return directory


@pytest.fixture
def podman_ready(scratch_image, tmp_path: Path) -> str:
    """The scratch image loaded into podman (Debian's 4.3, runc)."""
    require(shutil.which("podman") is not None, "podman not installed (apt-get install podman)")
    tar = tmp_path / "img.tar"
    with open(tar, "wb") as f:
        subprocess.run(["docker", "save", scratch_image], stdout=f, check=True)
    proc = subprocess.run(["podman", "--runtime", "runc", "load", "-i", str(tar)], capture_output=True, text=True)
    require(proc.returncode == 0, f"podman load failed: {proc.stderr}")
    yield scratch_image
    subprocess.run(["podman", "--runtime", "runc", "rmi", "-f", scratch_image.removeprefix("sha256:")],
                   capture_output=True)


__all__ = ["labelled_image", "write_recipe", "os"]
