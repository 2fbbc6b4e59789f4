"""BeeGFS setup reruns safely: the marker is a file beegfs-setup-* writes, not the daemon's.

BeeGFS packages cannot be reached here, so beegfs-setup-storage/-meta are a simulator
(simulators/beegfs-setup-storage) with upstream's relevant behaviour: it refuses a non-empty
directory (exit 1) and never writes originalNodeID (the daemon does, on its first start). The
roles' real setup task files run through ansible-runner against this machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from appliance.cluster.inventory import PLAYBOOKS
from appliance.cluster.provision import run_site

SIM = Path(__file__).parent / "simulators"


def _run(tmp_path: Path, role: str, extravars: dict) -> object:
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - name: Setup\n      ansible.builtin.include_tasks: {PLAYBOOKS}/roles/{role}/tasks/setup.yml\n")
    inv = tmp_path / "hosts.yml"
    inv.write_text(f"all:\n  hosts:\n    brick1:\n      ansible_connection: local\n"
                   f"      ansible_python_interpreter: {sys.executable}\n")
    return run_site([inv], tmp_path / "state", playbook=play, progress=False,
                    extravars={"beegfs_sbin_dir": str(SIM), "beegfs_mgmtd_host": "mgmt", **extravars})


def test_storage_setup_reruns_after_a_failed_first_start(tmp_path):
    targets = [{"path": str(tmp_path / "t" / "target101"), "target_id": 101},
               {"path": str(tmp_path / "t" / "target102"), "target_id": 102}]
    ev = {"beegfs_storage_targets": targets, "beegfs_storage_node_numid": 1,
          "beegfs_storage_node_strid": "brick1-storage"}
    first = _run(tmp_path, "beegfs_storage", ev)
    assert first.ok and first.changed_by_host()["brick1"] >= 2, first.report()
    for t in targets:
        d = Path(t["path"])
        assert (d / "format.conf").is_file() and (d / "targetNumID").read_text().strip() == str(t["target_id"])
        assert not (d / "originalNodeID").exists()  # the daemon never started (or failed)
    # what the old marker (originalNodeID) would have made a rerun do: setup again, exit 1
    again = subprocess.run([str(SIM / "beegfs-setup-storage"), "-p", targets[0]["path"], "-s", "1",
                            "-S", "brick1-storage", "-i", "101", "-m", "mgmt"], capture_output=True, text=True)
    assert again.returncode == 1 and "not empty" in again.stderr
    second = _run(tmp_path, "beegfs_storage", ev)
    assert second.ok and second.changed_by_host() == {"brick1": 0}, second.report()


def test_meta_setup_reruns(tmp_path):
    ev = {"beegfs_meta_store_dir": str(tmp_path / "meta"), "beegfs_meta_node_numid": 1,
          "beegfs_meta_node_strid": "mgmt-meta"}
    first = _run(tmp_path, "beegfs_meta", ev)
    assert first.ok and (tmp_path / "meta" / "nodeNumID").read_text().strip() == "1", first.report()
    second = _run(tmp_path, "beegfs_meta", ev)
    assert second.ok and second.changed_by_host() == {"brick1": 0}, second.report()
