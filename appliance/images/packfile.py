"""One file that can rebuild the locked images anywhere: specs + lock + every locked .deb.

Layout (an uncompressed tar: .deb files are compressed already)::

    MANIFEST.json          {"format": 1, "members": {path: {"sha256": ..., "size": ...}}}
    images/images.lock     the lock the .debs belong to
    images/<name>/...      the image specs (spec.yaml, image.yaml, Dockerfile)
    packages/<pool name>   the .deb files, each named as in its archive's pool
    wheels/<file name>     the wheels of derived images with a `pip` list

The manifest is written last and read first; on import every member is hashed while it is read
and must match the manifest, and every .deb must match the sha256 of the lock inside the file,
before it enters the package store. Nothing is written under a final name before it is checked.
"""

from __future__ import annotations

import functools
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ChecksumMismatch, ConfigError
from appliance.fsutil import atomic_open
from appliance.hashing import sha256_bytes
from appliance.images.dockerarchive import add_bytes
from appliance.images.lock import ImagesLock
from appliance.images.packages import LockedDeb, LockedWheel, PackageStore

FORMAT = 1


@dataclass
class PackFileSummary:
    path: str
    images: list[str]
    packages: int
    bytes: int

    def report(self) -> str:
        return (f"{self.path}: {len(self.images)} image(s) ({', '.join(self.images)}), "
                f"{self.packages} package(s), {self.bytes / 2**20:.1f} MiB")


def member_name(f: LockedDeb | LockedWheel) -> str:
    return f"packages/{f.deb_name}" if isinstance(f, LockedDeb) else f"wheels/{f.filename}"


def write_packfile(dest: Path, lock: ImagesLock, spec_dirs: list[Path], store: PackageStore) -> PackFileSummary:
    debs: dict[str, LockedDeb | LockedWheel] = {}
    for image in lock.images.values():
        for deb in image.files:
            debs.setdefault(deb.sha256, deb)
    members: dict[str, dict[str, object]] = {}
    with atomic_open(dest, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def put(name: str, data: bytes) -> None:
            add_bytes(tar, name, data)
            members[name] = {"sha256": sha256_bytes(data), "size": len(data)}

        put("images/images.lock", lock.path.read_bytes())
        for directory in spec_dirs:
            for file in sorted(p for p in directory.rglob("*") if p.is_file()):
                put(f"images/{directory.name}/{file.relative_to(directory)}", file.read_bytes())
        for deb in sorted(debs.values(), key=member_name):
            name = member_name(deb)
            info = tarfile.TarInfo(name)
            info.size, info.mode = deb.size, 0o644
            with open(store.path(deb.sha256), "rb") as src:
                tar.addfile(info, src)
            members[name] = {"sha256": deb.sha256, "size": deb.size}
        put("MANIFEST.json", json.dumps({"format": FORMAT, "members": members}, indent=1,
                                        sort_keys=True).encode())
    return PackFileSummary(str(dest), sorted(lock.images), len(debs), dest.stat().st_size)


def _manifest(tar: tarfile.TarFile, path: Path) -> dict[str, dict[str, object]]:
    try:
        raw = tar.extractfile("MANIFEST.json")
        data = json.loads(raw.read()) if raw else None
    except (KeyError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a package file of `appliance images export-packages` "
                          f"(MANIFEST.json: {err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: MANIFEST.json: expected format {FORMAT}")
    return data["members"]


def read_packfile(path: Path, store: PackageStore, extract_to: Path | None = None) -> ImagesLock:
    """Check the whole file, put its .debs in ``store``, and return the lock it carries (the lock
    and specs are also written under ``extract_to`` when given)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such package file")
    try:
        tar = tarfile.open(path)
    except tarfile.TarError as err:
        raise ConfigError(f"{path}: not a tar file: {err}") from err
    with tar:
        members = _manifest(tar, path)
        lock_bytes = _checked(tar, path, "images/images.lock", members)
        if extract_to is not None:
            for name in members:
                if name.startswith("images/") and ".." not in name.split("/"):
                    target = extract_to / name.removeprefix("images/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(_checked(tar, path, name, members))
            lock_path = extract_to / "images.lock"
        else:
            lock_path = path.with_name(f".{path.name}.images.lock")
            lock_path.write_bytes(lock_bytes)
        try:
            lock = ImagesLock.load(lock_path)
        finally:
            if extract_to is None:
                lock_path.unlink()
        by_name = {member_name(d): d for image in lock.images.values() for d in image.files}
        for name, deb in sorted(by_name.items()):
            entry = members.get(name)
            if entry is None:
                raise ConfigError(f"{path}: {name} ({deb.version}) is locked but not in the file")
            if entry["sha256"] != deb.sha256:
                raise ChecksumMismatch(f"{path}: {name} (manifest against lock)", deb.sha256, str(entry["sha256"]))
            if store.has(deb):
                continue
            src = tar.extractfile(name)
            if src is None:
                raise ConfigError(f"{path}: {name} is not a regular file")
            store.add_stream(iter(functools.partial(src.read, 1 << 20), b""), deb, f"{path}: {name}")
    return lock


def _checked(tar: tarfile.TarFile, path: Path, name: str, members: dict[str, dict[str, object]]) -> bytes:
    if name not in members:
        raise ConfigError(f"{path}: {name} is missing from MANIFEST.json")
    try:
        f = tar.extractfile(name)
    except KeyError as err:
        raise ConfigError(f"{path}: {name} is in the manifest but not in the file") from err
    data = f.read() if f else b""
    if sha256_bytes(data) != members[name]["sha256"]:
        raise ChecksumMismatch(f"{path}: {name}", str(members[name]["sha256"]), sha256_bytes(data))
    return data

