"""The products and image stages in the locked ``stages`` image (a real Docker engine): the same
outputs as a host run (bytes; catalogs and images by their replay policy), a record that names the image, a SIGKILLed run leaves no orphan behind, a
replay runs in the recorded image, and a container that dies fails its items with the reason."""

from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.images.lock import ImagesLock
from appliance.pipeline import container as ct
from appliance.pipeline.runner import load_state, run_stage, state_dir
from appliance.pipeline.stagerun import replay_stage
from appliance.pipeline.stages import list_observations, run_image, run_products
from appliance.runs.record import RunStore

REPO = Path(__file__).resolve().parents[3]
DETECTORS = ("sextractor", "aegean")


def _engine() -> None:
    try:
        import docker

        docker.from_env().ping()
    except Exception as err:  # noqa: BLE001 - any engine problem
        if os.environ.get("CI") == "true":
            pytest.fail(f"no Docker engine in CI: {err}")
        pytest.skip(f"no Docker engine: {err}")


@pytest.fixture(scope="module")
def engine():
    _engine()
    locked = ImagesLock.load(REPO / "images" / "images.lock").get("stages")
    import docker

    try:
        docker.from_env().images.get(locked.image_id)
    except docker.errors.ImageNotFound:
        pytest.fail(f"the locked stages image {locked.image_id} is not on the engine: `make images`")
    return locked.image_id


def _tree(base: Path) -> dict[str, Path]:
    return {p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*"))
            if p.is_file() and "state" not in p.relative_to(base).parts}


def test_container_run_equals_host_run_and_record_names_the_image(engine, archive_root, tmp_path, run_home):
    folders = list_observations(archive_root)[:10]
    runs = {}
    for runtime in ("host", "docker"):
        work = tmp_path / runtime / "work"
        s1, _ = run_products(archive_root, work, folders=folders, progress=False, runtime=runtime)
        s2, _ = run_image(archive_root, work, folders=folders, detectors=DETECTORS, progress=False,
                          runtime=runtime)
        assert s1.ok and s2.ok, (s1.report(), s2.report())
        runs[runtime] = (work, s1, s2)
    host, dock = _tree(runs["host"][0]), _tree(runs["docker"][0])
    assert set(host) == set(dock) and any(k.endswith("catalog.vot") for k in host)
    from appliance.compare.policies import POLICIES
    from appliance.pipeline.stagerun import policy, policy_options

    for name, p in host.items():
        q = dock[name]
        pol = policy(name)
        if pol == "sha256":  # XML parts, products.xml, JSON: written deterministically
            assert filecmp.cmp(p, q, shallow=False), name
        else:  # images and catalogs: by the policy a replay uses (floats at rtol 1e-9)
            assert POLICIES[pol](name, p, q, policy_options(pol)).ok, name
    for a, b in zip(runs["host"][1:], runs["docker"][1:], strict=True):
        assert [(i.id, i.status) for i in a.items] == [(i.id, i.status) for i in b.items]

    rec = RunStore(run_home).load(runs["docker"][2].run_id)
    assert rec.runtime["name"] == "docker" and rec.image["ref"] == "stages"
    assert rec.image["image_id"] == engine
    assert rec.image["packages"]["source-extractor"].startswith("2.25")
    c = rec.container
    assert c["network"] == "none" and c["read_only_root"] is True
    work = str(runs["docker"][0])
    assert c["mounts"][str(archive_root)] == "ro" and c["mounts"][work] == "rw"
    st = Path(work).stat()
    assert c["user"] == f"{st.st_uid}:{st.st_gid}"
    assert c["env"]["PYTHONPATH"] == f"{ct.JOB_DIR}/code"
    host_rec = RunStore(run_home).load(runs["host"][2].run_id)
    assert host_rec.runtime["name"] == "host-process" and host_rec.image["image_id"].startswith("host-env:")
    # the job area (code snapshot and job file) is gone after the run: any left is a live run's
    assert all(_locked(p) for p in Path("/tmp").glob(f"{ct.PREFIX}*"))

    # a replay runs in the image the record names, and reproduces the outputs
    verdict, new = replay_stage(runs["docker"][2].run_id, home=run_home)
    assert verdict.ok, verdict.to_dict()
    assert new.runtime["name"] == "docker" and new.image["image_id"] == engine
    # and `appliance replay` hands a stage run in a container to the stage's replayer too
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "replay", runs["docker"][1].run_id],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    latest = max(RunStore(run_home).list(), key=lambda x: x.started_at)
    assert latest.replay_of == runs["docker"][1].run_id and latest.runtime["name"] == "docker"


