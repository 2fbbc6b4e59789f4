"""Offline rebuilds reproduce the locked image IDs bit for bit: from a package file in a network
namespace with only loopback (nothing could reach a mirror), from the project's own archive
after the local store is gone (the file staged back from tape), and from a dated snapshot
mirror laid out like snapshot.debian.org and made from the package store."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from appliance.config import REPO_ROOT, Settings
from appliance.images.aptrepo import serve
from appliance.images.lock import ImagesLock
from appliance.images.packages import PackageStore
from tests.bare_engine import bare_engine

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1500)]
APPLIANCE = str(Path(sys.executable).with_name("appliance"))


def engine_images_dir(dest: Path, lock: ImagesLock, names: tuple[str, ...]) -> Path:
    """The specs with a lock of the identities this engine has (the tracked ones here; a
    machine whose mirror moved has its stand-ins, whose packages its store holds)."""
    images = dest / "images"
    for name in names:
        shutil.copytree(REPO_ROOT / "images" / name, images / name)
    ImagesLock(images / "images.lock", {n: lock.images[n] for n in names}).save()
    return images


def verdicts(stdout: str) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in json.loads(stdout)}


def test_rebuild_offline_from_a_package_file_with_the_network_off(tmp_path: Path, locked_images) -> None:
    names = ("base", "pipeline", "archive")
    images = engine_images_dir(tmp_path, locked_images, names)
    pk = tmp_path / "packages.tar"
    machine = {"APPLIANCE_IMAGES_DIR": str(images), "APPLIANCE_CONFIG": str(tmp_path / "none.yaml")}
    out = __import__("subprocess").run([APPLIANCE, "images", "export-packages", "-o", str(pk), "--json"],
                                       env={**os.environ, **machine}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["packages"] > 100

    empty = {**machine, "APPLIANCE_IMAGE_STORE": str(tmp_path / "empty-store")}
    with bare_engine(netns=True) as engine:
        links = engine.run(["ip", "-o", "link"]).stdout.strip().splitlines()
        assert len(links) == 1 and ": lo:" in links[0]  # loopback only: no mirror can be reached
        assert engine.run(["ip", "route"]).stdout.strip() == ""
        proc = engine.run([APPLIANCE, "images", "rebuild", "--offline", "--packages", str(pk), "--json"], env=empty)
        assert verdicts(proc.stdout) == {n: "identical-store" for n in names}, proc.stdout
        for c in json.loads(proc.stdout):
            assert c["actual_id"] == locked_images.images[c["name"]].image_id

        # the engine loses an image: ensure puts the same one back from the store, still offline
        engine.run(["docker", "rmi", "-f", locked_images.images["pipeline"].image_id])
        proc = engine.run([APPLIANCE, "images", "ensure", "--offline", "--json"], env=empty)
        assert verdicts(proc.stdout) == {"base": "present", "pipeline": "identical-store", "archive": "present"}

        # a store without the packages: --offline fails with exit 3 and says how to recover
        bare = {**machine, "APPLIANCE_IMAGE_STORE": str(tmp_path / "nothing")}
        engine.run(["docker", "rmi", "-f", locked_images.images["pipeline"].image_id])
        fail = engine.run([APPLIANCE, "images", "ensure", "--offline", "pipeline"], env=bare, check=False)
        assert fail.returncode == 3 and "Traceback" not in fail.stderr, fail.stderr
        assert "package store lacks" in fail.stderr and "export-packages" in fail.stderr


def test_packages_kept_in_the_archive_rebuild_after_the_store_is_deleted(tmp_path: Path, locked_images) -> None:
    from appliance.demo_archive import start_archive, wait_for

    images = engine_images_dir(tmp_path, locked_images, ("base",))
    server, pki, token = start_archive(tmp_path / "lta")
    try:
        config = tmp_path / "appliance.yaml"
        config.write_text(json.dumps({"resolvers": {"lta_url": f"davs://localhost:{server.port}",
                                                    "ca_dir": str(pki.cert_dir)}}))
        env = {"APPLIANCE_IMAGES_DIR": str(images), "APPLIANCE_CONFIG": str(config),
               "BEARER_TOKEN": token, "X509_CERT_DIR": str(pki.cert_dir)}
        run = __import__("subprocess").run
        out = run([APPLIANCE, "images", "export-packages", "-o", "lta://images/base-packages.tar", "--json"],
                  env={**os.environ, **env}, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["path"].endswith("/images/base-packages.tar")
        archive = server.archive
        wait_for(lambda: archive.locality("/images/base-packages.tar") == "DISK_AND_TAPE", "migration")
        assert archive.evict_path("/images/base-packages.tar")
        assert archive.locality("/images/base-packages.tar") in ("TAPE", "NEARLINE")

        store = tmp_path / "fresh-store"  # the local store is gone: only the archive has the packages
        with bare_engine() as engine:
            proc = engine.run([APPLIANCE, "images", "rebuild", "--offline", "--packages",
                               "lta://images/base-packages.tar", "base", "--json"],
                              env={**env, "APPLIANCE_IMAGE_STORE": str(store)})
            assert verdicts(proc.stdout) == {"base": "identical-store"}
    finally:
        server.stop()


def test_a_dated_snapshot_mirror_gives_back_the_locked_packages(tmp_path: Path, locked_images) -> None:
    images = engine_images_dir(tmp_path, locked_images, ("base",))
    machine = PackageStore(Settings.load(config_file=tmp_path / "none.yaml").package_store)
    base = locked_images.images["base"]
    snapshot = tmp_path / "snapshot"
    for deb in base.debs:  # snapshot.debian.org's layout: archive/<archive>/<timestamp>/<pool path>
        target = snapshot / "archive" / deb.archive / base.resolved_at / deb.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(machine.path(deb.sha256), target)
    with serve(snapshot) as url, bare_engine() as engine:
        env = {"APPLIANCE_IMAGES_DIR": str(images), "APPLIANCE_CONFIG": str(tmp_path / "none.yaml"),
               "APPLIANCE_IMAGE_STORE": str(tmp_path / "empty-store"),
               "APPLIANCE_SNAPSHOT_MIRROR": f"{url}/archive/{{archive}}/{{timestamp}}"}
        proc = engine.run([APPLIANCE, "images", "ensure", "base", "--json"], env=env)
        assert verdicts(proc.stdout) == {"base": "identical-store"}
        assert not PackageStore(tmp_path / "empty-store" / "packages").missing(base.debs)
