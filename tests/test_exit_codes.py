"""The product's one exit-code table, checked through the real command lines: each bad input
gives the documented code, exactly one line on stderr naming what is at fault, and never a
traceback; every --help ends with the table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from appliance.exitcodes import HELP, MEANING, Exit

BIN = Path(sys.executable).parent


def cases(tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    (tmp / "dir").mkdir()
    (tmp / "recipe").mkdir()
    (tmp / "recipe" / "recipe.yaml").write_bytes(b"\xff\xfe not yaml")
    (tmp / "images").mkdir()
    (tmp / "images" / "images.lock").write_text("images: [unclosed\n")
    home = str(tmp / "home")
    (tmp / "remote").mkdir()
    (tmp / "remote" / "recipe.yaml").write_text(
        'name: t\nimage: "sha256:' + '0' * 64 + '"\ninputs:\n  - {name: x, uri: "https://127.0.0.1:1/x.fits"}\ncommand: ["true"]\n')
    return {
        # name: (argv, expected exit code, text the one stderr line must contain)
        "recipe not UTF-8": (["appliance", "check", str(tmp / "recipe")], Exit.USAGE, "recipe.yaml:1"),
        "no recipe here": (["appliance", "check", str(tmp / "dir")], Exit.USAGE, "no recipe.yaml here"),
        "unknown run": (["appliance", "runs", "show", "nope", "--home", home], Exit.NOT_FOUND, "no run 'nope'"),
        "replay unknown run": (["appliance", "replay", "nope", "--home", home], Exit.NOT_FOUND, "no run 'nope'"),
        "bad images lock": (["appliance", "images", "list"], Exit.USAGE, "images.lock:2: not valid YAML"),
        "no such package file": (["appliance", "images", "import-packages", str(tmp / "none.tar")], Exit.USAGE,
                                 "none.tar: no such package file"),
        "dataclient unknown alias": (["dataclient", "get", "nosite:/x", str(tmp / "o")], Exit.USAGE,
                                     "unknown site alias 'nosite:'"),
        "dataclient missing local file": (["dataclient", "get", f"file://{tmp}/missing", str(tmp / "o")],
                                          Exit.NOT_FOUND, f"file://{tmp}/missing"),
        "dataclient put a directory": (["dataclient", "put", str(tmp / "dir"), "davs://127.0.0.1:1/x/"], Exit.USAGE,
                                       "is a directory"),
        "dataclient put a missing file": (["dataclient", "put", str(tmp / "nope.bin"), "davs://127.0.0.1:1/x/"],
                                          Exit.NOT_FOUND, "nope.bin: no such local file"),
        "gridftp without a proxy": (["dataclient", "get", "--no-token", "gsiftp://127.0.0.1:1/x", str(tmp / "o")],
                                    Exit.PERMISSION, "needs an X.509 proxy"),
        "local destination not writable (as nobody)": (
            ["dataclient", "get", "--no-token", f"file://{tmp}/public.txt", f"{tmp}/private/x"],
            Exit.PERMISSION, "Permission denied"),
        "local source not readable (as nobody)": (
            ["dataclient", "get", "--no-token", f"file://{tmp}/private/secret", f"{tmp}/public-out"],
            Exit.PERMISSION, "permission denied"),
        "unreachable https input": (["appliance", "lock", str(tmp / "remote"), "--home", home], Exit.REMOTE,
                                    "https://127.0.0.1:1/x.fits: download: connection refused"),
        "archive path not found": (["archive", "--root", str(tmp / "lta"), "stat", "/nope"], Exit.NOT_FOUND,
                                   "/nope: no such file"),
        "bad appliance config": (["appliance", "images", "list"], Exit.USAGE, "config.yaml:3: not valid YAML"),
        "appliance usage": (["appliance", "run"], Exit.USAGE, "the following arguments are required"),
    }


NAMES = [
    "recipe not UTF-8", "no recipe here", "unknown run", "replay unknown run", "bad images lock",
    "no such package file", "dataclient unknown alias", "dataclient missing local file",
    "dataclient put a directory", "dataclient put a missing file", "archive path not found", "appliance usage",
    "bad appliance config", "gridftp without a proxy", "local destination not writable (as nobody)",
    "local source not readable (as nobody)", "unreachable https input"]


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_exit_code_and_one_line(name: str, tmp_path: Path, request) -> None:
    if "as nobody" in name:  # a tree that nobody can walk: /tmp/<0755>/{public.txt, private/ 0700}
        tmp_path = Path(tempfile.mkdtemp(prefix="exit-codes-", dir="/tmp"))
        request.addfinalizer(lambda: shutil.rmtree(tmp_path, ignore_errors=True))
        tmp_path.chmod(0o755)
        (tmp_path / "public.txt").write_text("hi\n")
        (tmp_path / "private").mkdir(mode=0o700)
        (tmp_path / "private" / "secret").write_text("s\n")
        (tmp_path / "public-home").mkdir(mode=0o777)
    argv, code, text = cases(tmp_path)[name]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path),
           "GFAL_PYTHONBIN": "/usr/bin/python3", "X509_USER_PROXY": str(tmp_path / "no-proxy")}
    if "as nobody" in name:
        env["HOME"] = env["XDG_CACHE_HOME"] = str(tmp_path / "public-home")
    if name == "bad images lock":
        env["APPLIANCE_IMAGES_DIR"] = str(tmp_path / "images")
    if name == "unreachable https input":  # loopback, port 1: refused at once; one attempt
        (tmp_path / "one-try.yaml").write_text('{"resolvers": {"retries": 1}}')
        env["APPLIANCE_CONFIG"] = str(tmp_path / "one-try.yaml")
    if name == "bad appliance config":
        (tmp_path / "config.yaml").write_text("runtime: docker\nresolvers: [unclosed\n")
        env["APPLIANCE_CONFIG"] = str(tmp_path / "config.yaml")
    cmd = [str(BIN / argv[0]), *argv[1:]]
    if "as nobody" in name:  # permissions only bite a user who is not root
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == code, (proc.returncode, MEANING.get(Exit(proc.returncode)) if proc.returncode in
                                     set(Exit) else "?", proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    if name != "appliance usage":  # argparse prints its usage line above the error
        assert len(lines) == 1, proc.stderr
    assert text in lines[-1], lines[-1]


@pytest.mark.parametrize("argv", [["appliance"], ["appliance", "run"], ["appliance", "images", "verify"],
                                  ["appliance", "cluster", "up"], ["appliance", "qserv", "partition"],
                                  ["dataclient"], ["dataclient", "get"], ["archive"], ["archive", "stage"]])
def test_every_help_ends_with_the_table(argv: list[str]) -> None:
    proc = subprocess.run([str(BIN / argv[0]), *argv[1:], "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert HELP in proc.stdout
