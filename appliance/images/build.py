"""Build the pinned images locally: mmdebstrap for bases, ``docker build`` for derived images.

No registry is involved. A base is an mmdebstrap rootfs tar (bit-identical for the same package
set under SOURCE_DATE_EPOCH) loaded through a docker-archive we write ourselves, so its image ID
is reproducible too. A derived image is ``docker build`` FROM the base's image ID; its layer is
normalised by the Dockerfile (timestamps clamped, logs removed) so that its diff ID can repeat,
and its layers are re-packed with a canonical config, so its image ID can repeat as well.

Packages: the online path reads today's mirror once, to learn and fetch the .debs (into the
package store, checked against the index); the offline path takes the locked .debs from the
store. mmdebstrap from the mirror and from a repository of the store gave the same rootfs tar
bit for bit here (the rootfs carries no trace of its source: its sources.list is a fixed note),
and derived images always install from a repository of the store, served on loopback.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from appliance.errors import ApplianceError, ConfigError
from appliance.exitcodes import Exit
from appliance.fsutil import link_or_copy
from appliance.hashing import sha256_file
from appliance.images.aptrepo import make_repository, serve
from appliance.images.aptsources import debian_sources_for
from appliance.images.dockerarchive import read_docker_archive, write_docker_archive
from appliance.images.lock import LockedImage
from appliance.images.packages import (
    LockedDeb,
    LockedWheel,
    PackagesMissing,
    PackageStore,
    describe_debs,
)
from appliance.images.spec import ImageSpec
from appliance.runtimes.docker import DockerRuntime

log = logging.getLogger(__name__)


class ImageBuildError(ApplianceError):
    exit_code = Exit.ENGINE


@dataclass
class BuiltImage:
    locked: LockedImage
    archive: Path | None = None  # docker-archive tar (bases), loadable by podman too


SOURCES_LIST = (
    "# The packages of this image came from the appliance package store (see images/images.lock);\n"
    "# no mirror is configured in the image, so its content does not depend on where it was built.\n"
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp() -> str:
    """A snapshot-mirror timestamp for 'the mirror as read now'."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _mmdebstrap(spec: ImageSpec, out: Path, mirrors: list[str], extra: list[str], offline: bool) -> Path:
    tmp = out.with_name(f".tmp-{out.name}")
    cmd = [
        "mmdebstrap", f"--variant={spec.variant}", f"--architectures={spec.architecture}",
        f"--include={','.join(spec.packages)}", "--format=tar", *extra,
        f"--customize-hook=printf '%s' '{SOURCES_LIST}' > \"$1/etc/apt/sources.list\"",
        spec.suite, str(tmp), *mirrors,
    ]
    if offline:  # a network namespace of its own, loopback down: nothing can be fetched
        cmd = ["unshare", "--net", "--", *cmd]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(spec.source_date_epoch)}
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ImageBuildError(f"mmdebstrap for {spec.directory} failed: {proc.stderr.strip()[-800:]}")
    os.replace(tmp, out)
    return out


def base_rootfs_online(spec: ImageSpec, out: Path, store: PackageStore) -> list[LockedDeb]:
    """mmdebstrap from the host's mirror; every .deb it used goes into the store, checked
    against the apt index it came with (``--skip=essential/unlink`` keeps them until then)."""
    mirrors = [s.line() for s in debian_sources_for(spec.suite, spec.components)]
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".capture-") as tmp:
        debs, lists = Path(tmp) / "debs", Path(tmp) / "lists"
        _mmdebstrap(spec, out, mirrors, [
            "--skip=essential/unlink",
            f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
            f"--customize-hook=sync-out /var/lib/apt/lists {lists}",
        ], offline=False)
        described = describe_debs(debs, lists)
        for locked, path in described:
            store.add(path, locked)
    return [locked for locked, _ in described]


