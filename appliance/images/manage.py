"""Image operations behind ``appliance images``: ensure, verify, rebuild, export, save.

Which identity an image has on this machine, in order of preference:

1. the locked one (``images/images.lock``), if the engine has it;
2. the locked one rebuilt from the package store (filled, if need be, from a package file or a
   dated snapshot mirror): the same image ID, bit for bit, with no network;
3. the locked one rebuilt from today's mirror, when the mirror still has the locked versions;
4. otherwise a *local stand-in* built from today's mirror, recorded in the machine-local overlay
   (``<image_store>/images.lock.local``) with a paragraph that says what moved and how to get
   the exact images back. The tracked lock changes only with ``build --update-lock``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.config import Settings
from appliance.errors import RESTORE_ADVICE, RESTORE_WAYS, ConfigError
from appliance.images.build import build_base, build_derived
from appliance.images.lock import (
    LOCAL_HEADER,
    ImagesLock,
    LockedImage,
    local_lock_path,
)
from appliance.images.packages import LockedDeb, PackagesMissing, PackageStore
from appliance.images.spec import ImageSpec, load_specs
from appliance.runtimes.docker import DockerRuntime

log = logging.getLogger(__name__)

# verdict -> (ok, phrase)
VERDICTS = {
    "present": (True, "present"),
    "present-local": (True, "present as its local stand-in"),
    "identical-store": (True, "identical from the package store"),
    "identical-mirror": (True, "identical from the mirror"),
    "same-content": (True, "same content (layers equal, image config differs)"),
    "built": (True, "built (nothing was locked before)"),
    "locked": (True, "built and locked"),
    "stand-in": (True, "not reproducible here: built a local stand-in from today's mirror"),
    "differs": (False, "differs"),
}


@dataclass
class ImageCheck:
    """Outcome for one image; ``verdict`` is a key of ``VERDICTS``."""

    name: str
    verdict: str
    locked_id: str | None
    actual_id: str | None
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return VERDICTS[self.verdict][0]

    def report(self) -> str:
        line = (f"{self.name}: {VERDICTS[self.verdict][1]} (locked {self.locked_id or '-'}, "
                f"actual {self.actual_id or '-'})")
        return "\n".join([line, *[textwrap.fill(r, 100, initial_indent="  - ", subsequent_indent="    ")
                                  for r in self.reasons]])


def package_changes(old: dict[str, str], new: dict[str, str], limit: int = 15) -> list[str]:
    """Human-readable list of package differences between two package sets."""
    changes = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            changes.append(f"{name}: {old.get(name, 'absent')} -> {new.get(name, 'absent')}")
    if len(changes) > limit:
        changes = changes[:limit] + [f"... and {len(changes) - limit} more"]
    return changes


def compare(spec: ImageSpec, locked: LockedImage | None, built: LockedImage, source: str) -> ImageCheck:
    """``source`` is ``store`` or ``mirror``: where the packages of ``built`` came from."""
    if locked is None:
        return ImageCheck(spec.name, "built", None, built.image_id, ["no earlier identity was locked"])
    if locked.image_id == built.image_id:
        return ImageCheck(spec.name, f"identical-{source}", locked.image_id, built.image_id,
                          ["image ID reproduced bit for bit"])
    reasons = []
    if locked.definition_sha256 != built.definition_sha256:
        reasons.append(f"the spec in {spec.directory} changed since it was locked")
    if locked.diff_ids == built.diff_ids:
        reasons.append("layer contents (diff IDs) are identical; only the image config differs")
        return ImageCheck(spec.name, "same-content", locked.image_id, built.image_id, reasons)
    if locked.base_image_id != built.base_image_id:
        reasons.append(f"built on another base ({locked.base_image_id} -> {built.base_image_id})")
    changed = package_changes(locked.packages, built.packages)
    if changed:
        reasons += ["Debian packages that moved (locked -> now):", *changed]
    elif not reasons:
        reasons.append("same packages but different layer contents: a step of the build is not "
                       "deterministic (check SOURCE_DATE_EPOCH and the Dockerfile's normalisation)")
    return ImageCheck(spec.name, "differs", locked.image_id, built.image_id, reasons)


class ImageManager:
    def __init__(self, settings: Settings, runtime: DockerRuntime | None = None):
        self.settings = settings
        self.runtime = runtime or DockerRuntime()
        self.lock_path = settings.images_dir / "images.lock"
        self.local_path = local_lock_path(settings.image_store)
        self.build_dir = settings.image_store / "build"
        self.store = PackageStore(settings.package_store)

    # -- helpers --------------------------------------------------------------------------------
    def specs(self, names: list[str] | None = None) -> list[ImageSpec]:
        specs = load_specs(self.settings.images_dir)
        if names:
            unknown = set(names) - {s.name for s in specs}
            if unknown:
                raise ConfigError(f"unknown image(s) {sorted(unknown)}; specs: {[s.name for s in specs]}")
        return specs

    def _selected(self, specs: list[ImageSpec], names: list[str] | None) -> list[ImageSpec]:
        """The named images and everything they build on (bases first)."""
        if not names:
            return specs
        by_name = {s.name: s for s in specs}
        wanted: set[str] = set()
        for name in names:
            while name and name not in wanted:
                wanted.add(name)
                name = by_name[name].base or ""
        return [s for s in specs if s.name in wanted]

    def _suite(self, spec: ImageSpec, specs: dict[str, ImageSpec]) -> str:
        while spec.base:
            spec = specs[spec.base]
        return spec.suite

    def store_has(self, locked: LockedImage) -> bool:
        """All of ``locked``'s packages are in the store, after asking a snapshot mirror if one is set."""
        missing = self.store.missing(locked.files)
        debs = [d for d in missing if isinstance(d, LockedDeb)]
        if debs and self.settings.snapshot_mirror:  # wheels: PyPI keeps every release, the store is the guarantee
            from appliance.images.snapshot import fetch_missing

            fetch_missing(self.settings.snapshot_mirror, debs, locked.resolved_at, self.store)
            missing = self.store.missing(locked.files)
        return bool(locked.debs) and not missing

    def _build(self, spec: ImageSpec, specs: dict[str, ImageSpec], base: LockedImage | None,
               pinned: LockedImage | None, nocache: bool = False, build_dir: Path | None = None) -> LockedImage:
        """``pinned`` None: packages from today's mirror (and PyPI); else its locked files from the store."""
        out = build_dir or self.build_dir
        debs = pinned.debs if pinned is not None else None
        source = ("today's mirror" if pinned is None
                  else f"the package store ({len(pinned.files)} locked files)")
        print(f"appliance images: building '{spec.name}' from {source} ...", file=sys.stderr, flush=True)
        if spec.builder == "mmdebstrap":
            built = build_base(spec, out, self.runtime, self.store, debs).locked
        else:
            assert base is not None
            built = build_derived(spec, base, self._suite(spec, specs), self.runtime, out, self.store,
                                  debs, pinned.wheels if pinned is not None else None, nocache=nocache).locked
        if pinned is not None:  # its packages are those of the mirror as read then, not today
            built.resolved_at = pinned.resolved_at
        return built

    # -- ensure ---------------------------------------------------------------------------------
    def ensure(self, names: list[str] | None = None, force: bool = False, update_lock: bool = False,
               offline: bool = False) -> list[ImageCheck]:
        """Make every (named) image present on the engine, preferring the exact locked identity.

        ``force``: build even what is present. ``update_lock``: build from today's mirror and
        write the tracked lock (the developer's re-lock). ``offline``: the package store only.
        """
        tracked = ImagesLock.load(self.lock_path)
        local = ImagesLock.load(self.local_path)
        specs = self.specs(names)
        by_name = {s.name: s for s in specs}
        effective: dict[str, LockedImage] = {}
        checks = []
        for spec in self._selected(specs, names):
            t0 = time.monotonic()
            locked = tracked.images.get(spec.name)
            base = effective.get(spec.base) if spec.base else None
            if update_lock:
                built = self._build(spec, by_name, base, None)
                check = compare(spec, locked, built, "mirror")
                if check.verdict not in ("identical-mirror",):
                    check = ImageCheck(spec.name, "locked", locked.image_id if locked else None,
                                       built.image_id, check.reasons)
                tracked.images[spec.name] = built
                tracked.save()
                local.images.pop(spec.name, None)
                effective[spec.name] = built
            else:
                check, effective[spec.name] = self._ensure_one(spec, by_name, locked, base, local, force, offline)
            check.seconds = round(time.monotonic() - t0, 1)
            checks.append(check)
        if update_lock and self.local_path.exists():
            local.save(LOCAL_HEADER)
        return checks

    def _ensure_one(self, spec: ImageSpec, specs: dict[str, ImageSpec], locked: LockedImage | None,
                    base: LockedImage | None, local: ImagesLock, force: bool,
                    offline: bool) -> tuple[ImageCheck, LockedImage]:
        valid = (locked is not None and locked.definition_sha256 == spec.definition_hash()
                 and (base is None or locked.base_image_id == base.image_id))
        if valid:
            assert locked is not None
            if not force and self.runtime.has_image(locked.image_id):
                return ImageCheck(spec.name, "present", locked.image_id, locked.image_id), locked
            if self.store_has(locked):
                built = self._build(spec, specs, base, locked)
                return compare(spec, locked, built, "store"), built
        if offline:
            if locked is None:
                raise ConfigError(f"image '{spec.name}' is not locked in {self.lock_path}: nothing to "
                                  "rebuild offline")
            raise PackagesMissing(spec.name, self.store.missing(locked.files) or locked.files,
                                  f" ({self.store.root}); " + RESTORE_ADVICE)
        stand_in = local.images.get(spec.name)
        if (not force and stand_in is not None and locked is not None
                and stand_in.replaces == locked.image_id
                and stand_in.definition_sha256 == spec.definition_hash()
                and (base is None or stand_in.base_image_id == base.image_id)
                and self.runtime.has_image(stand_in.image_id)):
            return ImageCheck(spec.name, "present-local", locked.image_id, stand_in.image_id,
                              [f"the locked identity is not reproducible here; stand-in recorded in "
                               f"{self.local_path}"]), stand_in
        built = self._build(spec, specs, base, None)
        check = compare(spec, locked, built, "mirror")
        if check.verdict in ("identical-mirror", "built"):
            if locked is None:  # a new spec: the overlay knows it until `--update-lock`
                self._record_local(local, built, None)
            return check, built
        self._record_local(local, built, locked.image_id if locked else None)
        moved = package_changes(locked.packages, built.packages) if locked else []
        check = ImageCheck(spec.name, "stand-in", check.locked_id, built.image_id,
                           [self._drift_paragraph(spec, locked, built, valid, moved)])
        return check, built

    def _record_local(self, local: ImagesLock, built: LockedImage, replaces: str | None) -> None:
        built.replaces = replaces
        local.images[built.name] = built
        local.save(LOCAL_HEADER)

    def _drift_paragraph(self, spec: ImageSpec, locked: LockedImage | None, built: LockedImage,
                         valid: bool, moved: list[str]) -> str:
        assert locked is not None
        if not valid and locked.definition_sha256 != spec.definition_hash():
            why = f"its spec in {spec.directory} changed since it was locked"
        elif locked.base_image_id and locked.base_image_id != built.base_image_id:
            why = f"its base is a local stand-in too ({built.base_image_id})"
        else:
            why = (f"its {len(locked.debs)} locked packages are not all in the package store "
                   f"({self.store.root}), and the mirror has moved on")
        moves = f" Packages that moved (locked -> mirror now): {'; '.join(moved)}." if moved else ""
        return (f"The locked identity {locked.image_id} of '{spec.name}' could not be reproduced on "
                f"this machine: {why}.{moves} Built {built.image_id} from today's mirror instead and "
                f"recorded it in {self.local_path} (images/images.lock is unchanged; "
                f"`appliance images build --update-lock` records it there). Recipes that name "
                f"'{spec.name}' run this stand-in here; recipes pinned to {locked.image_id} do not. "
                f"To get the exact locked images back: {RESTORE_WAYS}.")

    # -- verify ---------------------------------------------------------------------------------
    def verify(self, names: list[str] | None = None, source: str = "auto") -> list[ImageCheck]:
        """Rebuild (no cache) and say which guarantee held; neither lock is changed.

        ``source``: ``store`` (the package store only), ``mirror`` (today's mirror) or ``auto``
        (the store when it has every locked package, else the mirror). Where this machine runs a
        local stand-in, ``auto`` verifies the stand-in from the store.
        """

        tracked = ImagesLock.load(self.lock_path)
        local = ImagesLock.load(self.local_path)
        specs = self.specs(names)
        by_name = {s.name: s for s in specs}
        with tempfile.TemporaryDirectory(dir=self._mkdir(self.build_dir), prefix="verify-") as tmp:
            return self._verify(specs, by_name, names, tracked, local, source, Path(tmp))

    def _verify(self, specs: list[ImageSpec], by_name: dict[str, ImageSpec], names: list[str] | None,
                tracked: ImagesLock, local: ImagesLock, source: str, work: Path) -> list[ImageCheck]:
        effective: dict[str, LockedImage] = {}
        checks = []
        for spec in self._selected(specs, names):
            t0 = time.monotonic()
            locked = tracked.images.get(spec.name)
            target = locked
            have = source != "mirror" and locked is not None and self.store_has(locked)
            stand_in = local.images.get(spec.name)
            if (source == "auto" and locked is not None and not have
                    and stand_in is not None and stand_in.replaces == locked.image_id):
                target = stand_in
                have = self.store_has(stand_in)
            base = effective.get(spec.base) if spec.base else None
            if source == "store" and not have:
                raise PackagesMissing(spec.name, self.store.missing(target.files) if target else [],
                                      f" ({self.store.root})")
            if have:
                built = self._build(spec, by_name, base, target, nocache=True, build_dir=work)
                check = compare(spec, target, built, "store")
            else:
                built = self._build(spec, by_name, base, None, nocache=True, build_dir=work)
                check = compare(spec, target, built, "mirror")
            if target is not locked and target is not None:
                check.reasons.append(f"this is the local stand-in for the locked {locked.image_id if locked else '-'}")
            effective[spec.name] = built
            check.seconds = round(time.monotonic() - t0, 1)
            checks.append(check)
        return checks

    @staticmethod
    def _mkdir(p: Path) -> Path:
        p.mkdir(parents=True, exist_ok=True)
        return p

    # -- packages -------------------------------------------------------------------------------
    def import_packages(self, source: str) -> ImagesLock:
        """A package file (a path, or an lta://, davs://, https:// URL) into the store, verified."""
        from appliance.images.packfile import read_packfile

        with self._local_copy(source) as path:
            return read_packfile(path, self.store)

    def export_packages(self, dest: str, names: list[str] | None = None):  # type: ignore[no-untyped-def]
        """Specs + lock + locked .debs as one file at ``dest`` (a path or a remote URL)."""
        from appliance.images.packfile import write_packfile

        tracked = ImagesLock.load(self.lock_path)
        specs = self._selected(self.specs(names), names)
        chosen = ImagesLock(tracked.path, {s.name: tracked.get(s.name) for s in specs})
        for image in chosen.images.values():
            missing = self.store.missing(image.files)
            if missing or not image.debs:
                raise PackagesMissing(image.name, missing, f" ({self.store.root}): this machine cannot "
                                      "export the locked image; run `appliance images ensure` where the "
                                      "locked packages are available, or export from a machine that built it")
        remote = _is_remote(dest)
        with tempfile.TemporaryDirectory(dir=self._mkdir(self.settings.image_store)) as tmp:
            lock_copy = Path(tmp) / "images.lock"
            chosen.path = lock_copy
            chosen.save()
            target = Path(tmp) / "packages.tar" if remote else Path(dest.removeprefix("file://"))
            summary = write_packfile(target, chosen, [s.directory for s in specs], self.store)
            if remote:
                from appliance.inputs.remote import RemoteResolver

                summary.path = RemoteResolver(self.settings.resolvers).upload(target, dest)
        return summary

    @contextlib.contextmanager
    def _local_copy(self, source: str) -> Iterator[Path]:
        if not _is_remote(source):
            yield Path(source.removeprefix("file://"))
            return
        from appliance.inputs.remote import RemoteResolver

        with tempfile.TemporaryDirectory(dir=self._mkdir(self.settings.image_store)) as tmp:
            path = Path(tmp) / "packages.tar"
            RemoteResolver(self.settings.resolvers).download(source, path)
            yield path

    # -- save -----------------------------------------------------------------------------------
    def save(self, names: list[str] | None, out_dir: Path) -> list[Path]:
        from appliance.images.lock import resolve

        tracked = ImagesLock.load(self.lock_path)
        local = ImagesLock.load(self.local_path)
        out = []
        for spec in self.specs(names):
            if names and spec.name not in names:
                continue
            image = resolve(spec.name, tracked, local, self.runtime.has_image)
            dest = out_dir / f"{spec.name}-{image.image_id.removeprefix('sha256:')[:12]}.tar"
            self.runtime.save_image(image.image_id, dest)
            out.append(dest)
        return out


def _is_remote(location: str) -> bool:
    """A URL the transfer layer serves (lta://, davs://, https://, ...), not a local path."""
    return "://" in location and not location.startswith("file://")


def checks_json(checks: list[ImageCheck]) -> str:
    return json.dumps([asdict(c) | {"ok": c.ok} for c in checks], indent=2)
