"""``recipe.lock``: the recipe's image resolved to an image ID and every input to its sha256.

Written by ``appliance lock``; ``appliance run`` refuses to run when an input's content no longer
matches its locked checksum, or when the lock no longer matches the recipe's list of inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from appliance.errors import ImageMissing, RecipeError
from appliance.fsutil import atomic_write_bytes
from appliance.images.lock import ImagesLock, resolve
from appliance.recipes.model import LOCK_FILE, Recipe

HEADER = "# Written by `appliance lock`: the exact image and inputs this recipe runs with.\n"


@dataclass
class LockedInput:
    name: str
    uri: str
    sha256: str
    size: int


@dataclass
class RecipeLock:
    recipe: str
    image_ref: str
    image_id: str
    inputs: list[LockedInput]
    locked_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "image": {"ref": self.image_ref, "image_id": self.image_id},
                "inputs": [asdict(i) for i in self.inputs], "locked_at": self.locked_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> RecipeLock:
        try:
            return cls(recipe=data["recipe"], image_ref=data["image"]["ref"],
                       image_id=data["image"]["image_id"],
                       inputs=[LockedInput(**i) for i in data.get("inputs") or []],
                       locked_at=data.get("locked_at", ""))
        except (KeyError, TypeError) as err:
            raise RecipeError(source, f"malformed lock ({err}); re-create it with `appliance lock`") from err

    def save(self, directory: Path) -> Path:
        path = directory / LOCK_FILE
        atomic_write_bytes(path, (HEADER + yaml.safe_dump(self.to_dict(), sort_keys=False)).encode())
        return path

    @classmethod
    def load(cls, directory: Path) -> RecipeLock | None:
        from appliance.recipes.model import read_yaml

        path = directory / LOCK_FILE
        if not path.exists():
            return None
        data, _ = read_yaml(path)
        if not isinstance(data, dict):
            raise RecipeError(str(path), "malformed lock (expected a mapping); re-create it with "
                                         f"`appliance lock {directory}`")
        return cls.from_dict(data, str(path))

    def input(self, name: str) -> LockedInput | None:
        return next((i for i in self.inputs if i.name == name), None)

    def check_matches(self, recipe: Recipe) -> None:
        """The lock must describe the recipe as it is now (same image ref, same inputs)."""
        src = str(recipe.directory / LOCK_FILE)
        if self.image_ref != recipe.image:
            raise RecipeError(src, f"stale: locked image '{self.image_ref}' but the recipe asks for "
                                   f"'{recipe.image}'; run `appliance lock {recipe.directory}`")
        for spec in recipe.inputs:
            locked = self.input(spec.name)
            if locked is None or locked.uri != spec.uri:
                raise RecipeError(src, f"stale: input '{spec.name}' ({spec.uri}) is not locked; "
                                       f"run `appliance lock {recipe.directory}`")
            if spec.sha256 and spec.sha256 != locked.sha256:
                raise RecipeError(src, f"input '{spec.name}': recipe says sha256 {spec.sha256}, "
                                       f"lock says {locked.sha256}")


def resolve_image(ref: str, images_lock: ImagesLock, local: ImagesLock | None = None,
                  has_image: Callable[[str], bool] | None = None) -> str:
    """Image ID for a recipe's ``image`` field: a locked name, ``sha256:...`` or ``ref@sha256:...``.

    With ``local`` and ``has_image``, a name resolves as ``images.lock.resolve`` says: the locked
    image if the engine has it, else this machine's recorded stand-in for it."""
    if ref.startswith("sha256:"):
        return ref
    if "@sha256:" in ref:
        return "sha256:" + ref.split("@sha256:", 1)[1]
    try:
        if local is not None and has_image is not None:
            return resolve(ref, images_lock, local, has_image).image_id
        return images_lock.get(ref).image_id
    except ImageMissing as err:
        raise ImageMissing(f"recipe image '{ref}': {err}") from err
