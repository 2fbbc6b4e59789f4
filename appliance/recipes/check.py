"""``appliance check``: everything about a recipe that can be found without running it.

Beyond the schema (``model.load_recipe``): the image is a locked name (or an ID), every URI has
a scheme that a resolver of ``ResolverRegistry`` serves, and every local input exists as a
regular file. What ``lock``
would refuse, ``check`` refuses first, naming file, line and field.
"""

from __future__ import annotations

from appliance.config import Settings
from appliance.errors import InputError, RecipeError
from appliance.images.lock import ImagesLock, local_lock_path
from appliance.inputs.local import LocalFileResolver
from appliance.inputs.registry import ResolverRegistry
from appliance.recipes.model import Recipe, _line_of, read_yaml


def check_recipe(recipe: Recipe, settings: Settings) -> None:
    _, node = read_yaml(recipe.path)
    src = str(recipe.path)
    ref = recipe.image
    if not ref.startswith("sha256:") and "@sha256:" not in ref:
        tracked = ImagesLock.load(settings.images_dir / "images.lock")
        local = ImagesLock.load(local_lock_path(settings.image_store))
        if ref not in tracked.images and ref not in local.images:
            known = ", ".join(sorted(set(tracked.images) | set(local.images))) or "none"
            raise RecipeError(src, f"'{ref}' is not a locked image (locked: {known}; or give sha256:<id>)",
                              line=_line_of(node, ["image"]), field="image")
    registry = ResolverRegistry(settings, recipe.directory)
    for i, spec in enumerate(recipe.inputs):
        where = {"line": _line_of(node, ["inputs", i, "uri"]), "field": f"inputs[{i}].uri"}
        try:  # the registry the run uses: a scheme no resolver serves is refused the same way
            resolver = registry.for_uri(spec.uri)
            if isinstance(resolver, LocalFileResolver):
                resolver.path_of(spec.uri)  # exists, and is a regular file
        except InputError as err:
            raise RecipeError(src, str(err), **where) from err
