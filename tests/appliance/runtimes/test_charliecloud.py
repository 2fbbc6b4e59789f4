"""Charliecloud: docker-archive conversion (fast, synthetic archives) and real unprivileged runs
as a user created for the test, byte-identical to Docker, replayed across runtimes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.images.dockerarchive import write_docker_archive
from appliance.runs.runner import Runner
from appliance.runtimes import get_runtime, runtime_names
from appliance.runtimes.base import ContainerSpec
from appliance.runtimes.charliecloud import (
    CharliecloudRuntime,
    UnsafeArchive,
    convert_archive,
    tree_digest,
)
from tests.appliance.conftest import write_recipe

# -- conversion ----------------------------------------------------------------------------------


def layer(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """A layer tar of (kind, name, data): kind f (file), d (dir), l (symlink to data)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            else:
                blob = data if isinstance(data, bytes) else data.encode()
                info.size, info.mode = len(blob), 0o644
                tar.addfile(info, io.BytesIO(blob))
    return path


def archive(tmp_path: Path, layers: list[list[tuple[str, str, bytes | str]]]) -> tuple[Path, str]:
    paths = [layer(tmp_path / f"l{i}.tar", m) for i, m in enumerate(layers)]
    dest = tmp_path / "img.tar"
    image_id = write_docker_archive(paths, dest, "test/img:1", 0, {"Env": ["PATH=/usr/bin:/bin"]},
                                    [f"layer {i}" for i in range(len(paths))])
    return dest, image_id


def test_layers_apply_with_whiteouts_and_links_stay_inside(tmp_path: Path) -> None:
    tar, image_id = archive(tmp_path, [
        [("d", "etc", b""), ("f", "etc/keep", "k"), ("f", "etc/gone", "g"), ("d", "opq", b""),
         ("f", "opq/old", "o"), ("l", "abs", "/etc"), ("d", "usr", b"")],
        [("f", "etc/.wh.gone", b""), ("f", "opq/.wh..wh..opq", b""), ("f", "opq/new", "n"),
         ("f", "abs/through", "t")],  # through an absolute link: must land in the image's /etc
    ])
    meta = convert_archive(tar, tmp_path / "out")
    root = tmp_path / "out" / "rootfs"
    assert meta["id"] == image_id and meta["env"] == ["PATH=/usr/bin:/bin"]
    assert (root / "etc" / "keep").read_text() == "k" and not (root / "etc" / "gone").exists()
    assert sorted(p.name for p in (root / "opq").iterdir()) == ["new"]
    assert (root / "etc" / "through").read_text() == "t" and not Path("/etc/through").exists()
    assert all((root / d).is_dir() for d in ("input", "output", "recipe", "proc", "dev"))
    assert meta["converted_digest"] == tree_digest(root)
    (root / "etc" / "keep").write_text("changed")
    assert tree_digest(root) != meta["converted_digest"]


def test_traversal_and_tampered_layers_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    tar, _ = archive(tmp_path / "a", [[("f", "../../escape", "x")]])
    with pytest.raises(UnsafeArchive, match=r"'\.\.'"):
        convert_archive(tar, tmp_path / "a" / "out")
    assert not (tmp_path / "escape").exists()
    (tmp_path / "b").mkdir()
    tar, _ = archive(tmp_path / "b", [[("f", "x", "original")]])
    raw = tar.read_bytes().replace(b"original", b"tampered")
    tar.write_bytes(raw)
    with pytest.raises(UnsafeArchive, match="the config says"):
        convert_archive(tar, tmp_path / "b" / "out")


def test_registry_lists_every_runtime_module(tmp_path: Path) -> None:
    assert {"docker", "podman", "charliecloud", "apptainer"} <= set(runtime_names())
    settings = Settings.load(config_file=tmp_path / "none.yaml", home=tmp_path / "h",
                             image_store=tmp_path / "images")
    rt = get_runtime("charliecloud", settings)
    assert isinstance(rt, CharliecloudRuntime) and rt.cache_dir == tmp_path / "images" / "charliecloud"


def test_command_is_hermetic(tmp_path: Path) -> None:
    tar, image_id = archive(tmp_path, [[("d", "usr", b"")]])
    rt = CharliecloudRuntime(tmp_path / "cache")
    assert rt.load_image(tar) == [image_id] and rt.has_image(image_id)
    from appliance.runtimes.base import Mount

    cmd = rt.command(ContainerSpec(image_id, ["true"], {"A": "1"}, [
        Mount(tmp_path / "in", "/input", True), Mount(tmp_path / "out", "/output", False)],
        "65534:65534", cpus=1))
    text = " ".join(cmd)
    assert cmd[:3] == ["taskset", "-c", str(sorted(os.sched_getaffinity(0))[0])]
    assert "--net" in cmd and "--unset-env=*" in cmd and "--private-tmp" in cmd and "-w" not in cmd
    assert f"remount,bind,ro {tmp_path / 'in'}" in text and f"remount,bind,ro {tmp_path / 'out'}" not in text
    assert "--set-env=PATH=/usr/bin:/bin" in cmd and "--set-env=A=1" in cmd


