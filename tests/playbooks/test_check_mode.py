"""BeeGFS and Qserv roles in check mode: their packages and images cannot be reached here.

What this proves: with valid variables the roles run end to end in check mode on a real node
(this machine, local connection, nothing changed), every BeeGFS config file is rendered (shown by
--diff) and every Qserv container is defined with a digest-pinned image. What it cannot prove: that
BeeGFS services start and register, or that Qserv answers queries (docs/DEPLOYMENT.md says so).
"""

from __future__ import annotations

import re

from tests.playbooks.runner import run_site

BEEGFS = {
    "beegfs_mgmtd_host": "mgmt.test",
    "beegfs_conn_auth_secret": "s" * 40,
    "beegfs_manage_repo": False,
    "beegfs_storage_node_numid": 1,
    "beegfs_storage_targets": [{"path": "/data/beegfs/t101", "target_id": 101}],
}
QSERV = {
    "qserv_image_repository": "registry.invalid/lsst/qserv",
    "qserv_image_digest": "sha256:" + "ab" * 32,
    "qserv_mariadb_image_repository": "registry.invalid/lsst/qserv-mariadb",
    "qserv_mariadb_image_digest": "sha256:" + "cd" * 32,
    "qserv_mariadb_root_password": "root-secret-123",
    "qserv_repl_auth_key": "repl-secret-123",
    "qserv_repl_admin_auth_key": "admin-secret-123",
}


def test_beegfs_and_qserv_roles_pass_check_mode(tmp_path):
    qserv = {**QSERV, "qserv_data_root": str(tmp_path / "qserv")}
    proc = run_site(tmp_path, {
        "beegfs_mgmtd": BEEGFS, "beegfs_meta": BEEGFS, "beegfs_storage": BEEGFS, "beegfs_client": BEEGFS,
        "qserv_czar": qserv, "qserv_worker": qserv,
    }, "--tags", "beegfs,qserv", "--diff")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    recap = re.search(r"testnode\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    assert recap and recap.group(4) == "0" and recap.group(3) == "0", out[-3000:]
    # Every BeeGFS service file was rendered with the shared secret and the management host.
    for fragment in ("+storeMgmtdDirectory            = /data/beegfs/mgmtd",
                     "+storeMetaDirectory             = /data/beegfs/meta",
                     "+storeStorageDirectory          = /data/beegfs/t101",
                     "+sysMgmtdHost                   = mgmt.test",
                     "+connAuthFile                   = /etc/beegfs/connauthfile",
                     "+/mnt/beegfs /etc/beegfs/beegfs-client.conf"):
        assert fragment in out, fragment
    # Setup commands are guarded by `creates:` and the services are not started in check mode.
    assert "beegfs-setup-storage" not in out or "skipping" in out
    # Seven czar and four worker containers would be created, all digest-pinned (asserted by the
    # roles' own "Every image is pinned by digest" task, which passed).
    assert out.count("Every image is pinned by digest") == 2
    assert not (tmp_path / "qserv").exists(), "check mode must not create anything"
