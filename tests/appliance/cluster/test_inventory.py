"""Inventories as values: Ansible's merged view parsed into nodes, groups and connections."""

from __future__ import annotations

import pytest

from appliance.cluster.errors import InventoryError
from appliance.cluster.inventory import PLAYBOOKS, load_inventory, parse_inventory_json

LISTING = {
    "_meta": {"hostvars": {
        "a": {"ansible_connection": "community.docker.docker", "ansible_host": "c-a"},
        "b": {"ansible_host": "10.0.0.2", "ansible_user": "vagrant", "ansible_port": "2222",
              "ansible_ssh_private_key_file": "/k"},
    }},
    "all": {"children": ["ungrouped", "archive", "docker_hosts"]},
    "archive": {"hosts": ["a"]},
    "pipeline": {"hosts": ["b"]},
    "docker_hosts": {"children": ["archive", "pipeline"]},
}


def test_parse_resolves_children_and_connections():
    inv = parse_inventory_json(LISTING, ["x"])
    assert inv.groups["docker_hosts"] == ("a", "b")
    a, b = inv.nodes["a"], inv.nodes["b"]
    assert a.is_container and a.target == "c-a" and a.groups == ("archive", "docker_hosts")
    assert not b.is_container and b.port == 2222 and b.user == "vagrant" and b.key_file == "/k"
    assert [n.name for n in inv.select("pipeline,a")] == ["b", "a"]
    assert [n.name for n in inv.select(None)] == ["a", "b"]


def test_unknown_pattern_names_the_groups():
    inv = parse_inventory_json(LISTING, ["inv.yml"])
    with pytest.raises(InventoryError, match="no host or group named 'qserv'.*archive"):
        inv.select("qserv")


def test_bad_port_is_an_error_naming_the_host():
    bad = {"_meta": {"hostvars": {"h": {"ansible_port": "ssh"}}}, "all": {"hosts": ["h"]}}
    with pytest.raises(InventoryError, match="host h: ansible_port"):
        parse_inventory_json(bad)


def test_shipped_inventories_load():
    vagrant = load_inventory([PLAYBOOKS / "inventories" / "vagrant"])
    assert set(vagrant.nodes) == {"mgmt", "brick1", "brick2", "czar", "worker1", "worker2", "lta", "pipe"}
    assert vagrant.groups["beegfs_storage"] == ("brick1", "brick2")
    assert set(vagrant.groups["docker_hosts"]) == {"czar", "worker1", "worker2", "lta", "pipe"}
    local = load_inventory([PLAYBOOKS / "inventories" / "local-containers"])
    assert all(n.is_container for n in local.nodes.values())
    prod = load_inventory([PLAYBOOKS / "inventories" / "example-production"])
    assert len(prod.groups["beegfs_storage"]) == 2


def test_missing_inventory_is_reported(tmp_path):
    with pytest.raises(InventoryError, match="inventory not found"):
        load_inventory([tmp_path / "nope"])


def test_malformed_inventory_is_reported(tmp_path):
    bad = tmp_path / "hosts.yml"
    bad.write_text("all:\n  children:\n    - not a mapping\n")
    with pytest.raises(InventoryError):
        load_inventory([bad])
