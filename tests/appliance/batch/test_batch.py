"""appliance batch on real Dask clusters and the real Docker engine: local, an existing
scheduler, a real single-node Slurm; failures, retries, resume after kills."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.batch.items import batch_root, derive, expand_inputs
from appliance.batch.worker import run_item
from appliance.cli import main as cli
from appliance.config import REPO_ROOT, Settings
from appliance.errors import ConfigError
from appliance.runs.record import RunStore
from tests.appliance.batch.slurm import single_node_slurm
from tests.appliance.conftest import write_recipe

pytestmark = pytest.mark.docker

CODE = """\
import hashlib, sys, time
data = open("/input/data.txt", "rb").read()
time.sleep(float(sys.argv[1]))
if b"bad" in data:
    sys.exit("bad input")
open("/output/out.txt", "w").write(hashlib.sha256(data).hexdigest() + "\\n")
"""


def make(tmp_path: Path, image: str, n: int, sleep: float = 0.0, bad: tuple[int, ...] = ()) -> tuple[Path, Path]:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(n):
        (data / f"d{i:03}.txt").write_text(("bad " if i in bad else "") + f"item {i}\n")
    d = write_recipe(tmp_path / "rec", {
        "name": "bt", "image": image, "params": {"sleep": sleep},
        "inputs": [{"name": "data.txt", "uri": "seed.txt"}],
        "command": ["python3", "/recipe/main.py", "{sleep}"], "outputs": [{"path": "out.txt"}],
    }, {"main.py": CODE, "seed.txt": "seed\n"})
    return d, data


def batch(*args: str, capsys) -> tuple[int, dict]:
    code = cli(["batch", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_inputs_list_and_glob(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    listing = tmp_path / "list.txt"
    listing.write_text("# items\na.txt\n\nhttps://archive.example/x.fits\n")
    assert expand_inputs(str(tmp_path / "*.txt")) == [str(tmp_path / n) for n in ("a.txt", "b.txt", "list.txt")]
    assert expand_inputs(str(listing)) == [str(tmp_path / "a.txt"), "https://archive.example/x.fits"]
    with pytest.raises(ConfigError, match="matches no file"):
        expand_inputs(str(tmp_path / "*.fits"))


def test_local_batch_failures_retries_and_resume(settings, scratch_image, tmp_path: Path, capsys) -> None:
    d, data = make(tmp_path, scratch_image, 5, bad=(3,))
    home = str(settings.home)
    code, first = batch(str(d), "--inputs", str(data / "*.txt"), "--home", home, "--workers", "2",
                        "--retries", "1", capsys=capsys)
    assert code == 5 and (first["done"], first["failed"], first["cache_hits"]) == (4, 1, 0)
    bad = next(i for i in first["items"] if i["state"] == "failed")
    assert bad["uri"].endswith("d003.txt") and "exited with code 1" in bad["error"] and "bad input" in bad["error"]
    assert bad["attempts"] == 2 and bad["exit_code"] == 5  # one retry, the analysis' exit code
    runs = RunStore(settings.home)
    ok = [r for r in runs.list() if r.state == "succeeded"]
    assert len(ok) == 4 and len({r.cache_key for r in ok}) == 4  # one record per item
    code, again = batch(str(d), "--inputs", str(data / "*.txt"), "--home", home, "--workers", "2",
                        "--retries", "0", capsys=capsys)
    assert code == 5 and again["cache_hits"] == 4 and again["failed"] == 1
    assert len([r for r in runs.list() if r.state == "succeeded"]) == 4  # nothing ran twice
    journal = batch_root(settings.home, d) / "results.jsonl"
    assert len(journal.read_text().splitlines()) == 10


def test_flagged_when_only_a_retry_succeeds(settings, scratch_image, tmp_path: Path, monkeypatch) -> None:
    import types

    from appliance.batch import worker

    d, data = make(tmp_path, scratch_image, 1)
    late = tmp_path / "late.txt"  # appears after the first attempt failed: in its retry delay
    item = derive(d, tmp_path / "b", "data.txt", [str(late)])[0]
    delays: list[float] = []

    def sleep(seconds: float) -> None:  # (a timer raced the first attempt on a loaded machine)
        delays.append(seconds)
        late.write_text("late\n")

    monkeypatch.setattr(worker, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    res = run_item(settings, 0, str(late), str(item.directory), retries=2, retry_delay=1.0)
    assert delays == [1.0]
    assert res["state"] == "flagged" and res["attempts"] == 2 and "late.txt" in res["errors"][0]


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    kids: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        kids.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            found.append(k)
            todo.append(k)
    return found


def _start_batch(d: Path, data: Path, home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "appliance.cli", "batch", str(d), "--inputs",
                             str(data / "*.txt"), "--home", str(home), "--workers", "2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)


def _wait_lines(path: Path, n: int, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return len(path.read_text().splitlines())
        time.sleep(0.2)
    raise AssertionError(f"{path}: fewer than {n} results after {timeout} s")


def _cleanup_containers(docker_client) -> None:
    for c in docker_client.containers.list(all=True, filters={"label": "org.appliance.recipe=bt"}):
        c.remove(force=True)


@pytest.mark.slow
def test_kill_of_scheduler_loses_nothing_and_rerun_finishes_the_rest(
        settings, scratch_image, tmp_path: Path, capsys, docker_client) -> None:
    d, data = make(tmp_path, scratch_image, 6, sleep=1.5)
    proc = _start_batch(d, data, settings.home)
    journal = batch_root(settings.home, d) / "results.jsonl"
    try:
        _wait_lines(journal, 2)
    finally:
        family = _descendants(proc.pid)
        for pid in [proc.pid, *family]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    finished = [json.loads(line) for line in journal.read_text().splitlines()]
    assert 2 <= len(finished) < 6
    _cleanup_containers(docker_client)
    code, again = batch(str(d), "--inputs", str(data / "*.txt"), "--home", str(settings.home),
                        "--workers", "2", capsys=capsys)
    assert code == 0 and again["done"] == 6
    hits = {i["uri"] for i in again["items"] if i["cache_hit"]}
    assert {f["uri"] for f in finished} <= hits  # finished items were not run again
    ok = [r for r in RunStore(settings.home).list() if r.state == "succeeded"]
    assert len({r.cache_key for r in ok}) == 6 and len(ok) == 6


@pytest.mark.slow
def test_kill_of_a_worker_midway_still_finishes(settings, scratch_image, tmp_path: Path, docker_client) -> None:
    d, data = make(tmp_path, scratch_image, 6, sleep=1.5)
    proc = _start_batch(d, data, settings.home)
    journal = batch_root(settings.home, d) / "results.jsonl"
    try:
        _wait_lines(journal, 1)
        workers = [p for p in _descendants(proc.pid)
                   if b"distributed" in Path(f"/proc/{p}/cmdline").read_bytes() or
                   b"multiprocessing" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert workers, "no worker process found"
        os.kill(workers[-1], signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            for pid in [proc.pid, *_descendants(proc.pid)]:
                os.kill(pid, signal.SIGKILL)
        _cleanup_containers(docker_client)
    summary = json.loads(out)
    assert proc.returncode in (0, 5), err
    assert summary["done"] + summary["failed"] == 6 and summary["done"] >= 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_existing_scheduler(settings, scratch_image, tmp_path: Path, capsys) -> None:
    d, data = make(tmp_path, scratch_image, 3)
    port = _free_port()
    dask = str(Path(sys.executable).parent / "dask")
    # --no-dashboard still serves its HTTP routes on --dashboard-address (default :8787, every
    # interface): keep them on loopback too
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard", "--dashboard-address", "127.0.0.1:0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                                       "--host", "127.0.0.1", "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        code, out = batch(str(d), "--inputs", str(data / "*.txt"), "--home", str(settings.home),
                          "--scheduler", f"tcp://127.0.0.1:{port}", capsys=capsys)
        assert code == 0 and out["done"] == 3
        assert len({i["worker"] for i in out["items"]}) == 1  # the one external worker ran them all
        assert cli(["batch", str(d), "--inputs", str(data / "*.txt"), "--home", str(settings.home),
                    "--scheduler", "tcp://127.0.0.1:9"]) == 3
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a loaded machine: the scheduler is slow to close
                p.kill()
                p.wait()


@pytest.mark.slow
def test_slurm_cluster(settings, scratch_image, tmp_path: Path, capsys, monkeypatch) -> None:
    d, data = make(tmp_path, scratch_image, 3)
    with single_node_slurm() as env:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        code, out = batch(str(d), "--inputs", str(data / "*.txt"), "--home", str(settings.home),
                          "--slurm", "--workers", "1", capsys=capsys)
        assert code == 0 and out["done"] == 3
        logs = list((batch_root(settings.home, d) / "slurm-logs").glob("*.err"))
        assert logs, "no Slurm job log: the workers did not run as Slurm jobs"


def test_settings_reach_the_workers(tmp_path: Path) -> None:
    s = Settings.load(config_file=tmp_path / "none.yaml", home=tmp_path / "h", runtime="charliecloud")
    import pickle

    assert pickle.loads(pickle.dumps(s)).runtime == "charliecloud"
