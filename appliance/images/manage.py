"""Image operations behind ``appliance images``: ensure, verify, save, load.

``ensure`` builds what is missing and keeps ``images.lock`` true to this machine: when a rebuild
does not reproduce the committed identity (the Debian mirror moved on), it says so, names the
packages that changed, and records the new identity (the lock plus the saved image tar are the
guarantee for old runs, not the mirror).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.config import Settings
from appliance.images.build import build_base, build_derived, check_tools
from appliance.images.lock import ImagesLock, LockedImage
from appliance.images.spec import ImageSpec, load_specs
from appliance.runtimes.docker import DockerRuntime


@dataclass
class ImageCheck:
    """Outcome for one image: ``identical`` / ``same-content`` / ``differs`` / ``built`` / ``present``."""

    name: str
    verdict: str
    locked_id: str | None
    actual_id: str | None
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict in ("identical", "same-content", "present", "built")

    def report(self) -> str:
        line = f"{self.name}: {self.verdict} (locked {self.locked_id or '-'}, actual {self.actual_id or '-'})"
        return "\n".join([line, *[f"  - {r}" for r in self.reasons]])


def package_changes(old: dict[str, str], new: dict[str, str], limit: int = 15) -> list[str]:
    """Human-readable list of package differences between two rootfs manifests."""
    changes = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            changes.append(f"{name}: {old.get(name, 'absent')} -> {new.get(name, 'absent')}")
    if len(changes) > limit:
        changes = changes[:limit] + [f"... and {len(changes) - limit} more"]
    return changes


def compare(spec: ImageSpec, locked: LockedImage | None, built: LockedImage) -> ImageCheck:
    if locked is None:
        return ImageCheck(spec.name, "built", None, built.image_id, ["no earlier identity was locked"])
    if locked.image_id == built.image_id:
        return ImageCheck(spec.name, "identical", locked.image_id, built.image_id,
                          ["image ID reproduced bit for bit"])
    reasons = []
    if locked.definition_sha256 != built.definition_sha256:
        reasons.append(f"the spec in {spec.directory} changed since it was locked")
    if locked.diff_ids == built.diff_ids:
        reasons.append("layer contents (diff IDs) are identical; only the image config differs "
                       "(docker build stamps its build time into the config)")
        return ImageCheck(spec.name, "same-content", locked.image_id, built.image_id, reasons)
    if spec.builder == "mmdebstrap":
        changed = package_changes(locked.packages, built.packages)
        reasons += ["Debian packages changed on the mirror:", *changed] if changed else [
            "same package versions but a different rootfs: check the spec's SOURCE_DATE_EPOCH and hooks"]
    elif locked.base_image_id != built.base_image_id:
        reasons.append(f"built on a different base ({locked.base_image_id} -> {built.base_image_id})")
    else:
        reasons.append("layer contents differ (packages on the mirror moved, or a non-deterministic step)")
    return ImageCheck(spec.name, "differs", locked.image_id, built.image_id, reasons)


class ImageManager:
    def __init__(self, settings: Settings, runtime: DockerRuntime | None = None):
        self.settings = settings
        self.runtime = runtime or DockerRuntime()
        self.lock_path = settings.images_dir / "images.lock"
        self.build_dir = settings.images_dir / "build"

    def specs(self, names: list[str] | None = None) -> list[ImageSpec]:
        specs = load_specs(self.settings.images_dir)
        if names:
            unknown = set(names) - {s.name for s in specs}
            if unknown:
                from appliance.errors import ConfigError

                raise ConfigError(f"unknown image(s) {sorted(unknown)}; specs: {[s.name for s in specs]}")
        return specs

    def _build(self, spec: ImageSpec, lock: ImagesLock, nocache: bool = False) -> LockedImage:
        if spec.builder == "mmdebstrap":
            check_tools()
            return build_base(spec, self.build_dir, self.runtime).locked
        return build_derived(spec, lock.get(spec.base or ""), self.runtime, self.build_dir, nocache=nocache).locked

    def ensure(self, names: list[str] | None = None, force: bool = False) -> list[ImageCheck]:
        """Make every (named) image present; rebuild when missing, changed, or its base changed."""
        lock = ImagesLock.load(self.lock_path)
        checks = []
        rebuilt: set[str] = set()
        for spec in self.specs():
            if names and spec.name not in names and not (set(names) & rebuilt):
                continue
            locked = lock.images.get(spec.name)
            up_to_date = (
                locked is not None and not force and spec.base not in rebuilt
                and locked.definition_sha256 == spec.definition_hash()
                and self.runtime.has_image(locked.image_id)
                and (spec.base is None or locked.base_image_id == lock.images[spec.base].image_id)
            )
            if up_to_date:
                assert locked is not None
                checks.append(ImageCheck(spec.name, "present", locked.image_id, locked.image_id))
                continue
            built = self._build(spec, lock)
            check = compare(spec, locked, built)
            if check.verdict != "identical":
                lock.images[spec.name] = built
                lock.save()
                rebuilt.add(spec.name)
            checks.append(check)
        return checks

    def verify(self, names: list[str] | None = None) -> list[ImageCheck]:
        """Rebuild from the specs (no cache) and compare with the lock; the lock is not changed."""
        lock = ImagesLock.load(self.lock_path)
        checks = []
        for spec in self.specs(names):
            if names and spec.name not in names:
                continue
            locked = lock.images.get(spec.name)
            if spec.builder == "mmdebstrap":
                check_tools()
                built = build_base(spec, self.build_dir / "verify", self.runtime).locked
            else:
                built = build_derived(spec, lock.get(spec.base or ""), self.runtime, self.build_dir / "verify",
                                      nocache=True).locked
            checks.append(compare(spec, locked, built))
        return checks

    def save(self, names: list[str] | None, out_dir: Path) -> list[Path]:
        lock = ImagesLock.load(self.lock_path)
        out = []
        for spec in self.specs(names):
            if names and spec.name not in names:
                continue
            locked = lock.get(spec.name)
            dest = out_dir / f"{spec.name}-{locked.image_id.removeprefix('sha256:')[:12]}.tar"
            self.runtime.save_image(locked.image_id, dest)
            out.append(dest)
        return out


def checks_json(checks: list[ImageCheck]) -> str:
    return json.dumps([asdict(c) | {"ok": c.ok} for c in checks], indent=2)