def base_rootfs_offline(spec: ImageSpec, out: Path, store: PackageStore, debs: list[LockedDeb]) -> None:
    """mmdebstrap from a repository made of the store alone, in a network namespace of its own.

    The repository lives under /tmp because mmdebstrap's file-mirror-automount hook leaves the
    mount point's parent directories in the chroot, and mmdebstrap empties the chroot's /tmp:
    anywhere else they end up in the rootfs (measured: the image ID then differs)."""
    with tempfile.TemporaryDirectory(prefix="appliance-repo-") as tmp:
        repo = make_repository(debs, store, Path(tmp), spec.suite, spec.architecture, spec.name)
        _mmdebstrap(spec, out, [f"deb [trusted=yes] file://{repo} {spec.suite} main"],
                    ["--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount"], offline=True)


def build_base(spec: ImageSpec, build_dir: Path, runtime: DockerRuntime, store: PackageStore,
               debs: list[LockedDeb] | None = None) -> BuiltImage:
    """Online (``debs`` None: today's mirror, filling the store) or offline (the locked debs)."""
    check_tools()
    build_dir.mkdir(parents=True, exist_ok=True)
    rootfs = build_dir / f"{spec.name}.rootfs.tar"
    resolved_at = ""  # only a build that reads the mirror knows when it did
    if debs is None:
        resolved_at = _stamp()
        debs = base_rootfs_online(spec, rootfs, store)
    else:
        base_rootfs_offline(spec, rootfs, store, debs)
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
    rootfs.unlink()  # the docker-archive holds the same bytes
    return BuiltImage(
        LockedImage(
            name=spec.name, builder=spec.builder, image_id=image_id, diff_ids=[f"sha256:{rootfs_sha}"],
            definition_sha256=spec.definition_hash(), tag=f"{spec.tag}:rootfs-{rootfs_sha[:12]}",
            rootfs_sha256=rootfs_sha, debs=debs, resolved_at=resolved_at, built_at=_now(),
        ),
        archive,
    )


RESOLVE_SCRIPT = """set -eu
apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --download-only \
    -o Dir::Cache::archives=/out/debs "$@" >&2
cp /var/lib/apt/lists/*_Packages /out/lists/
"""


def resolve_derived(spec: ImageSpec, base: LockedImage, suite: str, runtime: DockerRuntime,
                    store: PackageStore, work: Path) -> list[LockedDeb]:
    """Which .debs ``apt-get install <spec.apt>`` takes on the base from today's mirror: apt in a
    throw-away container of the base (its own dpkg status and apt), downloading only; the files
    go into the store, checked against the index they came with."""
    if not spec.apt:
        return []
    mirrors = [s.line() for s in debian_sources_for(suite, ("main",))]
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix=".resolve-") as tmp:
        out = Path(tmp)
        (out / "debs" / "partial").mkdir(parents=True)
        (out / "lists").mkdir()
        sources = out / "host.list"
        sources.write_text("\n".join(mirrors) + "\n")
        try:
            container = runtime.client.containers.run(
                base.image_id, ["sh", "-c", RESOLVE_SCRIPT, "resolve", *spec.apt], network_mode="host",
                volumes={str(out): {"bind": "/out", "mode": "rw"},
                         str(sources): {"bind": "/etc/apt/sources.list.d/host.list", "mode": "ro"}},
                detach=True,
            )
            try:
                status = container.wait()
                logs = container.logs().decode(errors="replace")
            finally:
                container.remove(force=True)
        except Exception as err:  # noqa: BLE001 - the SDK's errors, one line for the user
            raise ImageBuildError(f"resolving the packages of {spec.directory}: {err}") from err
        if status.get("StatusCode") != 0:
            raise ImageBuildError(f"apt in the base could not install {' '.join(spec.apt)} for "
                                  f"{spec.directory}: {logs.strip()[-800:]}")
        described = describe_debs(out / "debs", out / "lists")
        for locked, path in described:
            store.add(path, locked)
        return [locked for locked, _ in described]


