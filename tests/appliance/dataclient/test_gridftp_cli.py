"""``dataclient get/put/ls/stat/sum/rm`` over gsiftp against the real Globus GridFTP server.

The proxy is created by dataclient itself from ~/.globus/usercert.pem and an encrypted
userkey.pem; globus-url-copy and gfal-copy, using that same proxy, must agree byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib

import pytest

from appliance.transfer.gfal import available
from tests.appliance.dataclient.helpers import make_user_env, run, run_json
from tests.appliance.transfer.servers import free_port
from tests.prereq import require


@pytest.fixture()
def user(tmp_path, monkeypatch, pki, gridftp):
    require(available(), "python3-gfal2 not importable")
    env = make_user_env(tmp_path, monkeypatch, pki)
    env.write_config({"sites": {"grid": {"url": f"gsiftp://localhost:{gridftp.port}{gridftp.data}"}},
                      "retries": 2})
    return env


def test_get_put_with_self_made_proxy_and_alias(user, gridftp, tmp_path, capsys, pki):
    require(shutil.which("globus-url-copy") is not None, "globus-url-copy not installed")
    data = os.urandom(4_000_000)
    gridftp.put_file("cli/in.bin", data)
    assert not user.proxy.exists()
    code, doc = run_json(capsys, "get", "grid:/cli/in.bin", str(tmp_path / "got.bin"),
                         "--passphrase-file", str(user.passfile))
    assert code == 0 and doc["ok"], doc
    assert user.proxy.exists(), "dataclient should have created the proxy"
    f = doc["files"][0]
    assert f["verified"] and f["source_checksum"] == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    # globus-url-copy with the proxy dataclient made
    env = {**os.environ, "X509_USER_PROXY": str(user.proxy), "X509_CERT_DIR": str(pki.cert_dir)}
    subprocess.run(["globus-url-copy", gridftp.url("cli/in.bin"), (tmp_path / "guc.bin").as_uri()],
                   env=env, check=True, timeout=60)
    assert (tmp_path / "got.bin").read_bytes() == (tmp_path / "guc.bin").read_bytes() == data

    # put (proxy now exists and is valid: no passphrase needed), then list, stat, sum
    code, out, err = run(capsys, "put", str(tmp_path / "got.bin"), "grid:/cli/out/", "--no-progress")
    assert code == 0, err
    assert "verified" in out
    assert (gridftp.data / "cli/out/got.bin").read_bytes() == data
    code, listing = run_json(capsys, "ls", "grid:/cli/out")
    assert code == 0 and [i["name"] for i in listing] == ["got.bin"]
    code, st = run_json(capsys, "stat", "grid:/cli/out/got.bin")
    assert st["size"] == len(data)
    code, s = run_json(capsys, "sum", "grid:/cli/out/got.bin")
    assert s["checksum"] == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    if shutil.which("gfal-copy"):
        genv = {**env, "GFAL_PYTHONBIN": "/usr/bin/python3"}
        subprocess.run(["gfal-copy", "-f", gridftp.url("cli/out/got.bin"), (tmp_path / "gfal.bin").as_uri()],
                       env=genv, check=True, timeout=120, capture_output=True)
        assert (tmp_path / "gfal.bin").read_bytes() == data
    code, _out, _err = run(capsys, "rm", "grid:/cli/out/got.bin")
    assert code == 0 and not (gridftp.data / "cli/out/got.bin").exists()


def test_several_sources_into_directory(user, gridftp, tmp_path, capsys):
    for i in range(3):
        gridftp.put_file(f"multi/m{i}.dat", os.urandom(200_000))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, doc = run_json(capsys, "get", *[f"grid:/multi/m{i}.dat" for i in range(3)], str(out_dir),
                         "--passphrase-file", str(user.passfile), "--parallel", "3")
    assert code == 0 and len(doc["files"]) == 3
    assert sorted(p.name for p in out_dir.iterdir()) == ["m0.dat", "m1.dat", "m2.dat"]


def test_exit_codes(user, gridftp, tmp_path, capsys):
    args = ["--passphrase-file", str(user.passfile), "--retry-delay", "0.05"]
    code, doc = run_json(capsys, "get", "grid:/nope.bin", str(tmp_path / "x"), *args)
    assert code == 7 and doc["files"][0]["error_type"] == "NotFound"
    code, doc = run_json(capsys, "get", f"gsiftp://localhost:{free_port()}/x", str(tmp_path / "x"), *args)
    assert code == 9 and doc["files"][0]["attempts"] == 2 and "connection refused" in doc["files"][0]["error"]
    gridftp.put_file("cli/c.bin", b"abc")
    code, doc = run_json(capsys, "get", "grid:/cli/c.bin", str(tmp_path / "c"), "--checksum",
                         "adler32:00000000", *args)
    assert code == 4 and not (tmp_path / "c").exists()
    code, doc = run_json(capsys, "get", "nosuchsite:/x", str(tmp_path / "x"))
    assert code == 2 and "unknown site alias" in doc["error"]


def test_wrong_passphrase_on_get(user, gridftp, tmp_path, capsys):
    user.passfile.write_text("wrong\n")
    code, _out, err = run(capsys, "get", "grid:/x", str(tmp_path / "x"), "--passphrase-file",
                          str(user.passfile))
    assert code == 8 and "wrong passphrase" in err


def test_console_script_runs(user, gridftp, tmp_path):
    exe = shutil.which("dataclient") or os.path.join(os.path.dirname(os.sys.executable), "dataclient")
    require(os.path.exists(exe), "dataclient console script not installed (pip install -e .)")
    gridftp.put_file("cli/s.bin", b"x" * 1000)
    proc = subprocess.run([exe, "get", "grid:/cli/s.bin", str(tmp_path / "s.bin"), "--json",
                           "--passphrase-file", str(user.passfile)], capture_output=True, text=True,
                          timeout=120, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.bin").read_bytes() == b"x" * 1000


def test_failed_get_leaves_nothing_and_says_why_once(user, gridftp, tmp_path, capsys):
    """A get that will not be resumed (the source is missing) leaves no `.NAME.part`, and the
    error is one line on stderr (nothing on stdout) with the server's reason, not Globus's dump."""
    args = ["--passphrase-file", str(user.passfile), "--retry-delay", "0.05"]
    dest = tmp_path / "got"
    dest.mkdir()
    code, out, err = run(capsys, "get", "grid:/cli/missing.bin", str(dest), *args)
    assert code == 7, err
    assert list(dest.iterdir()) == []  # no hidden partial file either
    lines = [line for line in err.splitlines() if not line.startswith("dataclient: created proxy")]
    assert len(lines) == 1 and out.strip() == "", (out, err)
    assert "missing.bin" in lines[0] and "No such file or directory" in lines[0], lines[0]
    assert "globus_xio" not in lines[0] and len(lines[0]) < 300, lines[0]
