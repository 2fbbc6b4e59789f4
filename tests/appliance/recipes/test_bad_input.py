"""Bad recipes through the real CLI: exit 2, one line on stderr naming the file (and line and
field where there is one), never a traceback. Needs no engine: every case is found before a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

APPLIANCE = str(Path(sys.executable).with_name("appliance"))
GOOD = {"name": "t", "image": "pipeline", "command": ["true"],
        "outputs": [{"path": "a.txt", "compare": "text"}], "resources": {"memory": "64m"}}


def good_text(**changes: object) -> str:
    return yaml.safe_dump({**GOOD, **changes}, sort_keys=False)


CASES = {
    # name: (recipe.yaml bytes or None, recipe.lock text or None, command, expected in the line)
    "binary garbage": (b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01garbage", None, "check", "not UTF-8 text"),
    "empty file": (b"", None, "check", "empty recipe"),
    "duplicate key": (good_text().encode() + b"image: other\n", None, "check", "key 'image' appears twice"),
    "invalid ignore_regex": (good_text(outputs=[{"path": "a.txt", "compare": "text",
                                                  "ignore_regex": ["[unclosed"]}]).encode(),
                             None, "check", "outputs[0].ignore_regex[0]"),
    "duplicate outputs": (good_text(outputs=[{"path": "a.txt"}, {"path": "a.txt"}]).encode(), None, "check",
                          "duplicate output path(s) ['a.txt']"),
    "memory 0": (good_text(resources={"memory": "0"}).encode(), None, "check", "resources.memory"),
    "memory 1k": (good_text(resources={"memory": "1k"}).encode(), None, "check", "below the smallest limit"),
    "unlocked image name": (good_text(image="no-such-image").encode(), None, "check",
                            "field 'image': 'no-such-image' is not a locked image"),
    "missing input file": (good_text(inputs=[{"name": "x", "uri": "data/missing.fits"}]).encode(), None,
                           "check", "inputs[0].uri"),
    "unknown URI scheme": (good_text(inputs=[{"name": "x", "uri": "s3://bucket/x.fits"}]).encode(), None,
                           "check", "no resolver for scheme 's3://'"),
    "malformed lock": (good_text().encode(), "recipe: [unclosed\n", "run", "recipe.lock"),
    "lock not a mapping": (good_text().encode(), "- just\n- a list\n", "run", "malformed lock"),
    "binary lock": (good_text().encode(), "\udcff", "run", "recipe.lock"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_recipe_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    text, lock, command, expected = CASES[case]
    d = tmp_path / "recipe"
    d.mkdir()
    (d / "recipe.yaml").write_bytes(text)
    if lock is not None:
        (d / "recipe.lock").write_bytes(lock.encode("utf-8", "surrogateescape"))
    env = {**os.environ, "APPLIANCE_HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([APPLIANCE, command, str(d)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert expected in lines[0] and str(d) in lines[0], lines[0]


def test_a_file_given_as_the_recipe_directory(tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text(good_text())
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recipe\n")
    proc = subprocess.run([APPLIANCE, "check", str(notes)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"appliance: error: {notes}: is a file; expected a recipe directory (with recipe.yaml)"]


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`appliance images list --json | head -c0`: no BrokenPipeError traceback, exit 141."""
    proc = subprocess.Popen([APPLIANCE, "images", "list", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert err == "", err


@pytest.mark.docker
@pytest.mark.parametrize("case", ["missing command", "too many cpus"])
def test_bad_run_settings_are_one_line(case: str, tmp_path: Path, locked_images) -> None:
    recipe = {**GOOD, "image": locked_images.images["base"].image_id, "outputs": []}
    if case == "missing command":
        recipe["command"] = ["no-such-command", "--flag"]
        expected, code = ["'no-such-command'", "executable file not found"], 5
    else:
        recipe["resources"] = {"cpus": 64}
        expected, code = ["resources.cpus", "64 CPUs asked"], 2
    d = tmp_path / "recipe"
    d.mkdir()
    (d / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    home = tmp_path / "home"
    env = {**os.environ, "APPLIANCE_HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([APPLIANCE, "run", "-q", str(d)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("appliance: no recipe.lock")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(e in lines[0] for e in expected), lines[0]
    if case == "missing command":  # the run record says why, in words
        [record] = list((home / "runs").glob("*/record.json"))
        data = yaml.safe_load(record.read_text())
        assert data["state"] == "failed" and "executable file not found" in data["error"]
