"""The archive leg of ``make demo``: the recipe's input lives on (simulated) tape.

A Long Term Archive server runs on 127.0.0.1 (HTTPS with a throw-away CA, bearer tokens, tape
clock sped up 600x). The demo uploads the input with ``dataclient put``, waits until it has been
migrated to tape, evicts the disk copy, and then runs a recipe whose input is an ``lta://`` URI:
the input resolver asks ``archiveinfo``, stages the file through the WLCG Tape REST API, copies it
with an end-to-end checksum into the content store, and the run and its replay proceed as usual.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import jwt
import yaml

from appliance.cluster.pki import make_cluster_pki


def start_archive(demo: Path):  # type: ignore[no-untyped-def]
    from archive.config import load_config
    from archive.server import serve_in_thread

    pki = make_cluster_pki(demo / "pki")
    secret = os.urandom(32).hex()
    cfg = load_config(
        None, env={}, root=str(demo / "lta"),
        server={"port": 0, "host": "127.0.0.1", "tls_cert": str(pki.host_cert), "tls_key": str(pki.host_key),
                "ca_dir": str(pki.cert_dir), "sitename": "DEMO-LTA"},
        clock={"mode": "real", "speed": 600.0},
        migration={"max_age_seconds": 60.0, "batch_bytes": 50_000_000_000, "batch_files": 1000},
        auth={"token_keys": [{"issuer": "https://demo.invalid", "algorithm": "HS256", "secret": secret}]},
    )
    server = serve_in_thread(cfg)
    token = jwt.encode({"iss": "https://demo.invalid", "sub": "demo", "exp": int(time.time()) + 3600,
                        "scope": "storage.read:/ storage.create:/ storage.modify:/ storage.stage:/"},
                       secret, algorithm="HS256")
    return server, pki, token


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.1)


def archive_recipe(src: Path, dest: Path, lta_path: str) -> Path:
    """A copy of the example recipe whose input comes from the archive instead of the repository."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("recipe.lock", "data", "__pycache__"))
    recipe = yaml.safe_load((dest / "recipe.yaml").read_text())
    recipe["name"] = recipe["name"] + "-from-lta"
    recipe["inputs"] = [{"name": "psf.fits", "uri": f"lta://{lta_path}"}]
    (dest / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return dest
