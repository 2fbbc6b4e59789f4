"""Recipe runs on the real Docker engine: lock, run, cache, failures, hermeticity, podman."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path

import pytest

from appliance.cli import main as cli
from appliance.errors import ChecksumMismatch, ImageMissing, RunFailed
from appliance.runs.record import RunStore
from appliance.runs.runner import Runner
from tests.appliance.conftest import write_recipe

pytestmark = pytest.mark.docker

DET_CODE = """\
import hashlib, os, sys
data = open("/input/data.txt", "rb").read()
with open("/output/out.txt", "w") as f:
    f.write(f"{hashlib.sha256(data).hexdigest()} {sys.argv[1]} {os.environ['APPLIANCE_SEED']}\\n")
print("done", flush=True)
"""


def det_recipe(tmp_path: Path, image: str, **extra) -> Path:
    d = tmp_path / "det"
    write_recipe(d, {
        "name": "det", "image": image,
        "inputs": [{"name": "data.txt", "uri": "data.txt"}],
        "params": {"factor": 3}, "command": ["python3", "/recipe/main.py", "{factor}"],
        "outputs": [{"path": "out.txt"}], "seed": 11, **extra,
    }, {"main.py": DET_CODE, "data.txt": "hello\n"})
    return d


def quiet_runner(settings, **kw) -> Runner:
    lines: list[str] = []
    r = Runner(settings, on_log=lines.append, **kw)
    r.lines = lines  # type: ignore[attr-defined]
    return r


def test_lock_run_cache_and_force(settings, scratch_image, tmp_path: Path) -> None:
    d = det_recipe(tmp_path, scratch_image)
    runner = quiet_runner(settings)
    lock = runner.lock(d)
    assert lock.image_id == scratch_image and lock.inputs[0].size == 6
    assert (d / "recipe.lock").is_file()
    first = runner.run(d)
    assert first.ok and not first.cache_hit and "done" in runner.lines
    out = runner.store.path_of(first.record.outputs[0].sha256).read_text()
    assert out.split()[1:] == ["3", "11"]
    rec = first.record
    assert rec.container["network"] == "none" and rec.container["read_only_root"]
    assert rec.container["env"]["TZ"] == "UTC" and rec.container["env"]["PYTHONHASHSEED"] == "0"
    assert rec.host["cpu"]["model"] and rec.runtime["runtime"] == "docker"
    assert rec.inputs[0].sha256 == lock.inputs[0].sha256 and len(rec.cache_key) == 64
    saved = json.loads((settings.home / "runs" / rec.run_id / "record.json").read_text())
    assert saved["state"] == "succeeded" and saved["outputs"][0]["sha256"] == rec.outputs[0].sha256
    again = runner.run(d)
    assert again.cache_hit and again.record.run_id == rec.run_id
    forced = runner.run(d, force=True)
    assert not forced.cache_hit and forced.record.run_id != rec.run_id
    (d / "main.py").write_text(DET_CODE + "\n# changed\n")
    assert not runner.run(d).cache_hit  # code is part of the cache key


def test_input_changed_after_lock_is_refused(settings, scratch_image, tmp_path: Path) -> None:
    d = det_recipe(tmp_path, scratch_image)
    runner = quiet_runner(settings)
    runner.lock(d)
    (d / "data.txt").write_text("tampered\n")
    with pytest.raises(ChecksumMismatch, match="data.txt"):
        runner.run(d)
    assert cli(["run", str(d), "--home", str(settings.home), "-q"]) == 4


def test_failures_write_failed_records(settings, scratch_image, tmp_path: Path) -> None:
    runner = quiet_runner(settings)
    d = write_recipe(tmp_path / "fail", {"name": "fail", "image": scratch_image,
                                        "command": ["python3", "-c", "import sys; print('boom'); sys.exit(3)"]})
    with pytest.raises(RunFailed, match="exited with code 3.*boom"):
        runner.run(d)
    d2 = write_recipe(tmp_path / "noout", {"name": "noout", "image": scratch_image, "command": ["true"],
                                          "outputs": [{"path": "result.fits"}]})
    with pytest.raises(RunFailed, match="result.fits"):
        runner.run(d2)
    states = {r.recipe["name"]: (r.state, r.error) for r in RunStore(settings.home).list()}
    assert states["fail"][0] == "failed" and "code 3" in states["fail"][1]
    assert states["noout"][0] == "failed"
    assert not list((settings.home / "work").iterdir())  # nothing half-written left behind
    assert cli(["run", str(d), "--home", str(settings.home), "-q"]) == 5


def test_out_of_memory_is_named(settings, scratch_image, tmp_path: Path) -> None:
    d = write_recipe(tmp_path / "oom", {
        "name": "oom", "image": scratch_image, "resources": {"memory": "48m"},
        "command": ["python3", "-c", "x = bytearray(400 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096])"]})
    with pytest.raises(RunFailed, match="out of memory"):
        quiet_runner(settings).run(d)


def test_missing_image(settings, tmp_path: Path, docker_client) -> None:
    d = write_recipe(tmp_path / "noimg", {"name": "noimg", "image": "sha256:" + "0" * 64, "command": ["true"]})
    with pytest.raises(ImageMissing, match="0000"):
        quiet_runner(settings).run(d)


PROBE = """\
import json, os, socket, sys
port = int(sys.argv[1])
result = {"uid": os.getuid(), "gid": os.getgid()}
try:
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
    result["network"] = "reached host"
