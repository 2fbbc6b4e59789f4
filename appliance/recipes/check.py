"""``appliance check``: everything about a recipe that can be found without running it.

Beyond the schema (``model.load_recipe``): the image is a locked name (or an ID), every local
input exists as a regular file, and every URI has a scheme some resolver serves. What ``lock``
would refuse, ``check`` refuses first, naming file, line and field.
"""

from __future__ import annotations

from urllib.parse import urlparse

from appliance.config import Settings
from appliance.errors import InputError, RecipeError
from appliance.images.lock import ImagesLock, local_lock_path
from appliance.recipes.model import Recipe, _line_of, read_yaml

REMOTE_SCHEMES = ("lta", "davs", "https", "gsiftp")  # appliance.inputs.remote.RemoteResolver


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
    for i, spec in enumerate(recipe.inputs):
        line = _line_of(node, ["inputs", i, "uri"])
        scheme = urlparse(spec.uri).scheme
        scheme = "" if len(scheme) == 1 else scheme
        if scheme in REMOTE_SCHEMES:
            continue
        if scheme not in ("", "file"):
            raise RecipeError(src, f"no resolver for scheme '{scheme}://' (known: "
                              f"{', '.join(s + '://' for s in ('file', *REMOTE_SCHEMES))}, local paths)",
                              line=line, field=f"inputs[{i}].uri")
        from appliance.inputs.local import LocalFileResolver

        try:
            path = LocalFileResolver(recipe.directory)._path(spec.uri)
        except InputError as err:
            raise RecipeError(src, str(err), line=line, field=f"inputs[{i}].uri") from err
        if not path.is_file():
            raise RecipeError(src, f"input {spec.uri}: {path} is not a regular file", line=line,
                              field=f"inputs[{i}].uri")
