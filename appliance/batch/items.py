"""Batch items: the inputs expanded, and one derived recipe directory per item.

An item is the recipe with one input (``--input-name``, default the recipe's only input)
pointed at the item's URI. Its directory is a pure function of (recipe directory, URI), so a
re-run of the same batch finds the same directories and the runner's cache key, hence cache
hits for the items already done.
"""

from __future__ import annotations

import glob
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from appliance.errors import ConfigError, RecipeError
from appliance.hashing import sha256_file
from appliance.recipes.lock import LockedInput, RecipeLock
from appliance.recipes.model import load_recipe
from appliance.runs.codearchive import recipe_files

GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Item:
    index: int
    uri: str
    directory: Path  # the derived recipe


def expand_inputs(spec: str) -> list[str]:
    """A glob (``data/*.fits``), or a file listing one path or URI per line (# comments)."""
    if GLOB_CHARS & set(spec):
        found = sorted(str(Path(p).resolve()) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not found:
            raise ConfigError(f"--inputs {spec}: the glob matches no file")
        return found
    listing = Path(spec)
    if not listing.is_file():
        raise ConfigError(f"--inputs {spec}: neither a glob nor a list file")
    out = []
    for line in listing.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        is_uri = "://" in line
        out.append(line if is_uri else str((listing.parent / line).resolve()))
    if not out:
        raise ConfigError(f"--inputs {spec}: the list is empty")
    return out


def batch_root(home: Path, recipe_dir: Path) -> Path:
    recipe_dir = recipe_dir.resolve()
    tag = hashlib.sha256(str(recipe_dir).encode()).hexdigest()[:12]
    return home / "batches" / f"{recipe_dir.name}-{tag}"


def input_name(recipe_dir: Path, wanted: str | None) -> str:
    recipe = load_recipe(recipe_dir)
    names = [i.name for i in recipe.inputs]
    if wanted is None:
        if len(names) != 1:
            raise RecipeError(str(recipe.path), f"{len(names)} inputs ({names}); say which one the "
                              "batch items replace with --input-name", field="inputs")
        return names[0]
    if wanted not in names:
        raise RecipeError(str(recipe.path), f"no input named {wanted!r} (inputs: {names})", field="inputs")
    return wanted


def write_item_lock(base: RecipeLock, directory: Path, name: str, uri: str) -> None:
    """The item's recipe.lock from the base recipe's: same image ID, the item's local input
    hashed here. Locking each item from scratch parses images.lock (pure-Python YAML) twice:
    0.9 s per item measured, more than the container run itself."""
    if "://" in uri:
        return  # remote: the worker locks it (the resolver knows how to checksum it)
    path = Path(uri)
    item_input = LockedInput(name, uri, sha256_file(path), path.stat().st_size)
    lock = RecipeLock(recipe=base.recipe, image_ref=base.image_ref, image_id=base.image_id,
                      inputs=[item_input if i.name == name else i for i in base.inputs])
    previous = RecipeLock.load(directory)
    if previous is None or (previous.image_id, previous.inputs) != (lock.image_id, lock.inputs):
        lock.save(directory)


def derive(recipe_dir: Path, root: Path, name: str, uris: list[str],
           base_lock: RecipeLock | None = None) -> list[Item]:
    """Write (or refresh) one recipe directory per URI under ``root/items`` (with its lock when
    ``base_lock``, the base recipe's, is given)."""
    recipe_dir = recipe_dir.resolve()
    files = recipe_files(recipe_dir)
    definition = yaml.safe_load((recipe_dir / "recipe.yaml").read_text())
    items = []
    for i, uri in enumerate(uris):
        d = root / "items" / hashlib.sha256(uri.encode()).hexdigest()[:16]
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            rel = f.relative_to(recipe_dir)
            if rel.as_posix() == "recipe.yaml":
                continue
            target = d / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_file() or target.read_bytes() != f.read_bytes():
                shutil.copyfile(f, target)
        mine = dict(definition)
        mine["inputs"] = [({k: v for k, v in i.items() if k != "sha256"} | {"uri": uri})
                          if i["name"] == name else i for i in definition.get("inputs", [])]
        text = yaml.safe_dump(mine, sort_keys=False)
        recipe_yaml = d / "recipe.yaml"
        if not recipe_yaml.is_file() or recipe_yaml.read_text() != text:
            recipe_yaml.write_text(text)
        if base_lock is not None:
            write_item_lock(base_lock, d, name, uri)
        items.append(Item(i, uri, d))
    return items
