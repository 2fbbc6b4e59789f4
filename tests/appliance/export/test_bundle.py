"""Export a run as RO-Crate and bundle; import it into an empty home with the image removed
from the engine; replay works with no registry and no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.errors import ChecksumMismatch
from appliance.export.bundle import export_bundle, import_bundle
from appliance.export.rocrate_export import export_rocrate
from appliance.runs.record import RunStore
from appliance.runs.replay import replay
from appliance.runtimes.docker import DockerRuntime
from appliance.store import ContentStore
from tests.appliance.runs.test_run import det_recipe, quiet_runner

pytestmark = pytest.mark.docker


def test_bundle_roundtrip_without_image(settings, throwaway_image, docker_client, tmp_path: Path) -> None:
    r = quiet_runner(settings)
    rec = r.run(det_recipe(tmp_path, throwaway_image)).record
    replay(r, rec.run_id)
    crate = export_rocrate(rec, r.runs, r.store, tmp_path / "crate")
    meta = json.loads((crate / "ro-crate-metadata.json").read_text())
    graph = {e["@id"]: e for e in meta["@graph"]}
    action = graph[f"#run-{rec.run_id}"]
    assert action["@type"] == "CreateAction" and graph["#image"]["identifier"] == throwaway_image
    assert graph["outputs/out.txt"]["sha256"] == rec.outputs[0].sha256
    assert graph["#replay-verdict"]["value"] == "identical"
    assert {"@id": "https://w3id.org/ro/wfrun/workflow/0.5"} in graph["./"]["conformsTo"]

    bundle = export_bundle(rec, r.store, DockerRuntime(), tmp_path / "run.tar")
    docker_client.images.remove(throwaway_image, force=True)
    fresh = Settings.load(config_file=tmp_path / "none.yaml", home=tmp_path / "elsewhere",
                          images_dir=settings.images_dir)
    store, runs = ContentStore(fresh.store_root), RunStore(fresh.home)
    imported = import_bundle(bundle, store, runs, DockerRuntime())
    assert imported.run_id == rec.run_id
    docker_client.images.get(throwaway_image)  # back in the engine, same ID
    verdict, _ = replay(quiet_runner(fresh), rec.run_id)
    assert verdict.status == "identical"


def test_corrupt_bundle_is_refused(settings, scratch_image, tmp_path: Path) -> None:
    r = quiet_runner(settings)
    rec = r.run(det_recipe(tmp_path, scratch_image)).record
    bundle = export_bundle(rec, r.store, DockerRuntime(), tmp_path / "run.tar")
    data = bytearray(bundle.read_bytes())
    needle = b"hello\n"  # the input object's bytes inside the tar
    at = data.find(needle, 1024)
    assert at > 0
    data[at] ^= 0x01
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    store, runs = ContentStore(tmp_path / "h2" / "store"), RunStore(tmp_path / "h2")
    with pytest.raises(ChecksumMismatch):
        import_bundle(bad, store, runs, DockerRuntime())
    assert runs.list() == []
