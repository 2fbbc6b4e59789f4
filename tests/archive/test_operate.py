"""Operating the archive from the command line: tokens minted with the server's key, and
migrate / evict / drives against a running server over its admin API (and offline)."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from archive.auth import Authenticator
from archive.cli import main
from archive.config import load_config
from tests.archive.conftest import ISSUER, server_config, tls_session


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    got = capsys.readouterr()
    return code, got.out, got.err


@pytest.fixture
def signing_cfg(tmp_path, pki, token_key):
    """A server config whose RS256 issuer has its private key (as an operator's would)."""
    key, pub = token_key
    priv = tmp_path / "issuer.key.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cfg = server_config(tmp_path / "root", pki, pub)
    cfg.auth.token_keys[0].private_key_file = str(priv)
    cfg.migration.max_age_seconds = 10 ** 6  # nothing goes to tape unless asked
    path = tmp_path / "lta.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return cfg, path


def test_token_issue_mints_what_the_server_accepts(signing_cfg, capsys, tmp_path):
    cfg, path = signing_cfg
    code, out, _ = run(capsys, "--config", str(path), "token", "issue", "--scope",
                       "storage.read:/ storage.create:/scratch", "--lifetime", "1h",
                       "--subject", "bob")
    assert code == 0
    ident = Authenticator(cfg.auth).from_token(out.strip())
    assert ident.name == "bob" and ident.allows("create", "/scratch/x")
    assert not ident.allows("create", "/other") and ident.allows("read", "/other")
    code, out, _ = run(capsys, "--config", str(path), "--json", "token", "issue", "--scope",
                       "storage.stage:/lofar", "--lifetime", "PT30M")
    claims = json.loads(out)["claims"]
    assert claims["iss"] == ISSUER and claims["exp"] - claims["iat"] == 1800
    # HS256 with a shared secret
    hs = tmp_path / "hs.yaml"
    hs.write_text(yaml.safe_dump({"root": str(tmp_path / "hs"), "auth": {"token_keys": [
        {"issuer": "local", "algorithm": "HS256", "secret": "s" * 32}]}}))
    code, out, _ = run(capsys, "--config", str(hs), "token", "issue", "--scope", "storage.read:/")
    hcfg = load_config(str(hs), env={})
    assert code == 0 and Authenticator(hcfg.auth).from_token(out.strip()).name
    # usage errors: one line, exit 2
    code, _, err = run(capsys, "--config", str(path), "token", "issue", "--scope", "read:/")
    assert code == 2 and "--scope" in err and "Traceback" not in err
    code, _, err = run(capsys, "--config", str(path), "token", "issue", "--scope",
                       "storage.read:/", "--lifetime", "soon")
    assert code == 2 and "--lifetime" in err
    code, _, err = run(capsys, "--root", str(tmp_path / "none"), "token", "issue", "--scope",
                       "storage.read:/")
    assert code == 2 and "signing key" in err


def test_migrate_evict_and_drives_against_a_running_server(signing_cfg, capsys, pki, mint):
    from archive.server import serve_in_thread

    cfg, path = signing_cfg
    srv = serve_in_thread(cfg)
    try:
        url = srv.url
        s = tls_session(pki, mint())
        for i in range(3):
            assert s.put(f"{url}/ops/f{i}", data=b"z" * 1000).status_code == 201
        common = ["--config", str(path), "--json"]
        remote = ["--url", url, "--ca", str(pki.ca_cert)]
        code, out, _ = run(capsys, *common, "migrate", "/ops/f0", "/ops/f1", *remote,
                           "--wait", "30")
        res = json.loads(out)
        assert code == 0 and res["waiting"] == 0
        assert [f["locality"] for f in res["files"]] == ["DISK_AND_TAPE"] * 2
        code, out, _ = run(capsys, *common, "evict", "/ops/f0", "/ops/nope", *remote)
        res = json.loads(out)
        assert code == 7 and res["evicted"] == 1
        assert [f["result"] for f in res["files"]] == ["evicted", "error"]
        assert s.get(f"{url}/api/catalog/files/ops/f0").json()["locality"] == "TAPE"
        # the cache was not filled to get there, and a second eviction is a no-op
        code, out, _ = run(capsys, *common, "evict", "/ops/f0", *remote)
        assert json.loads(out)["files"][0]["result"] == "already tape only"
        code, out, _ = run(capsys, *common, "drives", *remote)
        state = json.loads(out)
        assert code == 0 and len(state["drives"]) == cfg.tape.drives
        assert sum(d["mounts"] for d in state["drives"]) >= 1
        assert {"state", "mounted", "seconds_left"} <= set(state["drives"][0])
        # not an operator: refused with exit 8
        reader = mint(scope="storage.read:/")
        code, _, err = run(capsys, "evict", "/ops/f1", *remote, "--token", reader)
        assert code == 8 and "operator" in err
        # the server holds the directory: offline mode says so
        code, _, err = run(capsys, *common, "evict", "/ops/f1", "--offline")
        assert code != 0 and "in use" in err
    finally:
        srv.stop()
    # with the server stopped, offline mode acts on the store
    code, out, _ = run(capsys, "--config", str(path), "--json", "evict", "/ops/f1", "--offline")
    assert code == 0 and json.loads(out)["evicted"] == 1
    t0 = time.monotonic()
    code, out, _ = run(capsys, "--config", str(path), "--json", "migrate", "/ops/f2",
                       "--offline", "--wait", "30")
    assert code == 0 and json.loads(out)["files"][0]["tape_copies"] == 1
    assert time.monotonic() - t0 < 30
