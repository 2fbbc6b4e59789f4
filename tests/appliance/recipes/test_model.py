"""Recipe loading: schema errors are one line naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import REPO_ROOT
from appliance.errors import RecipeError
from appliance.recipes.model import load_recipe, parse_memory

GOOD = """\
name: demo
image: pipeline
inputs:
  - name: a.fits
    uri: data/a.fits
params:
  n: 3
command: [python3, /recipe/x.py, "{n}", "{seed}"]
outputs:
  - path: out.fits
    compare: fits
seed: 7
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "recipe.yaml").write_text(text)
    return tmp_path


def test_example_recipe_is_valid() -> None:
    r = load_recipe(REPO_ROOT / "recipes" / "fits-sky-model")
    assert r.name == "fits-sky-model"
    assert "--seed" in r.command and str(r.seed) in r.substituted_command()


def test_substitution(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, GOOD))
    assert r.substituted_command() == ["python3", "/recipe/x.py", "3", "7"]


def test_bad_enum_names_line_and_field(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, GOOD.replace("compare: fits", "compare: md5")))
    msg = str(err.value)
    assert "recipe.yaml:11" in msg and "outputs[0].compare" in msg and "md5" in msg


def test_unknown_field(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, GOOD + "colour: blue\n"))
    assert "recipe.yaml:13" in str(err.value) and "colour" in str(err.value)


def test_unknown_placeholder(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, GOOD.replace('"{n}"', '"{m}"')))
    assert "command[2]" in str(err.value) and "{m}" in str(err.value) and ":8" in str(err.value)


def test_fixed_env_cannot_be_overridden(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, GOOD + "env:\n  TZ: Europe/Rome\n"))
    assert "TZ" in str(err.value) and "fixed" in str(err.value)


def test_moving_tag_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, GOOD.replace("image: pipeline", "image: debian:latest")))
    assert "field 'image'" in str(err.value)


def test_output_path_traversal_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError):
        load_recipe(write(tmp_path, GOOD.replace("path: out.fits", "path: ../etc/passwd")))


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, GOOD.replace("params:\n  n: 3", "params:\n  n: [3")))
    assert "not valid YAML" in str(err.value) and "recipe.yaml:" in str(err.value)


def test_missing_recipe(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no recipe.yaml"):
        load_recipe(tmp_path)


def test_parse_memory() -> None:
    assert parse_memory("1g") == 1 << 30 and parse_memory("64m") == 64 << 20 and parse_memory(1000) == 1000
