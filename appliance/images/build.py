"""Build the pinned images locally: mmdebstrap for bases, ``docker build`` for derived images.

No registry is involved. A base is an mmdebstrap rootfs tar (bit-identical for the same package
set under SOURCE_DATE_EPOCH) loaded through a docker-archive we write ourselves, so its image ID
is reproducible too. A derived image is ``docker build`` FROM the base's image ID; its layer is
normalised by the Dockerfile (timestamps clamped, logs removed) so that its diff ID can repeat,
and its layers are re-packed with a canonical config, so its image ID can repeat as well.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from appliance.errors import ApplianceError, ConfigError
from appliance.hashing import sha256_file
from appliance.images.aptsources import debian_sources_for
from appliance.images.dockerarchive import read_docker_archive, write_docker_archive
from appliance.images.lock import LockedImage
from appliance.images.spec import ImageSpec
from appliance.runtimes.docker import DockerRuntime

log = logging.getLogger(__name__)


class ImageBuildError(ApplianceError):
    exit_code = 3


@dataclass
class BuiltImage:
    locked: LockedImage
    archive: Path | None = None  # docker-archive tar (bases), loadable by podman too


def dpkg_packages(rootfs_tar: Path) -> dict[str, str]:
    """Package -> version, read from the rootfs's dpkg status file."""
    with tarfile.open(rootfs_tar) as tar:
        for name in ("./var/lib/dpkg/status", "var/lib/dpkg/status"):
            try:
                member = tar.getmember(name)
                break
            except KeyError:
                continue
        else:
            return {}
        f = tar.extractfile(member)
        text = f.read().decode() if f else ""
    packages: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" ")
        )
        if "Package" in fields and "installed" in fields.get("Status", ""):
            packages[fields["Package"]] = fields.get("Version", "")
    return packages


def mmdebstrap_rootfs(spec: ImageSpec, out: Path) -> Path:
    sources = debian_sources_for(spec.suite, spec.components)
    tmp = out.with_name(f".tmp-{out.name}")
    cmd = [
        "mmdebstrap", f"--variant={spec.variant}", f"--architectures={spec.architecture}",
        f"--include={','.join(spec.packages)}", "--format=tar", spec.suite, str(tmp),
        *[s.line() for s in sources],
    ]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(spec.source_date_epoch)}
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ImageBuildError(f"mmdebstrap for {spec.directory} failed: {proc.stderr.strip()[-800:]}")
    os.replace(tmp, out)
    return out


def build_base(spec: ImageSpec, build_dir: Path, runtime: DockerRuntime) -> BuiltImage:
    build_dir.mkdir(parents=True, exist_ok=True)
    rootfs = mmdebstrap_rootfs(spec, build_dir / f"{spec.name}.rootfs.tar")
    rootfs_sha = sha256_file(rootfs)
    archive = build_dir / f"{spec.name}.docker-archive.tar"
    image_id = write_docker_archive(
        [rootfs], archive, repo_tag=f"{spec.tag}:rootfs-{rootfs_sha[:12]}",
        created_epoch=spec.source_date_epoch,
        container_config={"Env": list(spec.env), "Cmd": list(spec.cmd)},
        created_by=[f"mmdebstrap {spec.variant} {spec.suite} +{','.join(spec.packages)}"],
        architecture=spec.architecture,
    )
    loaded = runtime.load_image(archive)
    if image_id not in loaded:
        raise ImageBuildError(f"docker load of {archive} gave {loaded}, expected {image_id}")
    return BuiltImage(
        LockedImage(
            name=spec.name, builder=spec.builder, image_id=image_id, diff_ids=[f"sha256:{rootfs_sha}"],
            definition_sha256=spec.definition_hash(), tag=f"{spec.tag}:rootfs-{rootfs_sha[:12]}",
            rootfs_sha256=rootfs_sha, packages=dpkg_packages(rootfs), built_at=_now(),
        ),
        archive,
    )


def build_derived(spec: ImageSpec, base: LockedImage, runtime: DockerRuntime, build_dir: Path,
                  nocache: bool = False) -> BuiltImage:
    """``docker build`` FROM the base's ID, then re-pack the layers with a canonical config so the
    image ID depends only on the layer contents (the builder's own config carries its build time)."""
    api = runtime.client.api
    built_id = None
    logs: list[str] = []
    for event in api.build(
        path=str(spec.directory), buildargs={"BASE_IMAGE": base.image_id,
                                             "SOURCE_DATE_EPOCH": str(spec.source_date_epoch)},
        network_mode="host", rm=True, forcerm=True, pull=False, nocache=nocache, decode=True,
    ):
        if "stream" in event:
            logs.append(event["stream"])
            log.info("%s", event["stream"].rstrip())
        if "error" in event:
            raise ImageBuildError(
                f"docker build of {spec.directory}/Dockerfile failed: {event['error'].strip()}\n"
                + "".join(logs[-15:])
            )
        if "aux" in event and "ID" in event["aux"]:
            built_id = event["aux"]["ID"]
    if not built_id:
        raise ImageBuildError(f"docker build of {spec.directory} reported no image ID")
    build_dir.mkdir(parents=True, exist_ok=True)
    definition = spec.definition_hash()
    with tempfile.TemporaryDirectory(dir=build_dir) as tmp:
        saved = Path(tmp) / "built.tar"
        runtime.save_image(built_id, saved)
        layers, built_config = read_docker_archive(saved, Path(tmp) / "layers")
        cc = built_config.get("config") or {}
        assert isinstance(cc, dict)
        keep = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes")
        inherited = len(base.diff_ids)
        created_by = [f"{base.tag} layer {i}" if i < inherited else f"{spec.tag}: Dockerfile {definition[:12]}"
                      for i in range(len(layers))]
        archive = build_dir / f"{spec.name}.docker-archive.tar"
        tag = f"{spec.tag}:{definition[:12]}"
        image_id = write_docker_archive(
            layers, archive, repo_tag=tag, created_epoch=spec.source_date_epoch,
            container_config={k: cc[k] for k in keep if cc.get(k)}, created_by=created_by,
        )
    loaded = runtime.load_image(archive)
    if image_id not in loaded:
        raise ImageBuildError(f"docker load of {archive} gave {loaded}, expected {image_id}")
    if built_id != image_id:
        runtime.remove_image(built_id)
    info = runtime.image_info(image_id)
    return BuiltImage(LockedImage(
        name=spec.name, builder=spec.builder, image_id=image_id, diff_ids=list(info["diff_ids"]),  # type: ignore[arg-type]
        definition_sha256=definition, tag=tag, base_image_id=base.image_id, built_at=_now(),
    ), archive)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_tools() -> None:
    for tool in ("mmdebstrap",):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            raise ConfigError(f"{tool} is not installed (apt-get install {tool}; `make deps` does it)")
