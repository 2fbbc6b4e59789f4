"""runs diff (which cache-key part, which outputs), runs gc (keep last N, pinned, dry run) and the
heartbeat of silent runs, on the real Docker engine."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from appliance.cli import main as cli
from appliance.runs.heartbeat import Heartbeat, format_beat
from tests.appliance.conftest import write_recipe
from tests.appliance.runs.test_run import det_recipe, quiet_runner

pytestmark = pytest.mark.docker


def test_diff_names_the_part_and_the_outputs(settings, scratch_image, tmp_path: Path, capsys) -> None:
    d = det_recipe(tmp_path, scratch_image)
    r = quiet_runner(settings)
    a = r.run(d).record
    same = r.run(d, force=True).record
    home = ["--home", str(settings.home), "--json"]
    assert cli(["runs", "diff", a.run_id, same.run_id, *home]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["same_key"] and out["outputs"]["status"] == "identical"

    (d / "recipe.yaml").write_text((d / "recipe.yaml").read_text().replace("factor: 3", "factor: 4"))
    (d / "data.txt").write_text("changed\n")
    r.lock(d)
    b = r.run(d).record
    assert cli(["runs", "diff", a.run_id, b.run_id, *home]) == 6
    out = json.loads(capsys.readouterr().out)
    parts = out["key_parts"]
    assert set(parts) == {"command", "params", "code", "inputs"}  # image and env are the same
    assert parts["params"] == [{"key": "factor", "a": 3, "b": 4}]
    assert parts["inputs"][0]["key"] == "data.txt" and parts["inputs"][0]["a"] != parts["inputs"][0]["b"]
    assert [f["path"] for f in parts["code"]["files"]] == ["data.txt", "recipe.yaml"]  # both in the snapshot
    assert out["outputs"]["status"] == "differs"
    assert cli(["runs", "diff", a.run_id, b.run_id, "--home", str(settings.home)]) == 6
    text = capsys.readouterr().out
    assert "cache key differs in: command, code, params, inputs" in text and "params factor: 3  ->  4" in text


def test_gc_keeps_last_and_pinned(settings, scratch_image, tmp_path: Path, capsys) -> None:
    d = det_recipe(tmp_path, scratch_image)
    r = quiet_runner(settings)
    recs = []
    for i in range(3):
        (d / "data.txt").write_text(f"input {i}\n")
        r.lock(d)
        recs.append(r.run(d).record)
    old, middle, new = recs
    home = ["--home", str(settings.home), "--json"]
    assert cli(["runs", "pin", old.run_id[:24], "--home", str(settings.home)]) == 0
    capsys.readouterr()
    assert cli(["runs", "gc", "--keep-last", "1", "--dry-run", *home]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["remove"] == [middle.run_id] and plan["reasons"][old.run_id] == "pinned"
    assert plan["objects"] == 3 and plan["bytes_freed"] > 0  # its input, output and recipe snapshot
    assert r.runs.run_dir(middle.run_id).is_dir()  # a dry run touches nothing
    assert cli(["runs", "gc", "--keep-last", "1", *home]) == 0
    capsys.readouterr()
    assert not r.runs.run_dir(middle.run_id).exists()
    assert not r.store.has(middle.outputs[0].sha256) and r.store.has(old.outputs[0].sha256)
    assert r.runs.cached_run(middle.cache_key) is None and r.runs.cached_run(new.cache_key) == new.run_id
    assert {x.run_id for x in r.runs.list()} == {old.run_id, new.run_id}


def test_heartbeat_on_a_silent_run(settings, scratch_image, tmp_path: Path) -> None:
    d = write_recipe(tmp_path / "silent", {
        "name": "silent", "image": scratch_image,
        "command": ["python3", "-c", "import time\nx = bytearray(64 << 20)\nt = time.time()\n"
                    "while time.time() - t < 5: pass\nopen('/output/o', 'w').write('ok')"],
        "outputs": [{"path": "o"}]})
    settings.heartbeat_seconds = 1.0
    r = quiet_runner(settings)
    rec = r.run(d).record
    beats = [line for line in r.lines if line.startswith("appliance: heartbeat")]
    assert beats and rec.run_id in beats[0] and "elapsed" in beats[0]
    # A beat that falls after the container has exited has no sample; the ones while it runs do.
    sampled = [b for b in beats if "container cpu" in b and "MiB" in b]
    assert sampled, beats
    mib = max(float(b.split("memory ")[1].split(" MiB")[0]) for b in sampled)
    assert mib >= 60  # the 64 MiB the analysis holds
    assert not any("appliance: heartbeat" in line for line in (settings.home / "runs" / rec.run_id / "log.txt")
                   .read_text().splitlines())  # the analysis log stays the analysis' own


def test_heartbeat_waits_for_silence() -> None:
    lines: list[str] = []
    clock = [0.0]
    hb = Heartbeat("r1", 5.0, lines.append, lambda rid: {"cpu_seconds": 2.0, "memory_bytes": 2**21},
                   clock=lambda: clock[0])
    done = threading.Event()
    with hb:
        clock[0] = 4.0
        hb.seen()
        clock[0] = 8.0  # 4 s since the last line: no beat yet
        done.wait(1.3)
        assert lines == []
        clock[0] = 9.5
        deadline = time.monotonic() + 10  # the thread looks once a second: wait for its beat
        while not lines and time.monotonic() < deadline:
            done.wait(0.05)
    assert lines == [format_beat("r1", 9.5, {"cpu_seconds": 2.0, "memory_bytes": 2**21})]
    assert "0m09s elapsed" in lines[0] and "cpu 2.0 s, memory 2 MiB" in lines[0]