except OSError as e:
    result["network"] = f"blocked: {e}"
for path in ("/etc/probe", "/input/probe", "/recipe/probe", "/output/probe", "/tmp/probe"):
    try:
        open(path, "w").write("x")
        result[path] = "writable"
    except OSError:
        result[path] = "read-only"
os.remove("/output/probe")
result["env"] = {k: os.environ[k] for k in ("TZ", "LC_ALL", "SOURCE_DATE_EPOCH", "OMP_NUM_THREADS")}
json.dump(result, open("/output/probe.json", "w"))
"""


def test_hermetic(settings, scratch_image, tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed at the test's end, while it still waits
            server.accept()

    threading.Thread(target=accept, daemon=True).start()
    d = write_recipe(tmp_path / "probe", {
        "name": "probe", "image": scratch_image, "inputs": [{"name": "x.txt", "uri": "x.txt"}],
        "command": ["python3", "/recipe/probe.py", str(port)], "outputs": [{"path": "probe.json"}],
        "resources": {"cpus": 2}, "source_date_epoch": 1234567890,
    }, {"probe.py": PROBE, "x.txt": "x"})
    runner = quiet_runner(settings)
    rec = runner.run(d).record
    probe = json.loads(runner.store.path_of(rec.outputs[0].sha256).read_text())
    server.close()
    assert probe["network"].startswith("blocked"), probe
    assert probe["uid"] == 65534 and probe["gid"] == 65534
    assert probe["/etc/probe"] == probe["/input/probe"] == probe["/recipe/probe"] == "read-only"
    assert probe["/output/probe"] == probe["/tmp/probe"] == "writable"
    assert probe["env"] == {"TZ": "UTC", "LC_ALL": "C.UTF-8", "SOURCE_DATE_EPOCH": "1234567890",
                            "OMP_NUM_THREADS": "2"}


@pytest.mark.slow
def test_podman_runtime_gives_the_same_outputs(settings, podman_ready, tmp_path: Path) -> None:
    from appliance.runtimes.podman import PodmanRuntime

    d = det_recipe(tmp_path, podman_ready)
    docker_out = quiet_runner(settings).run(d).record
    podman = quiet_runner(settings, runtime=PodmanRuntime()).run(d, force=True).record
    assert podman.runtime["runtime"] == "podman" and podman.state == "succeeded"
    assert [o.sha256 for o in podman.outputs] == [o.sha256 for o in docker_out.outputs]


def test_missing_engine_is_a_clear_error(settings, tmp_path: Path, monkeypatch) -> None:
    from appliance.errors import EngineUnavailable

    d = write_recipe(tmp_path / "noengine", {"name": "noengine", "image": "sha256:" + "1" * 64,
                                             "command": ["true"]})
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(EngineUnavailable, match="no Docker engine answers"):
        quiet_runner(settings).run(d)
    assert cli(["run", str(d), "--home", str(settings.home), "-q"]) == 3
