"""The package store: every .deb an image was built from, kept by sha256, so the image can be
built again after the Debian mirror has moved on (it drops old versions within days).

A locked package (``LockedDeb``) carries what the apt index said of it (pool path, size,
sha256, priority, section, which archive it came from); a file enters the store only when its
size and sha256 match that record. Priority and section are kept because they are the
archive's, not the package's own: six of the 120 base packages here declare a different
priority in their control file than the mirror's index gives them, and mmdebstrap's ``minbase``
selects by the index's priority, so a local repository must carry the archive's values.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from appliance.errors import ApplianceError, ChecksumMismatch, EngineUnavailable
from appliance.exitcodes import Exit
from appliance.fsutil import atomic_open
from appliance.hashing import sha256_file


class PackagesMissing(ApplianceError):
    """The store lacks packages a locked image needs (exit 3, like a missing image)."""

    exit_code = Exit.ENGINE

    def __init__(self, image: str, missing: list, advice: str = ""):  # type: ignore[type-arg]
        self.image, self.missing = image, missing
        names = ", ".join(f"{getattr(d, 'package', None) or d.name}={d.version}" for d in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        super().__init__(f"image '{image}': the package store lacks {len(missing)} locked "
                         f"package(s) ({names}{more}){advice}")


@dataclass(frozen=True)
class LockedDeb:
    package: str
    version: str
    architecture: str
    sha256: str
    size: int
    filename: str  # pool path in its archive, as the index's Filename field gives it
    archive: str = "debian"  # last path component of the apt source URI (debian, debian-security)
    priority: str = "optional"
    section: str = "misc"

    @property
    def deb_name(self) -> str:
        return os.path.basename(self.filename)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LockedDeb:
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LockedWheel:
    """A wheel of a derived image's ``pip`` list: kept in the same store, installed with
    ``pip --require-hashes`` from it."""

    name: str
    version: str
    filename: str
    sha256: str
    size: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LockedWheel:
        return cls(**data)  # type: ignore[arg-type]


def versions(debs: Iterable[LockedDeb]) -> dict[str, str]:
    return {d.package: d.version for d in debs}


def archive_of_list_file(name: str) -> str:
    """``deb.debian.org_debian-security_dists_..._Packages`` -> ``debian-security``.

    apt names a list file after its URI with ``/`` as ``_``; the archive is the component just
    before ``dists``.
    """
    parts = os.path.basename(name).split("_")
    if "dists" in parts and parts.index("dists") > 0:
        return parts[parts.index("dists") - 1]
    return "debian"


def read_index(lists_dir: Path) -> dict[tuple[str, str, str], LockedDeb]:
    """Every stanza of the ``*_Packages`` files apt left in ``lists_dir``, by (name, version, arch)."""
    from debian.deb822 import Packages

    found: dict[tuple[str, str, str], LockedDeb] = {}
    for path in sorted(glob.glob(str(lists_dir / "*_Packages"))):
        archive = archive_of_list_file(path)
        with open(path, encoding="utf-8") as f:
            for p in Packages.iter_paragraphs(f, use_apt_pkg=False):
                key = (p["Package"], p["Version"], p["Architecture"])
                found.setdefault(key, LockedDeb(
                    package=p["Package"], version=p["Version"], architecture=p["Architecture"],
                    sha256=p["SHA256"], size=int(p["Size"]), filename=p["Filename"], archive=archive,
                    priority=p.get("Priority", "optional"), section=p.get("Section", "misc"),
                ))
    return found


def control_key(deb: Path) -> tuple[str, str, str]:
    from debian.debfile import DebFile

    control = DebFile(str(deb)).debcontrol()
    return control["Package"], control["Version"], control["Architecture"]


def describe_debs(deb_dir: Path, lists_dir: Path) -> list[tuple[LockedDeb, Path]]:
    """Match each downloaded .deb with its index stanza; size and sha256 must agree."""
    index = read_index(lists_dir)
    out = []
    for deb in sorted(deb_dir.glob("*.deb")):
        key = control_key(deb)
        if key not in index:
            raise EngineUnavailable(f"{deb}: {key[0]} {key[1]} ({key[2]}) is in no apt index of this build")
        locked = index[key]
        actual = sha256_file(deb)
        if actual != locked.sha256 or deb.stat().st_size != locked.size:
            raise ChecksumMismatch(f"{deb} (index: {locked.filename})", locked.sha256, actual)
        out.append((locked, deb))
    return sorted(out, key=lambda item: (item[0].package, item[0].architecture))


class PackageStore:
    """Content-addressed .deb files: ``<root>/sha256/<aa>/<sha256>``; writes are atomic and verified."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def has(self, deb: LockedDeb | LockedWheel) -> bool:
        p = self.path(deb.sha256)
        return p.is_file() and p.stat().st_size == deb.size

    def missing(self, debs: Iterable[LockedDeb | LockedWheel]) -> list:  # type: ignore[type-arg]
        return [d for d in debs if not self.has(d)]

    def add(self, src: Path, deb: LockedDeb | LockedWheel) -> Path:
        """Copy ``src`` in under its sha256, checking it first; a present file is kept."""
        dest = self.path(deb.sha256)
        if self.has(deb):
            return dest
        actual = sha256_file(src)
        if actual != deb.sha256:
            raise ChecksumMismatch(f"{src} ({getattr(deb, 'package', None) or deb.name} {deb.version})",
                                   deb.sha256, actual)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as fin, atomic_open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            os.fchmod(fout.fileno(), 0o644)  # apt reads repositories as its _apt user
        return dest

    def add_stream(self, stream, deb: LockedDeb | LockedWheel, what: str) -> Path:  # type: ignore[no-untyped-def]
        """Write a download into the store, hashing as it goes; nothing stays on a mismatch."""
        import hashlib

        dest = self.path(deb.sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with atomic_open(dest, "wb") as fout:
            for chunk in stream:
                digest.update(chunk)
                fout.write(chunk)
            if digest.hexdigest() != deb.sha256:
                raise ChecksumMismatch(what, deb.sha256, digest.hexdigest())
            os.fchmod(fout.fileno(), 0o644)
        return dest
