"""The recipe directory as a deterministic tar, kept in the content-addressed store.

What runs is a snapshot of the recipe (recipe.yaml + code, without recipe.lock and caches): the
snapshot is mounted at /recipe, its tar is stored by sha256, and a replay mounts the very same
bytes even if the recipe directory has changed or is gone.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from appliance.recipes.model import LOCK_FILE

EXCLUDED = {LOCK_FILE, "__pycache__", ".pytest_cache", "output"}


def recipe_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in EXCLUDED for part in rel.parts) or not (path.is_file() or path.is_symlink()):
            continue
        files.append(path)
    return files


def archive_bytes(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in recipe_files(root):
            rel = path.relative_to(root).as_posix()
            info = tarfile.TarInfo(rel)
            info.mtime, info.uid, info.gid = 0, 0, 0
            if path.is_symlink():
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                tar.addfile(info)
                continue
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def extract(archive: Path, dest: Path) -> None:
    """Extract a recipe snapshot; members must stay inside ``dest`` (no absolute paths, no ``..``,
    no links pointing out), checked here because Debian's Python 3.11.2 lacks tarfile filters."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if member.name.startswith("/") or root not in (target, *target.parents):
                raise ValueError(f"{archive}: member {member.name!r} would escape the snapshot")
            if member.issym():
                link = (target.parent / member.linkname).resolve()
                if root not in (link, *link.parents):
                    raise ValueError(f"{archive}: link {member.name!r} points outside the snapshot")
            elif not (member.isfile() or member.isdir()):
                raise ValueError(f"{archive}: member {member.name!r} is not a file, directory or link")
        for member in tar.getmembers():
            tar.extract(member, dest, set_attrs=False)
            path = dest / member.name
            if member.isfile():
                path.chmod(member.mode & 0o755 | 0o444)
    for p in [dest, *dest.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
