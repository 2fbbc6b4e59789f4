"""Self-contained run bundles: everything a replay needs, in one tar, checked on import.

Layout: ``MANIFEST.json`` (format, run id, every member's sha256), ``record.json``,
``image.tar`` (docker-archive of the run's image), ``objects/<sha256>`` (inputs, outputs and the
recipe snapshot). Import verifies every member against the manifest before anything is
registered; objects enter the store only through its hash-checking writer.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from pathlib import Path

from tqdm import tqdm

from appliance.errors import ApplianceError, ChecksumMismatch, ImageMissing
from appliance.exitcodes import Exit
from appliance.fsutil import atomic_open
from appliance.hashing import BLOCK, sha256_file
from appliance.images.dockerarchive import add_bytes
from appliance.runs.record import RunRecord, RunStore
from appliance.runtimes.base import ContainerRuntime
from appliance.store import ContentStore

FORMAT = "appliance-bundle/1"


class BundleError(ApplianceError):
    exit_code = Exit.CHECKSUM


def export_bundle(record: RunRecord, store: ContentStore, runtime: ContainerRuntime, dest: Path,
                  progress: bool = True) -> Path:
    objects = {e.sha256 for e in [*record.inputs, *record.outputs]} | {record.recipe["code_sha256"]}
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        image_tar = Path(tmp) / "image.tar"
        runtime.save_image(record.image["image_id"], image_tar)
        record_bytes = json.dumps(record.to_dict(), indent=2, sort_keys=True).encode()
        manifest = {
            "format": FORMAT, "run_id": record.run_id, "image_id": record.image["image_id"],
            "members": {"record.json": _sha(record_bytes), "image.tar": sha256_file(image_tar),
                        **{f"objects/{o}": o for o in sorted(objects)}},
        }
        with atomic_open(dest, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            add_bytes(tar, "MANIFEST.json", json.dumps(manifest, indent=2).encode())
            add_bytes(tar, "record.json", record_bytes)
            members = [(image_tar, "image.tar")] + [(store.path_of(o), f"objects/{o}") for o in sorted(objects)]
            for path, arcname in tqdm(members, desc="bundle", unit="file", leave=False, disable=not progress):
                tar.add(path, arcname=arcname)
    return dest


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def import_bundle(src: Path, store: ContentStore, runs: RunStore, runtime: ContainerRuntime,
                  progress: bool = True) -> RunRecord:
    if not src.is_file():
        raise BundleError(f"{src}: no such bundle file")
    try:
        tar = tarfile.open(src)
    except tarfile.TarError as err:
        raise BundleError(f"{src}: not a bundle (tar): {err}") from err
    with tar, tempfile.TemporaryDirectory() as tmp:
        try:
            manifest = json.loads(tar.extractfile("MANIFEST.json").read())  # type: ignore[union-attr]
        except (KeyError, AttributeError, ValueError) as err:
            raise BundleError(f"{src}: MANIFEST.json missing or unreadable") from err
        if manifest.get("format") != FORMAT:
            raise BundleError(f"{src}: MANIFEST.json format {manifest.get('format')!r}, expected {FORMAT}")
        members = manifest["members"]
        record_bytes = tar.extractfile("record.json").read()  # type: ignore[union-attr]
        if _sha(record_bytes) != members["record.json"]:
            raise ChecksumMismatch(f"{src}:record.json", members["record.json"], _sha(record_bytes))
        record = RunRecord.from_dict(json.loads(record_bytes))
        for member in tqdm(tar, desc="import", unit="member", leave=False, disable=not progress):
            name = member.name
            if name.startswith("objects/"):
                expected = name.split("/", 1)[1]
                if members.get(name) != expected:
                    raise BundleError(f"{src}: member {name} is not listed in MANIFEST.json")
                fobj = tar.extractfile(member)
                assert fobj is not None
                with store.writer(expected_sha256=expected, what=f"{src}:{name}") as w:
                    while chunk := fobj.read(BLOCK):
                        w.write(chunk)
            elif name == "image.tar":
                image_tar = Path(tmp) / "image.tar"
                fobj = tar.extractfile(member)
                assert fobj is not None
                with open(image_tar, "wb") as out:
                    while chunk := fobj.read(BLOCK):
                        out.write(chunk)
                actual = sha256_file(image_tar)
                if actual != members["image.tar"]:
                    raise ChecksumMismatch(f"{src}:image.tar", members["image.tar"], actual)
                loaded = runtime.load_image(image_tar)
                if record.image["image_id"] not in loaded:
                    raise ImageMissing(f"{src}: image.tar loaded {loaded}, expected {record.image['image_id']}")
        missing = [m for m in members if m.startswith("objects/") and not store.has(m.split("/", 1)[1])]
        if missing:
            raise BundleError(f"{src}: truncated bundle, missing {missing[:3]}")
    runs.save(record)
    return record
