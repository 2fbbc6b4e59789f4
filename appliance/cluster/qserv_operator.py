"""The ``Qserv`` resource patch the appliance hands to lsst/qserv-operator, and its check.

``render_overlay`` builds the kustomize overlay patch from the inventory's variables (the names
of ``playbooks/roles/qserv/defaults/main.yml``): both images pinned by digest, one worker
replica per host of group ``qserv_worker``, one czar (the roles run a single czar, the first host
of ``qserv_czar``). ``check_overlay`` validates a patch against the reduced copy of the
operator's CRD schema (``playbooks/roles/qserv/files/qserv-operator-crd-spec.json``, origin
recorded in its ``x-origin``) the way the API server would under strict field validation: the
schema's types, formats and required fields (``jsonschema``, Draft 7), and every field the schema
does not declare refused. Each problem is one line naming the field path (``spec.czar.image``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema

from appliance.cluster.errors import InventoryError
from appliance.cluster.inventory import PLAYBOOKS

SCHEMA_PATH = PLAYBOOKS / "roles" / "qserv" / "files" / "qserv-operator-crd-spec.json"
RESOURCE_NAME = "qserv"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Fields of ObjectMeta (apimachinery meta/v1): the API server validates ``metadata`` against it,
# not against the CRD's schema (which declares metadata as a bare object).
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array",
              dict: "object", type(None): "null"}


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The reduced CRD schema; InventoryError (exit 2) naming the file if it is unusable."""
    try:
        schema = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InventoryError(f"{path}: cannot read the qserv-operator CRD schema: {err}") from None
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as err:
        raise InventoryError(f"{path}: not a valid JSON schema: {err.message}") from None
    if not isinstance(schema.get("x-apiVersion"), str) or not isinstance(schema.get("x-kind"), str):
        raise InventoryError(f"{path}: needs string fields x-apiVersion and x-kind (from the CRD)")
    return schema


def _image(vars: Mapping[str, Any], prefix: str) -> str:
    repo, digest = vars.get(f"{prefix}_repository"), vars.get(f"{prefix}_digest")
    if not isinstance(repo, str) or not repo:
        raise InventoryError(f"{prefix}_repository: expected the image repository, got {repo!r}")
    if ":" in re.sub(r"^[^/]*:[0-9]+/", "", repo) or "@" in repo:
        raise InventoryError(f"{prefix}_repository: expected a repository without tag or digest, got {repo!r}")
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise InventoryError(f"{prefix}_digest: expected sha256:<64 lowercase hex>, got {digest!r}")
    return f"{repo}@{digest}"


def _group(vars: Mapping[str, Any], name: str) -> list[str]:
    groups = vars.get("groups")
    if not isinstance(groups, Mapping):
        raise InventoryError("groups: expected the inventory's groups (a mapping of group -> hosts)")
    hosts = groups.get(name, [])
    if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) for h in hosts):
        raise InventoryError(f"groups.{name}: expected a list of host names, got {hosts!r}")
    return list(hosts)


def render_overlay(vars: dict, schema: Mapping[str, Any] | None = None) -> dict:
    """The ``Qserv`` patch for these inventory variables (InventoryError names the variable)."""
    schema = load_schema() if schema is None else schema
    workers = _group(vars, "qserv_worker")
    if not workers:
        raise InventoryError("groups.qserv_worker: expected at least one host (one worker replica per host)")
    if not _group(vars, "qserv_czar"):
        raise InventoryError("groups.qserv_czar: expected a host (the czar)")
    return {
        "apiVersion": schema["x-apiVersion"],
        "kind": schema["x-kind"],
        "metadata": {"name": RESOURCE_NAME},
        "spec": {
            "image": _image(vars, "qserv_image"),
            "dbImage": _image(vars, "qserv_mariadb_image"),
            "worker": {"replicas": len(workers)},
            "czar": {"replicas": 1},
        },
    }


def _path(parts: Iterator[Any] | list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise InventoryError(f"{SCHEMA_PATH.name}: only local $ref are supported, got {ref!r}")
        target: Any = schema
        for key in ref[2:].split("/"):
            target = target[key]
        node = target
    return node


def _strict(schema: Mapping[str, Any], node: Mapping[str, Any], value: Any, at: list[Any]) -> Iterator[str]:
    """Fields the schema does not declare (Kubernetes strict field validation) and out-of-range
    integer formats; type mismatches are left to jsonschema."""
    node = _resolve(schema, node)
    if isinstance(value, list) and isinstance(node.get("items"), Mapping):
        for i, item in enumerate(value):
            yield from _strict(schema, node["items"], item, [*at, i])
    elif isinstance(value, dict) and node.get("type") == "object":
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                yield from _strict(schema, props[key], item, [*at, key])
            elif isinstance(extra, Mapping):
                yield from _strict(schema, extra, item, [*at, key])
            elif not node.get("x-kubernetes-preserve-unknown-fields"):
                yield f"{_path([*at, key])}: unknown field (the Qserv CRD does not declare it)"
    elif isinstance(value, int) and not isinstance(value, bool) and node.get("format") in INT_RANGES:
        low, high = INT_RANGES[node["format"]]
        if not low <= value <= high:
            yield f"{_path(at)}: {value} is out of range for {node['format']}"


def _metadata(meta: Any) -> Iterator[str]:
    if not isinstance(meta, dict):
        return  # the type error comes from jsonschema
    for key in meta:
        if key not in OBJECT_META_FIELDS:
            yield f"metadata.{key}: unknown field (not an ObjectMeta field)"
    if not isinstance(meta.get("name"), str) or not meta.get("name"):
        yield "metadata.name: required (the patch targets the Qserv resource by name)"
    for key in ("labels", "annotations"):
        for name, item in (meta.get(key) or {}).items() if isinstance(meta.get(key), dict) else ():
            if not isinstance(item, str):
                yield f"metadata.{key}.{name}: expected a string, got {_kind(item)}"


def _kind(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def _schema_error(err: jsonschema.ValidationError) -> list[str]:
    at = list(err.absolute_path)
    if err.validator == "required" and isinstance(err.instance, dict):
        return [f"{_path([*at, name])}: required field missing"
                for name in err.validator_value if name not in err.instance]
    if err.validator == "type":
        return [f"{_path(at)}: expected {err.validator_value}, got {_kind(err.instance)} {err.instance!r}"]
    if err.validator == "anyOf" and err.schema.get("x-kubernetes-int-or-string"):
        return [f"{_path(at)}: expected an integer or a string, got {_kind(err.instance)} {err.instance!r}"]
    return [f"{_path(at)}: {err.message}"]


def check_overlay(doc: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every problem of ``doc`` as the ``Qserv`` resource of this CRD, one line each naming the
    field path; an empty list when the API server would accept it under strict validation."""
    if not isinstance(doc, dict):
        return [f"(document): expected a mapping (a Qserv resource), got {_kind(doc)}"]
    problems: list[str] = []
    for key, want in (("apiVersion", schema["x-apiVersion"]), ("kind", schema["x-kind"])):
        if doc.get(key) != want:
            problems.append(f"{key}: expected {want!r}, got {doc.get(key)!r}")
    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        problems.extend(_schema_error(err))
    root = dict(schema)
    root["properties"] = {k: v for k, v in schema["properties"].items() if k != "metadata"}
    problems.extend(_strict(schema, root, {k: v for k, v in doc.items() if k != "metadata"}, []))
    if "metadata" in doc:
        problems.extend(_metadata(doc["metadata"]))
    else:
        problems.append("metadata: required field missing (the patch targets the Qserv resource by name)")
    return problems
