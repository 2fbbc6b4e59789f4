"""Qserv container definitions rendered from the roles: images by digest, never by tag."""

from __future__ import annotations

import re

import pytest

from tests.playbooks.render import render_var

DIGEST = "sha256:" + "ab" * 32
MDIGEST = "sha256:" + "cd" * 32
VARS = {
    "qserv_image_repository": "registry.invalid/lsst/qserv",
    "qserv_image_digest": DIGEST,
    "qserv_mariadb_image_repository": "registry.invalid/lsst/qserv-mariadb",
    "qserv_mariadb_image_digest": MDIGEST,
    "qserv_image": "{{ qserv_image_repository }}@{{ qserv_image_digest }}",
    "qserv_mariadb_image": "{{ qserv_mariadb_image_repository }}@{{ qserv_mariadb_image_digest }}",
    "qserv_mariadb_root_password": "root-secret-123",
    "qserv_repl_auth_key": "repl-secret-123",
    "qserv_repl_admin_auth_key": "admin-secret-123",
    "groups": {"qserv_czar": ["czar.test"], "qserv_worker": ["w1.test", "w2.test"]},
}
PINNED = re.compile(r"^[^@\s:]+(:[0-9]+)?(/[^@\s:]+)*@sha256:[0-9a-f]{64}$")


@pytest.mark.parametrize("role", ["qserv_czar", "qserv_worker"])
def test_every_container_is_pinned_by_digest(role):
    containers = render_var(["qserv", role], VARS, f"{role}_containers")
    assert containers, role
    names = [c["name"] for c in containers]
    assert len(names) == len(set(names))
    for c in containers:
        assert PINNED.match(c["image"]), f"{c['name']}: {c['image']} is not name@sha256:digest"
        assert c["image"].endswith((DIGEST, MDIGEST))
        assert all(isinstance(a, (str, int)) for a in c["command"])


def test_czar_ports_and_services_follow_variables():
    extra = {**VARS, "qserv_port_repl_controller": 35081}
    containers = {c["name"]: c for c in render_var(["qserv", "qserv_czar"], extra, "qserv_czar_containers")}
    assert {"qserv-czar-db", "qserv-czar-proxy", "qserv-repl-controller"} <= set(containers)
    assert "--controller-http-server-port=35081" in map(str, containers["qserv-repl-controller"]["command"])
    assert "qserv-czar-http" not in containers  # no czar-http in the pinned entrypoint (#15)
    # The cmsd manager waits for every worker of the inventory.
    cmd = containers["qserv-czar-cmsd"]["command"]
    assert str(cmd[cmd.index("--cms-delay-servers") + 1]) == "2"


def test_workers_point_at_the_czar_and_keep_data_where_told():
    extra = {**VARS, "qserv_data_root": "/mnt/beegfs/qserv/w1"}
    containers = {c["name"]: c for c in render_var(["qserv", "qserv_worker"], extra, "qserv_worker_containers")}
    assert "czar.test" in containers["qserv-worker-xrootd"]["command"]
    assert containers["qserv-worker-db"]["volumes"] == ["/mnt/beegfs/qserv/w1/worker/mariadb:/qserv/data"]


def test_defaults_have_no_working_image():
    """No image default that works by accident: the digests must be set in the inventory."""
    assert render_var(["qserv"], {}, "qserv_image_digest") == ""
    assert render_var(["qserv"], {}, "qserv_image_repository") == ""
