"""A loadable image (docker-archive tar) from layer tars, with a deterministic image ID.

``docker import`` and ``docker build`` stamp the image config with the current time, so the same
content gets a new image ID every time. Writing the archive ourselves, with ``created`` set to
SOURCE_DATE_EPOCH and canonical JSON, makes the ID a pure function of the layers and the spec:
rebuild the same layers and ``docker load`` gives the very same ID. The image config format is
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
    layer_sha256s: list[str], created_epoch: int, container_config: dict[str, object],
    created_by: list[str], architecture: str = "amd64",
) -> bytes:
    """Canonical image config: ``created`` and every history entry at SOURCE_DATE_EPOCH."""
    created = datetime.fromtimestamp(created_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return canonical_json({
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{s}" for s in layer_sha256s]},
        "history": [{"created": created, "created_by": by} for by in created_by],
    })


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int = 0) -> None:
    """Add an in-memory member (mode 0644, owner root) to a tar being written."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_docker_archive(
    layers: list[Path], dest: Path, repo_tag: str, created_epoch: int,
    container_config: dict[str, object], created_by: list[str], architecture: str = "amd64",
) -> str:
    """Write ``dest`` (loadable by ``docker load``/``podman load``); return the image ID.

    ``layers`` are uncompressed layer tars, bottom first; ``created_by`` has one entry per layer.
    """
    if len(created_by) != len(layers):
        raise ValueError("one created_by entry per layer")
    shas = [sha256_file(layer) for layer in layers]
    config = image_config(shas, created_epoch, container_config, created_by, architecture)
    config_sha = hashlib.sha256(config).hexdigest()
    manifest = canonical_json([{
        "Config": f"{config_sha}.json",
        "RepoTags": [repo_tag],
        "Layers": [f"{sha}/layer.tar" for sha in shas],
    }])
    with atomic_open(dest, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, f"{config_sha}.json", config, created_epoch)
        for sha, path in zip(shas, layers, strict=True):
            info = tar.gettarinfo(str(path), arcname=f"{sha}/layer.tar")
            info.mtime, info.uid, info.gid, info.uname, info.gname = created_epoch, 0, 0, "", ""
            with open(path, "rb") as layer:
                tar.addfile(info, layer)
        add_bytes(tar, "manifest.json", manifest, created_epoch)
    return f"sha256:{config_sha}"


def read_docker_archive(archive: Path, out_dir: Path) -> tuple[list[Path], dict[str, object]]:
    """Unpack a ``docker save`` tar: its layer tars (bottom first) and its image config."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        config = json.loads(tar.extractfile(manifest["Config"]).read())  # type: ignore[union-attr]
        layers = []
        for i, name in enumerate(manifest["Layers"]):
            src = tar.extractfile(name)
            assert src is not None
            dest = out_dir / f"layer-{i}.tar"
            with open(dest, "wb") as f:
                while chunk := src.read(1 << 20):
                    f.write(chunk)
            layers.append(dest)
    return layers, config
