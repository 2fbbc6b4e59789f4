"""Wrong inventories and variables are rejected by the roles themselves, with a clear message.

The roles run in check mode against this machine with a local connection: validation happens
before anything could be changed, and check mode changes nothing anyway.
"""

from __future__ import annotations

import pytest

from tests.playbooks.runner import run_site

BEEGFS_OK = {
    "beegfs_mgmtd_host": "mgmt.test",
    "beegfs_conn_auth_secret": "s" * 40,
    "beegfs_manage_repo": False,
}
QSERV_OK = {
    "qserv_image_repository": "registry.invalid/lsst/qserv",
    "qserv_image_digest": "sha256:" + "ab" * 32,
    "qserv_mariadb_image_repository": "registry.invalid/lsst/qserv-mariadb",
    "qserv_mariadb_image_digest": "sha256:" + "cd" * 32,
    "qserv_mariadb_root_password": "root-secret-123",
    "qserv_repl_auth_key": "repl-secret-123",
}


def assert_rejected(proc, *fragments: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    for fragment in fragments:
        assert fragment in out, f"expected {fragment!r} in:\n{out[-3000:]}"


def test_storage_target_without_id_is_rejected(tmp_path):
    proc = run_site(tmp_path, {
        "beegfs_storage": {**BEEGFS_OK, "beegfs_storage_targets": [{"path": "/data/t1"}]},
    })
    assert_rejected(proc, "beegfs_storage", "missing required arguments: target_id")


def test_unknown_catalog_backend_is_rejected(tmp_path):
    proc = run_site(tmp_path, {"archive": {"archive_catalog_backend": "oracle"}}, "--tags", "archive")
    assert_rejected(proc, "archive_catalog_backend", "sqlite", "postgresql")


def test_engine_mode_outside_choices_is_rejected(tmp_path):
    proc = run_site(tmp_path, {"docker_hosts": {"docker_host_engine": "remote"}}, "--tags", "docker_host")
    assert_rejected(proc, "docker_host_engine", "local", "external")


def test_qserv_image_by_tag_is_rejected(tmp_path):
    bad = {**QSERV_OK, "qserv_image_digest": "2024.11.2-rc1"}
    proc = run_site(tmp_path, {"qserv_czar": bad}, "--tags", "qserv")
    assert_rejected(proc, "pinned by digest, never by tag")


def test_beegfs_without_shared_secret_is_rejected(tmp_path):
    proc = run_site(tmp_path, {"beegfs_meta": {**BEEGFS_OK, "beegfs_conn_auth_secret": ""}})
    assert_rejected(proc, "beegfs_conn_auth_secret of at least 32 characters")


def test_beegfs_8_is_refused_until_it_has_templates(tmp_path):
    proc = run_site(tmp_path, {"beegfs_mgmtd": {**BEEGFS_OK, "beegfs_version": "8.0.1"}})
    assert_rejected(proc, "8.x has no templates yet")


def test_gridftp_mapping_to_root_is_rejected(tmp_path):
    proc = run_site(tmp_path, {"gridftp": {
        "gridftp_hostcert_src": "/nonexistent/cert.pem", "gridftp_hostkey_src": "/nonexistent/key.pem",
        "gridftp_gridmap_entries": [{"dn": "/DC=test/CN=Someone", "user": "root"}],
    }}, "--tags", "gridftp")
    assert_rejected(proc, "may not be mapped to root")


@pytest.mark.parametrize("port", [0, 70000])
def test_archive_port_out_of_range_is_rejected(tmp_path, port):
    proc = run_site(tmp_path, {"archive": {"archive_port": port}}, "--tags", "archive")
    assert_rejected(proc, "archive_port must be 1..65535")
