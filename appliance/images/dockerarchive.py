"""A loadable image (docker-archive tar) from a rootfs tar, with a deterministic image ID.

``docker import`` stamps the image config with the current time, so the same rootfs gets a new
image ID on every import. Writing the archive ourselves, with ``created`` set to
SOURCE_DATE_EPOCH and canonical JSON, makes the ID a pure function of the rootfs and the spec:
rebuild the same rootfs and ``docker load`` gives the very same ID. The image config format is
the OCI/Docker image config (``rootfs.diff_ids`` = sha256 of the uncompressed layer tar).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from appliance.fsutil import atomic_open
from appliance.hashing import sha256_file


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def image_config(
    layer_sha256: str, created_epoch: int, env: list[str], cmd: list[str], created_by: str,
    architecture: str = "amd64",
) -> bytes:
    created = datetime.fromtimestamp(created_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return canonical_json({
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": {"Env": env, "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_sha256}"]},
        "history": [{"created": created, "created_by": created_by}],
    })


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_docker_archive(
    rootfs_tar: Path, dest: Path, repo_tag: str, created_epoch: int, env: list[str],
    cmd: list[str], created_by: str, architecture: str = "amd64",
) -> str:
    """Write ``dest`` (loadable by ``docker load``/``podman load``); return the image ID."""
    layer_sha = sha256_file(rootfs_tar)
    config = image_config(layer_sha, created_epoch, env, cmd, created_by, architecture)
    config_sha = hashlib.sha256(config).hexdigest()
    manifest = canonical_json([{
        "Config": f"{config_sha}.json",
        "RepoTags": [repo_tag],
        "Layers": [f"{layer_sha}/layer.tar"],
    }])
    with atomic_open(dest, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, f"{config_sha}.json", config, created_epoch)
        info = tar.gettarinfo(str(rootfs_tar), arcname=f"{layer_sha}/layer.tar")
        info.mtime, info.uid, info.gid, info.uname, info.gname = created_epoch, 0, 0, "", ""
        with open(rootfs_tar, "rb") as layer:
            tar.addfile(info, layer)
        _add_bytes(tar, "manifest.json", manifest, created_epoch)
    return f"sha256:{config_sha}"