def _locked(job_dir: Path) -> bool:
    import fcntl

    try:
        fd = os.open(job_dir / "tether", os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _containers(every: bool = False) -> list:
    """The stage containers in the engine: running ones, or ``every`` one in any state."""
    import docker

    return docker.from_env().containers.list(all=every, filters={"label": "org.appliance.pipeline-stage=1"})


@pytest.mark.slow
def test_sigkill_of_a_container_run_leaves_no_orphan_and_resumes(engine, archive_root, tmp_path, run_home):
    work = tmp_path / "w"
    run_products(archive_root, work, progress=False, runtime="host")
    cmd = [sys.executable, "-m", "appliance.cli", "pipeline", "image", "--root", str(archive_root),
           "--work", str(work), "--detectors", ",".join(DETECTORS), "--parallel", "1", "--no-progress",
           "--json", "--runtime", "docker"]
    before_ids = {c.id for c in _containers()}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sdir = state_dir(work, "image")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (not sdir.is_dir() or len(list(sdir.glob("*.json"))) < 3):
        time.sleep(0.05)
    [killed] = [c.id for c in _containers() if c.id not in before_ids]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    while [c for c in _containers() if c.id not in before_ids] and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    gone = time.monotonic() - t0
    assert not [c for c in _containers() if c.id not in before_ids], "an orphan container kept running"
    assert gone < 15, f"the orphan took {gone:.1f} s to stop"
    written = len(list(sdir.glob("*.json")))
    time.sleep(3)
    assert len(list(sdir.glob("*.json"))) == written, "items were written after the run was killed"
    total = len(list_observations(archive_root))
    assert 3 <= written < total
    kept = sum(1 for f in sdir.glob("*.json") if json.loads(f.read_text())["status"] in ("done", "flagged"))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["processed"] == total - kept  # only what the killed run had not finished
    assert out["failed"] == 0 and out["done"] + out["flagged"] == total
    # the killed run's stopped container was left in the engine (its run never came back to
    # remove it); the re-run removed it, and its own
    assert killed not in {c.id for c in _containers(every=True)}, "the killed run's container was left behind"


def test_a_container_that_dies_fails_its_items_with_the_reason(engine, tmp_path):
    sc = ct.StageContainer.prepare("docker")
    work = tmp_path / "work"
    (work / "state").mkdir(parents=True)
    root = tmp_path / "root"
    root.mkdir()
    job_dir = ct.job_area()
    try:
        spec = sc.spec(root, work, job_dir, 64, {})  # more workers than cores: the engine must accept it
        assert spec.cpus == float(os.cpu_count() or 1)
        spec.command = ["python3", "-c", "import sys; print('boom: the stage broke', file=sys.stderr); sys.exit(3)"]
        code = tmp_path / "code.tar"
        from appliance.runs import codearchive

        code.write_bytes(codearchive.archive_bytes(REPO / "appliance"))

        def execute(todo, on_item):  # noqa: ANN001, ANN202
            return sc.execute(spec, code, {"stage": "products", "items": todo, "parallel": 64, "options": {}},
                              on_item)

        s = run_stage("products", ["a", "b"], lambda it: None, work, progress=False, executor=execute)
    finally:
        import shutil

        shutil.rmtree(job_dir, ignore_errors=True)
    assert [i.status for i in s.items] == ["failed", "failed"]
    assert "exit code 3" in s.items[0].reason and "boom: the stage broke" in s.items[0].reason
    assert load_state(work, "products", "a").status == "failed"  # recorded, as a host failure is


def test_missing_stages_image_is_exit_3_one_line(archive_root, tmp_path, monkeypatch):
    _engine()
    images = tmp_path / "images"
    images.mkdir()
    lock = (REPO / "images" / "images.lock").read_text()
    real = ImagesLock.load(REPO / "images" / "images.lock").get("stages").image_id
    (images / "images.lock").write_text(lock.replace(real, "sha256:" + "0" * 64))
    monkeypatch.setenv("APPLIANCE_IMAGES_DIR", str(images))
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "pipeline", "products", "--root", str(archive_root),
                        "--work", str(tmp_path / "w"), "--runtime", "docker", "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr and "stages" in r.stderr
    assert not (tmp_path / "w" / "state").exists()  # refused before any item ran


def test_runtime_option_is_checked():
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "pipeline", "products", "--root", "/nonexistent",
                        "--work", "/tmp/x", "--runtime", "nosuch"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--runtime" in r.stderr and "Traceback" not in r.stderr


def test_remove_abandoned_takes_only_stopped_containers_of_dead_runs(engine, tmp_path):
    """A stopped stage container whose job directory's tether is held (a live run between the
    engine's report and its own removal) stays; once nobody holds it, or the directory is gone,
    it is removed; a stopped container without the stage label is never looked at."""
    import fcntl

    import docker

    from appliance.config import Settings
    from appliance.runtimes import get_runtime

    client = docker.from_env()
    rt = get_runtime("docker", Settings.load())
    made = []

    def stopped(job_dir: Path, labels: dict[str, str]) -> str:
        job_dir.mkdir()
        c = client.containers.create(engine, command=["true"], labels=labels, network_mode="none",
                                     volumes={str(job_dir): {"bind": ct.JOB_DIR, "mode": "ro"}})
        made.append(c.id)
        return c.id

    try:
        live, dead, gone = (stopped(tmp_path / n, {ct.LABEL_KEY: "1"}) for n in ("live", "dead", "gone"))
        other = stopped(tmp_path / "other", {"org.example": "1"})
        held = os.open(tmp_path / "live" / "tether", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(held, fcntl.LOCK_EX)
        (tmp_path / "dead" / "tether").write_text("")
        (tmp_path / "gone").rmdir()
        try:
            removed = ct.remove_abandoned(rt)
        finally:
            os.close(held)
        assert set(removed) >= {dead, gone} and live not in removed and other not in removed
        left = {c.id for c in client.containers.list(all=True)}
        assert live in left and other in left and dead not in left and gone not in left
        assert live in ct.remove_abandoned(rt)  # its tether is free now
    finally:
        for cid in made:
            rt.remove_container(cid)
