"""``dataclient`` against the archive: alias expansion, staged get, put with server-side checksum,
stage/status/release commands, and a corrupted byte on the archive's disk detected by checksum."""

from __future__ import annotations

import os
import zlib

import pytest

from tests.appliance.dataclient.helpers import make_user_env, run, run_json


@pytest.fixture()
def user(tmp_path, monkeypatch, pki, archive):
    env = make_user_env(tmp_path, monkeypatch, pki)
    env.write_config({"sites": {"lta": {"url": archive.url, "backend": "http"}}, "retries": 2})
    return env


def test_get_staged_files_with_alias(user, archive, tmp_path, capsys):
    data = {f"g{i}.bin": os.urandom(150_000 + i) for i in range(3)}
    for name, blob in data.items():
        archive.put(f"/dc/{name}", blob, tmp_path)
    archive.on_tape("/dc/g0.bin")
    out = tmp_path / "out"
    code, doc = run_json(capsys, "get", *[f"lta:/dc/{n}" for n in data], str(out) + "/",
                         "--passphrase-file", str(user.passfile))
    assert code == 0, doc
    assert any("staged 1 file(s)" in n for n in doc["notes"])
    for name, blob in data.items():
        assert (out / name).read_bytes() == blob


def test_put_then_sum_ls_rm(user, archive, tmp_path, capsys):
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(400_000))
    code, doc = run_json(capsys, "put", str(src), "lta:/dc/up/", "--passphrase-file", str(user.passfile))
    assert code == 0 and doc["files"][0]["verified"], doc
    code, s = run_json(capsys, "sum", "lta:/dc/up/up.bin")
    assert s["checksum"] == f"{zlib.adler32(src.read_bytes()) & 0xFFFFFFFF:08x}"
    code, listing = run_json(capsys, "ls", "lta:/dc/up")
    assert [i["name"] for i in listing] == ["up.bin"], "no temporary upload name may remain"
    assert run(capsys, "rm", "lta:/dc/up/up.bin")[0] == 0
    code, doc = run_json(capsys, "stat", "lta:/dc/up/up.bin")
    assert code == 7


def test_stage_status_release_commands(user, archive, tmp_path, capsys):
    archive.put("/dc/s.bin", os.urandom(10_000), tmp_path)
    archive.on_tape("/dc/s.bin")
    pf = ["--passphrase-file", str(user.passfile)]
    code, doc = run_json(capsys, "stage", "lta:/dc/s.bin", "--wait", "--lifetime", "PT10M", *pf)
    assert code == 0 and doc["ok"] and doc["files"][0]["state"] == "COMPLETED"
    rid = doc["id"]
    code, doc = run_json(capsys, "status", rid, "--site", "lta")
    assert code == 0 and doc["ok"]
    code, doc = run_json(capsys, "release", rid, "--site", "lta")
    assert code == 0 and doc["paths"] == ["/dc/s.bin"]
    code, doc = run_json(capsys, "status", "no-such-request", "--site", "lta")
    assert code == 9 and "404" in doc["error"]


def test_corrupted_byte_on_archive_disk_is_detected(user, archive, tmp_path, capsys):
    blob = os.urandom(300_000)
    archive.put("/dc/bad.bin", blob, tmp_path)
    entry = archive.engine.stat("/dc/bad.bin")
    archive.wait_migrated("/dc/bad.bin")  # corrupt the disk copy only, after the tape copy exists
    disk = archive.engine.disk_path(entry.file_id)
    raw = bytearray(disk.read_bytes())
    raw[1000] ^= 0xFF
    disk.write_bytes(bytes(raw))
    code, doc = run_json(capsys, "get", "lta:/dc/bad.bin", str(tmp_path / "bad.bin"), "--retry-delay",
                         "0.05", "--passphrase-file", str(user.passfile))
    f = doc["files"][0]
    assert code == 4 and f["error_type"] == "ChecksumMismatch" and f["attempts"] == 2, doc
    assert not (tmp_path / "bad.bin").exists() and not list(tmp_path.glob(".bad.bin*"))
    archive.engine.delete("/dc/bad.bin")


def test_bearer_token_is_discovered_and_used(user, archive, tmp_path, capsys, monkeypatch):
    """No proxy, no user key: a token in the WLCG discovery place is enough (and never printed)."""
    import shutil

    shutil.rmtree(user.home / ".globus")
    blob = os.urandom(20_000)
    archive.put("/tok/t.bin", blob, tmp_path)
    archive.on_tape("/tok/t.bin")
    token = archive.mint("storage.read:/tok storage.stage:/tok")
    (tmp_path / "run" / f"bt_u{os.getuid()}").write_text(token + "\n")
    monkeypatch.delenv("BEARER_TOKEN_FILE")
    code, doc = run_json(capsys, "login")
    assert code == 0 and doc["kind"] == "token" and token not in str(doc)
    code, out, err = run(capsys, "get", "lta:/tok/t.bin", str(tmp_path / "t.bin"), "--no-progress")
    assert code == 0, err
    assert token not in out + err
    assert (tmp_path / "t.bin").read_bytes() == blob
    # the token's scope does not allow writing: a clear permission error, exit 6
    code, doc = run_json(capsys, "put", str(tmp_path / "t.bin"), "lta:/tok/up.bin")
    assert code == 8 and doc["files"][0]["error_type"] == "PermissionDenied", doc
