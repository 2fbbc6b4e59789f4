"""Load and validate ``recipe.yaml`` into a typed ``Recipe``.

Validation is the published JSON Schema; each schema error is mapped back to the YAML line of
the offending node, so the user reads ``recipe.yaml:12: field 'outputs[0].compare': ...``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from appliance.errors import RecipeError

RECIPE_FILE = "recipe.yaml"
LOCK_FILE = "recipe.lock"
DEFAULT_SOURCE_DATE_EPOCH = 1700000000
# libyaml's loader when PyYAML has it (faster start-up of every command that reads a recipe)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@cache
def schema() -> dict[str, Any]:
    return json.loads(resources.files("appliance.recipes").joinpath("recipe.schema.json").read_text())


@dataclass(frozen=True)
class InputSpec:
    name: str
    uri: str
    sha256: str | None = None


@dataclass(frozen=True)
class OutputSpec:
    path: str
    compare: str = "sha256"
    options: dict[str, Any] = field(default_factory=dict)  # rtol, atol, ignore_* ...


@dataclass
class Recipe:
    directory: Path
    name: str
    image: str
    command: list[str]
    inputs: list[InputSpec]
    params: dict[str, Any]
    env: dict[str, str]
    outputs: list[OutputSpec]
    cpus: float | None
    memory_bytes: int | None
    seed: int
    source_date_epoch: int
    raw: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.directory / RECIPE_FILE

    def substituted_command(self) -> list[str]:
        values = {**{k: _fmt(v) for k, v in self.params.items()}, "seed": str(self.seed)}

        def sub(m: re.Match[str]) -> str:
            return values[m.group(1)]

        return [PLACEHOLDER.sub(sub, arg) for arg in self.command]


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


MIN_MEMORY = 6 << 20  # Docker refuses a smaller memory limit (and 0 would mean no limit at all)


def parse_memory(value: str | int) -> int:
    if isinstance(value, int):
        return value
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    v = value.strip().lower()
    return int(v[:-1]) * units[v[-1]] if v[-1] in units else int(v)


def _duplicate_key(node: yaml.Node | None) -> tuple[str, int] | None:
    """The first key that a mapping repeats (YAML says keys are unique; PyYAML keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                if k.value in seen:
                    return k.value, k.start_mark.line + 1
                seen.add(k.value)
            found = _duplicate_key(v)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found:
                return found
    return None


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """A YAML file as data and node tree; undecodable text, bad YAML and repeated keys are one
    ``RecipeError`` naming the file and line."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise RecipeError(str(path), f"not UTF-8 text (byte {err.start}); expected a YAML file",
                          line=line) from err
    if "\x00" in text:
        raise RecipeError(str(path), "contains NUL bytes; expected a YAML text file")
    try:
        node = yaml.compose(text, Loader=SAFE_LOADER)
        data = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise RecipeError(str(path), f"not valid YAML: {getattr(err, 'problem', None) or err}",
                          line=mark.line + 1 if mark else None) from err
    dup = _duplicate_key(node)
    if dup:
        raise RecipeError(str(path), f"key '{dup[0]}' appears twice (YAML keys must be unique)",
                          line=dup[1], field=dup[0])
    return data, node


def _line_of(node: yaml.Node | None, path: list[Any]) -> int | None:
    """Walk a composed YAML node tree along a JSON path; return the 1-based line found."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _dotted(path: list[Any]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "(top level)"


def _validated_marker(text: str) -> Path:
    """Validation is a pure function of the recipe text and the schema: remember successes, so a
    cache-hit run does not pay for importing jsonschema."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "appliance" / "validated"
    schema_text = resources.files("appliance.recipes").joinpath("recipe.schema.json").read_bytes()
    key = hashlib.sha256(schema_text + b"\0" + text.encode()).hexdigest()
    return cache / key


def validate(data: Any, source: str, node: yaml.Node | None = None) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if not errors:
        return
    err = jsonschema.exceptions.best_match(errors) or errors[0]
    path = list(err.absolute_path)
    message = err.message
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = err.schema.get("properties", {})
        extra = sorted(k for k in err.instance if k not in allowed)
        path = [*path, extra[0]] if extra else path
        message = f"unknown field(s) {extra}; allowed: {sorted(allowed)}"
    elif err.validator == "pattern" and err.schema.get("description"):
        message = f"{err.message}; expected {err.schema['description']}"
    elif err.validator == "not" and path and path[0] == "env":
        path = [*path, err.instance]
        message = f"'{err.instance}' is fixed by the appliance for reproducibility and cannot be set"
    raise RecipeError(source, message, line=_line_of(node, path), field=_dotted(path))


def load_recipe(directory: str | Path) -> Recipe:
    given = Path(directory)
    directory = given.resolve()
    if directory.is_file():
        if directory.name != RECIPE_FILE:
            raise RecipeError(str(given), "is a file; expected a recipe directory (with recipe.yaml)")
        directory = directory.parent
    path = directory / RECIPE_FILE
    if not path.is_file():
        raise RecipeError(str(path), "no recipe.yaml here (a recipe is a directory with recipe.yaml)")
    data, node = read_yaml(path)
    if data is None:
        raise RecipeError(str(path), "empty recipe; expected a mapping with at least name, image and command")
    text = path.read_text()
    marker = _validated_marker(text)
    if not marker.exists():
        validate(data, str(path), node)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    params = dict(data.get("params") or {})
    known = set(params) | {"seed"}
    for i, arg in enumerate(data["command"]):
        for name in PLACEHOLDER.findall(arg):
            if name not in known:
                raise RecipeError(str(path), f"'{{{name}}}' names no parameter; params: {sorted(params)}",
                                  line=_line_of(node, ["command", i]), field=f"command[{i}]")
    names = [i["name"] for i in data.get("inputs") or []]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise RecipeError(str(path), f"duplicate input name(s) {sorted(dup)}", field="inputs")
    paths = [o["path"] for o in data.get("outputs") or []]
    dup = {p for p in paths if paths.count(p) > 1}
    if dup:
        raise RecipeError(str(path), f"duplicate output path(s) {sorted(dup)}", field="outputs",
                          line=_line_of(node, ["outputs"]))
    for i, o in enumerate(data.get("outputs") or []):
        for j, pattern in enumerate(o.get("ignore_regex") or []):
            try:
                re.compile(pattern)
            except re.error as err:
                raise RecipeError(str(path), f"not a valid regular expression ({err}): {pattern!r}",
                                  line=_line_of(node, ["outputs", i, "ignore_regex", j]),
                                  field=f"outputs[{i}].ignore_regex[{j}]") from err
    res = data.get("resources") or {}
    if "memory" in res and parse_memory(res["memory"]) < MIN_MEMORY:
        raise RecipeError(str(path), f"{res['memory']!r} is below the smallest limit a container "
                          f"can have ({MIN_MEMORY >> 20}m)", line=_line_of(node, ["resources", "memory"]),
                          field="resources.memory")
    outputs = [
        OutputSpec(o["path"], o.get("compare", "sha256"), {k: v for k, v in o.items() if k not in ("path", "compare")})
        for o in data.get("outputs") or []
    ]
    return Recipe(
        directory=directory, name=data["name"], image=data["image"], command=list(data["command"]),
        inputs=[InputSpec(i["name"], i["uri"], i.get("sha256")) for i in data.get("inputs") or []],
        params=params, env=dict(data.get("env") or {}), outputs=outputs,
        cpus=res.get("cpus"), memory_bytes=parse_memory(res["memory"]) if "memory" in res else None,
        seed=int(data.get("seed", 0)),
        source_date_epoch=int(data.get("source_date_epoch", DEFAULT_SOURCE_DATE_EPOCH)),
        raw=data,
    )
