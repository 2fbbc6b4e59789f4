"""The qserv-operator overlay patch, rendered from inventory variables, against the operator's CRD.

The schema is the reduced copy of the CRD's openAPIV3Schema kept in
playbooks/roles/qserv/files/qserv-operator-crd-spec.json (origin in its x-origin); the checks
are jsonschema (Draft 7) plus Kubernetes strict field validation (undeclared fields refused).
No Kubernetes API server is needed: the schema is what the server would apply.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from appliance.cluster.errors import InventoryError
from appliance.cluster.inventory import REPO_ROOT
from appliance.cluster.qserv_operator import SCHEMA_PATH, check_overlay, load_schema, render_overlay

SCHEMA = load_schema()
DOCS = REPO_ROOT / "docs" / "DEPLOYMENT.md"
QSERV_DIGEST = "sha256:" + "ab" * 32
MARIADB_DIGEST = "sha256:" + "cd" * 32
VARS = {
    "qserv_image_repository": "registry.invalid:5000/lsst/qserv",
    "qserv_image_digest": QSERV_DIGEST,
    "qserv_mariadb_image_repository": "registry.invalid:5000/lsst/qserv-mariadb",
    "qserv_mariadb_image_digest": MARIADB_DIGEST,
    "qserv_instance_id": "qserv_appliance",
    "qserv_port_repl_controller": 25081,
    "groups": {
        "qserv_czar": ["czar.test"],
        "qserv_worker": ["w1.test", "w2.test", "w3.test"],
        "all": ["czar.test", "w1.test", "w2.test", "w3.test"],
    },
}


def overlay(**spec_changes) -> dict:
    doc = render_overlay(copy.deepcopy(VARS), SCHEMA)
    doc["spec"].update(spec_changes)
    return doc


def test_rendered_overlay_passes_and_carries_the_inventory():
    doc = render_overlay(copy.deepcopy(VARS))
    assert check_overlay(doc, SCHEMA) == []
    assert doc == {
        "apiVersion": "qserv.lsst.org/v1beta1",
        "kind": "Qserv",
        "metadata": {"name": "qserv"},
        "spec": {
            "image": f"registry.invalid:5000/lsst/qserv@{QSERV_DIGEST}",
            "dbImage": f"registry.invalid:5000/lsst/qserv-mariadb@{MARIADB_DIGEST}",
            "worker": {"replicas": 3},
            "czar": {"replicas": 1},
        },
    }
    # what is handed over is YAML: it survives the round trip unchanged
    assert check_overlay(yaml.safe_load(yaml.safe_dump(doc)), SCHEMA) == []


def test_a_field_of_other_operator_versions_is_refused_by_path():
    doc = overlay(czar={"replicas": 1, "image": "registry.invalid/lsst/qserv@" + QSERV_DIGEST},
                  replication={"dbImage": "registry.invalid/lsst/qserv-mariadb@" + MARIADB_DIGEST})
    problems = check_overlay(doc, SCHEMA)
    assert problems == [
        "spec.czar.image: unknown field (the Qserv CRD does not declare it)",
        "spec.replication.dbImage: unknown field (the Qserv CRD does not declare it)",
    ]


def test_a_wrong_type_is_refused_by_path():
    problems = check_overlay(overlay(worker={"replicas": "two"}), SCHEMA)
    assert problems == ["spec.worker.replicas: expected integer, got string 'two'"]
    problems = check_overlay(overlay(networkPolicies="yes", worker={"replicas": True}), SCHEMA)
    assert problems == ["spec.networkPolicies: expected boolean, got string 'yes'",
                        "spec.worker.replicas: expected integer, got boolean True"]


def test_a_missing_required_field_is_refused_by_path():
    doc = overlay()
    del doc["spec"]["dbImage"]
    assert check_overlay(doc, SCHEMA) == ["spec.dbImage: required field missing"]
    # devel has its own required field
    assert check_overlay(overlay(devel={"enableDebugger": True}), SCHEMA) == [
        "spec.devel.debuggerImage: required field missing"]


def test_strict_validation_reaches_lists_maps_and_affinity():
    good = overlay(
        tolerations=[{"key": "qserv", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}],
        czar={"replicas": 1, "proxyResources": {"limits": {"cpu": 2, "memory": "4Gi"}},
              "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                  "nodeSelectorTerms": [{"matchExpressions": [{"key": "qserv", "operator": "Exists"}]}]}}}},
        queryService={"type": "NodePort", "nodePort": 30040, "annotations": {"a": "b"}},
    )
    assert check_overlay(good, SCHEMA) == []
    bad = overlay(
        tolerations=[{"key": "qserv"}, {"key": "x", "tolerationSecond": 60}],
        czar={"affinity": {"nodeAfinity": {}}, "proxyResources": {"limits": {"cpu": [2]}, "limit": {}}},
        worker={"replicas": 2**31},
        queryService={"annotations": {"a": 1}},
    )
    assert sorted(check_overlay(bad, SCHEMA)) == sorted([
        "spec.tolerations[1].tolerationSecond: unknown field (the Qserv CRD does not declare it)",
        "spec.czar.affinity.nodeAfinity: unknown field (the Qserv CRD does not declare it)",
        "spec.czar.proxyResources.limit: unknown field (the Qserv CRD does not declare it)",
        "spec.czar.proxyResources.limits.cpu: expected an integer or a string, got array [2]",
        "spec.worker.replicas: 2147483648 is out of range for int32",
        "spec.queryService.annotations.a: expected string, got integer 1",
    ])


def test_resource_level_problems():
    doc = overlay()
    doc["apiVersion"] = "qserv.lsst.org/v1alpha1"
    doc["status"] = {"workerreadyfraction": "3/3"}
    doc["metadata"] = {"name": "qserv", "labels": {"app": "qserv"}, "nmespace": "x"}
    assert check_overlay(doc, SCHEMA) == [
        "apiVersion: expected 'qserv.lsst.org/v1beta1', got 'qserv.lsst.org/v1alpha1'",
        "status: unknown field (the Qserv CRD does not declare it)",
        "metadata.nmespace: unknown field (not an ObjectMeta field)",
    ]
    del doc["metadata"]
    assert "metadata: required field missing (the patch targets the Qserv resource by name)" in check_overlay(doc, SCHEMA)
    assert check_overlay(["not", "a", "mapping"], SCHEMA) == ["(document): expected a mapping (a Qserv resource), got array"]


@pytest.mark.parametrize("change, expected", [
    ({"qserv_image_digest": ""}, "qserv_image_digest: expected sha256:<64 lowercase hex>, got ''"),
    ({"qserv_mariadb_image_digest": "sha256:ABC"}, "qserv_mariadb_image_digest: expected sha256:<64 lowercase hex>"),
    ({"qserv_image_repository": "registry.invalid/lsst/qserv:2024.11.2"}, "qserv_image_repository: expected a repository without tag"),
    ({"qserv_mariadb_image_repository": ""}, "qserv_mariadb_image_repository: expected the image repository"),
    ({"groups": {"qserv_czar": ["c"], "qserv_worker": []}}, "groups.qserv_worker: expected at least one host"),
    ({"groups": {"qserv_worker": ["w"]}}, "groups.qserv_czar: expected a host"),
    ({"groups": {"qserv_czar": ["c"], "qserv_worker": "w1"}}, "groups.qserv_worker: expected a list of host names"),
])
def test_bad_inventory_variables_name_the_variable(change, expected):
    with pytest.raises(InventoryError) as err:
        render_overlay({**copy.deepcopy(VARS), **change}, SCHEMA)
    assert str(err.value).startswith(expected)
    assert err.value.exit_code == 2


def _docs_paragraph() -> str:
    text = DOCS.read_text()
    section = text.split("### Growing into Kubernetes: qserv-operator", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"`spec` has (.*?`devel`)", section, re.S)
    assert match, f"{DOCS}: the qserv-operator section no longer lists spec's fields after '`spec` has'"
    return match.group(1)


def test_the_reduced_schema_has_every_spec_field_the_docs_list():
    listed = _docs_paragraph()
    spec = SCHEMA["properties"]["spec"]
    top, subs = [], {}
    for name, inner in re.findall(r"`(\w+)`(?:\s*\(([^)]*)\))?", listed):
        top.append(name)
        if inner and "required" not in inner:
            subs[name] = [s.strip() for s in inner.split(",")]
    assert set(top) == set(spec["properties"]), "docs and CRD disagree on spec's top-level fields"
    assert set(spec["required"]) == {"image", "dbImage"} and "(both required)" in listed
    for parent, fields in subs.items():
        declared = spec["properties"][parent]["properties"]
        assert set(fields) <= set(declared), f"spec.{parent}: docs list {fields}, CRD has {sorted(declared)}"
    assert "worker" in subs and "czar" in subs  # the parse found the sub-field lists


def test_the_docs_example_passes_once_its_placeholders_are_filled():
    section = DOCS.read_text().split("### Growing into Kubernetes: qserv-operator", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    block = block.replace("<repository>", "registry.invalid").replace("<digest>", "ab" * 32)
    doc = yaml.safe_load(block)
    assert check_overlay(doc, SCHEMA) == []
    two = {**copy.deepcopy(VARS), "groups": {"qserv_czar": ["c"], "qserv_worker": ["w1", "w2"]}}
    assert doc.keys() == render_overlay(two, SCHEMA).keys()
    assert doc["spec"].keys() == render_overlay(two, SCHEMA)["spec"].keys()


def test_the_schema_file_records_its_origin_and_is_loadable(tmp_path):
    raw = json.loads(SCHEMA_PATH.read_text())
    origin = raw["x-origin"]
    assert origin["repository"] == "lsst/qserv-operator"
    assert re.fullmatch(r"[0-9a-f]{40}", origin["commit"])
    assert origin["path"] == "config/crd/bases/qserv.lsst.org_qservs.yaml"
    assert any("affinity" in r for r in origin["reduced"])
    # every object the strict check walks declares its type (or is a local reference)
    def walk(node, at):
        if "$ref" in node:
            return
        assert "type" in node or "anyOf" in node, f"{at}: no type"
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{at}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{at}[]")
    walk(raw["properties"]["spec"], "spec")
    broken = tmp_path / "crd.json"
    broken.write_text("{not json")
    with pytest.raises(InventoryError, match=r"crd\.json: cannot read the qserv-operator CRD schema"):
        load_schema(broken)
    broken.write_text(json.dumps({"type": "objekt"}))
    with pytest.raises(InventoryError, match=r"crd\.json: not a valid JSON schema"):
        load_schema(broken)
