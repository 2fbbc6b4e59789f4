"""Proxy creation, inspection, renewal and the credential errors users meet."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

from cryptography import x509

from appliance.dataclient.proxy import PROXY_CERT_INFO, create_proxy, read_proxy
from tests.appliance.dataclient.helpers import make_user_env, run, run_json
from tests.prereq import require


def test_proxy_init_and_info(tmp_path, monkeypatch, capsys, pki):
    env = make_user_env(tmp_path, monkeypatch, pki)
    code, doc = run_json(capsys, "proxy-init", "--hours", "2", "--passphrase-file", str(env.passfile))
    assert code == 0 and doc["subject"].startswith("/DC=test/CN=Test User/CN=")
    assert env.proxy.stat().st_mode & 0o777 == 0o600
    certs = x509.load_pem_x509_certificates(env.proxy.read_bytes())
    ext = certs[0].extensions.get_extension_for_oid(PROXY_CERT_INFO)
    assert ext.critical and len(certs) == 2
    code, doc = run_json(capsys, "proxy-info")
    assert code == 0 and doc["identity"] == "/DC=test/CN=Test User" and doc["issuer"] == doc["identity"]
    assert 7000 < doc["seconds_left"] <= 7200
    code, out, _ = run(capsys, "proxy-info")
    assert "timeleft : 1:59" in out or "timeleft : 2:00" in out
    assert "PRIVATE KEY" not in out


def test_grid_proxy_info_accepts_our_proxy(tmp_path, pki):
    require(shutil.which("grid-proxy-info") is not None, "grid-proxy-info not installed")
    out = tmp_path / "p"
    create_proxy(pki.user_cert, pki.user_key, out, hours=1)
    info = subprocess.run(["grid-proxy-info", "-file", str(out)], capture_output=True, text=True,
                          check=True).stdout
    assert "RFC 3820 compliant impersonation proxy" in info and "/DC=test/CN=Test User" in info


def test_wrong_passphrase(tmp_path, monkeypatch, capsys, pki):
    env = make_user_env(tmp_path, monkeypatch, pki)
    env.passfile.write_text("not it\n")
    code, out, err = run(capsys, "proxy-init", "--passphrase-file", str(env.passfile))
    assert code == 8 and "wrong passphrase" in err and "not it" not in err + out
    assert not env.proxy.exists()


def test_encrypted_key_without_passphrase_source(tmp_path, monkeypatch, capsys, pki):
    make_user_env(tmp_path, monkeypatch, pki)
    code, _out, err = run(capsys, "proxy-init")  # stdin is not a terminal under pytest
    assert code == 8 and "--passphrase-file" in err


def test_expired_proxy_is_renewed_when_key_available(tmp_path, monkeypatch, capsys, pki):
    env = make_user_env(tmp_path, monkeypatch, pki)
    pki.make_proxy(env.proxy, expired=True)
    code, doc = run_json(capsys, "login", "--passphrase-file", str(env.passfile))
    assert code == 0 and doc["kind"] == "renewed-proxy"
    assert read_proxy(env.proxy).seconds_left() > 3600


def test_expired_proxy_without_key_is_a_clear_error(tmp_path, monkeypatch, capsys, pki):
    env = make_user_env(tmp_path, monkeypatch, pki)
    shutil.rmtree(env.home / ".globus")
    pki.make_proxy(env.proxy, expired=True)
    code, _out, err = run(capsys, "login")
    assert code == 8 and "expired" in err and "proxy-init" in err
    code, doc = run_json(capsys, "proxy-info")
    assert code == 8 and doc["seconds_left"] == 0


def test_proxy_never_outlives_user_certificate(tmp_path, pki):
    info = create_proxy(pki.user_cert, pki.user_key, tmp_path / "p", hours=24 * 365)
    user = x509.load_pem_x509_certificate(pki.user_cert.read_bytes())
    assert info.not_after <= user.not_valid_after_utc
    assert info.not_after > dt.datetime.now(dt.UTC)


def test_token_discovery_wins_and_is_never_printed(tmp_path, monkeypatch, capsys, pki):
    env = make_user_env(tmp_path, monkeypatch, pki)
    tok = tmp_path / "tok"
    tok.write_text("s3cr3t-token-value\n")
    code, out, _ = run(capsys, "login", "--token-file", str(tok))
    assert code == 0 and "s3cr3t" not in out
    code, doc = run_json(capsys, "login")
    assert code == 0 and doc["kind"] == "token" and "s3cr3t" not in str(doc)
    assert not env.proxy.exists()
    monkeypatch.setenv("BEARER_TOKEN", "other-secret")
    code, doc = run_json(capsys, "login")
    assert doc["where"] == "BEARER_TOKEN"