def resolve_wheels(spec: ImageSpec, store: PackageStore, work: Path) -> list[LockedWheel]:
    """``pip download`` of the spec's pinned wheels (binary only, no dependencies: the list is
    complete by rule) with this Python (the image's is Debian's CPython 3.11 too) and the pip
    index this machine is configured with; each wheel goes into the store by its sha256."""
    if not spec.pip:
        return []
    from packaging.utils import parse_wheel_filename

    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix=".wheels-") as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "--only-binary=:all:", "--dest", tmp, *spec.pip], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageBuildError(f"{spec.directory}: pip download {' '.join(spec.pip)} failed: "
                                  f"{proc.stderr.strip()[-600:]}")
        wheels = []
        for path in sorted(Path(tmp).glob("*.whl")):
            name, version, _, _ = parse_wheel_filename(path.name)
            locked = LockedWheel(str(name), str(version), path.name, sha256_file(path), path.stat().st_size)
            store.add(path, locked)
            wheels.append(locked)
    return wheels


def _wheel_repository(wheels: list[LockedWheel], store: PackageStore, repo: Path, image: str) -> None:
    """``wheels/`` (a directory listing pip reads as --find-links) and a hash-pinned requirements file."""
    missing = store.missing(wheels)
    if missing:
        raise PackagesMissing(image, missing)
    (repo / "wheels").mkdir()
    lines = []
    for w in sorted(wheels, key=lambda w: w.filename):
        link_or_copy(store.path(w.sha256), repo / "wheels" / w.filename)
        lines.append(f"{w.name}=={w.version} --hash=sha256:{w.sha256}")
    (repo / "requirements.txt").write_text("\n".join(lines) + "\n")


def build_derived(spec: ImageSpec, base: LockedImage, suite: str, runtime: DockerRuntime, build_dir: Path,
                  store: PackageStore, debs: list[LockedDeb] | None = None,
                  wheels: list[LockedWheel] | None = None, nocache: bool = False) -> BuiltImage:
    """``docker build`` FROM the base's ID with ``spec.apt`` served from the store over loopback
    (``debs`` None: resolved from today's mirror first), then re-pack the layers with a canonical
    config so the image ID depends only on the layer contents (the builder's own config carries
    its build time)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    resolved_at = ""  # only a build that reads the mirror knows when it did
    if debs is None:
        resolved_at = _stamp()
        debs = resolve_derived(spec, base, suite, runtime, store, build_dir)
        wheels = resolve_wheels(spec, store, build_dir)
    wheels = wheels or []
    api = runtime.client.api
    built_id = None
    logs: list[str] = []
    with tempfile.TemporaryDirectory(dir=build_dir, prefix=".repo-") as repo_dir:
        make_repository(debs, store, Path(repo_dir), suite, "amd64", spec.name)
        if wheels:
            _wheel_repository(wheels, store, Path(repo_dir), spec.name)
        with serve(Path(repo_dir)) as repo_url:
            args = {"BASE_IMAGE": base.image_id, "SOURCE_DATE_EPOCH": str(spec.source_date_epoch),
                    "APT_REPO": f"{repo_url} {suite} main", "APT_PACKAGES": " ".join(spec.apt)}
            if wheels:  # for `pip install --no-index --no-deps --require-hashes -r $PIP_REQUIREMENTS --find-links $PIP_FIND_LINKS`
                args |= {"PIP_REQUIREMENTS": f"{repo_url}/requirements.txt", "PIP_FIND_LINKS": f"{repo_url}/wheels/"}
            for event in api.build(
                path=str(spec.directory), buildargs=args,
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
    archive.unlink()
    if built_id != image_id:
        runtime.remove_image(built_id)
    info = runtime.image_info(image_id)
    return BuiltImage(LockedImage(
        name=spec.name, builder=spec.builder, image_id=image_id, diff_ids=list(info["diff_ids"]),  # type: ignore[arg-type]
        definition_sha256=definition, tag=tag, base_image_id=base.image_id, debs=debs, wheels=wheels,
        resolved_at=resolved_at, built_at=_now(),
    ))


def check_tools() -> None:
    """mmdebstrap for bases (``make_repository`` checks apt-ftparchive where it is needed)."""
    if shutil.which("mmdebstrap") is None:
        raise ConfigError("mmdebstrap is not installed (apt-get install mmdebstrap; `make deps` does it)")
