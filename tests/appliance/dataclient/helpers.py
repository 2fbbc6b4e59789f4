"""A clean user environment for dataclient tests: HOME with ~/.globus, config, no stray tokens."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from appliance.dataclient.cli import main

PASSPHRASE = "correct horse battery staple"


@dataclass
class UserEnv:
    home: Path
    proxy: Path
    config: Path
    passfile: Path

    def write_config(self, data: dict) -> None:
        self.config.write_text(yaml.safe_dump(data))


def make_user_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki, encrypted: bool = True) -> UserEnv:
    home = tmp_path / "home"
    globus = home / ".globus"
    globus.mkdir(parents=True)
    (globus / "usercert.pem").write_bytes(pki.user_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.user_key.read_bytes(), None)
    enc = (serialization.BestAvailableEncryption(PASSPHRASE.encode()) if encrypted
           else serialization.NoEncryption())
    (globus / "userkey.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    (globus / "userkey.pem").chmod(0o400)
    passfile = tmp_path / "pass.txt"
    passfile.write_text(PASSPHRASE + "\n")
    runtime = tmp_path / "run"
    runtime.mkdir()
    cfg = home / ".config" / "dataclient" / "config.yaml"
    cfg.parent.mkdir(parents=True)
    for var in ("BEARER_TOKEN", "BEARER_TOKEN_FILE", "X509_USER_CERT", "X509_USER_KEY", "DATACLIENT_CONFIG",
                "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("BEARER_TOKEN_FILE", str(runtime / "no-token"))
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "x509up"))
    monkeypatch.setenv("X509_CERT_DIR", str(pki.cert_dir))
    return UserEnv(home, tmp_path / "x509up", cfg, passfile)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code, out, _err = run(capsys, *argv, "--json")
    return code, json.loads(out)