# -- real runs as an unprivileged user -------------------------------------------------------------

DET = """\
import hashlib, sys, os
data = open("/input/data.txt", "rb").read()
with open("/output/out.txt", "w") as f:
    f.write(f"{hashlib.sha256(data).hexdigest()} {sys.argv[1]} {os.environ['APPLIANCE_SEED']}\\n")
print("done", flush=True)
"""

PROBE = """\
import json, os, socket
def can_write(p):
    try:
        open(p, "w").write("x"); return True
    except OSError as e:
        return e.strerror
s = socket.socket()
try:
    s.connect(("127.0.0.1", 9)); net = "connected"
except OSError as e:
    net = e.strerror
json.dump({"uid": os.getuid(), "net": net, "input": can_write("/input/x"), "recipe": can_write("/recipe/x"),
           "image": can_write("/usr/x"), "tmp": can_write("/tmp/x"), "env": sorted(os.environ)},
          open("/output/probe.json", "w"))
"""


@pytest.fixture(scope="module")
def ch_setup(unprivileged_user, locked_images):
    """A docker-save tar of the locked base image where the user's runtime finds it."""
    u = unprivileged_user
    tars = u.root / "tars"
    tars.mkdir(exist_ok=True)
    base = locked_images.images["base"].image_id
    tar = tars / "base.tar"
    if not tar.is_file():
        subprocess.run(["docker", "save", "-o", str(tar), base], check=True)
        tar.chmod(0o644)
    return u, base, {"APPLIANCE_IMAGE_TARS": str(tars)}


def chown_tree(path: Path, uid: int, gid: int) -> None:
    for d, dirs, files in os.walk(path):
        for n in [d, *(os.path.join(d, x) for x in dirs + files)]:
            os.lchown(n, uid, gid)


@pytest.mark.docker
def test_unprivileged_run_is_hermetic(ch_setup) -> None:
    u, base, env = ch_setup
    d = write_recipe(u.root / "probe", {"name": "probe", "image": base, "command": ["python3", "/recipe/main.py"],
                                         "inputs": [{"name": "data.txt", "uri": "data.txt"}],
                                         "outputs": [{"path": "probe.json"}]},
                     {"main.py": PROBE, "data.txt": "hello\n"})
    chown_tree(d, u.uid, u.gid)
    home = u.root / "probe-home"
    proc = u.run("run", str(d), "--runtime", "charliecloud", "--home", str(home), "--json",
                 "-o", str(u.root / "probe-out"), env=env, check=True)
    run_id = json.loads(proc.stdout)["run_id"]
    probe = json.loads((u.root / "probe-out" / "probe.json").read_text())
    assert probe["uid"] == u.uid  # the caller's own uid, as the docker runtime gives a non-root caller
    assert probe["net"] == "Network is unreachable"
    assert probe["input"] == probe["recipe"] == probe["image"] == "Read-only file system"
    assert probe["tmp"] is True  # private tmpfs, not the host's /tmp
    assert not Path("/tmp/x").exists() or Path("/tmp/x").stat().st_uid != u.uid
    assert set(probe["env"]) - {"CH_RUNNING", "PATH", "PYTHONDONTWRITEBYTECODE"} == {
        "APPLIANCE_SEED", "HOME", "LANG", "LC_ALL", "MKL_NUM_THREADS", "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED", "SOURCE_DATE_EPOCH", "TZ"}
    record = json.loads((home / "runs" / run_id / "record.json").read_text())
    assert record["image"]["image_id"] == base
    assert record["image"]["converted_digest"].startswith("sha256:")
    assert record["runtime"]["runtime"] == "charliecloud" and record["runtime"]["unprivileged"] == "true"


@pytest.mark.docker
def test_same_bytes_as_docker_and_replays_across_runtimes(ch_setup) -> None:
    u, base, env = ch_setup
    d = write_recipe(u.root / "det", {"name": "det", "image": base, "params": {"factor": 3}, "seed": 11,
                                       "inputs": [{"name": "data.txt", "uri": "data.txt"}],
                                       "command": ["python3", "/recipe/main.py", "{factor}"],
                                       "outputs": [{"path": "out.txt"}]},
                     {"main.py": DET, "data.txt": "hello\n"})
    home = u.root / "det-home"
    settings = Settings.load(config_file=u.root / "none.yaml", home=home)
    docker_run = Runner(settings, on_log=lambda line: None).run(d, force=True).record
    chown_tree(d, u.uid, u.gid)
    chown_tree(home, u.uid, u.gid)
    proc = u.run("run", str(d), "--runtime", "charliecloud", "--home", str(home), "--force", "--json",
                 env=env, check=True)
    ch = json.loads(proc.stdout)
    assert ch["outputs"] == {o.name: o.sha256 for o in docker_run.outputs}  # byte-identical
    proc = u.run("replay", docker_run.run_id, "--runtime", "charliecloud", "--home", str(home), "--json",
                 env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "identical"
    from appliance.cli import main as cli

    assert cli(["replay", ch["run_id"], "--home", str(home), "-q", "--json"]) == 0  # docker replays it
