"""The mariadb role's mysql_secure_installation step against a real MariaDB server (Debian's).

A throwaway server in tmp_path, initialised as Debian initialises it (root by unix_socket, an
anonymous account, a `test` database), plus a root account for any host: the role's secure.yml
removes what must go, sets the root password (socket login kept), and the second run changes
nothing, the no_log tasks included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.cluster.containers import free_ports
from appliance.cluster.provision import run_site
from tests.prereq import require

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def server(tmp_path):
    require(shutil.which("mariadbd") is not None and shutil.which("mariadb-install-db") is not None,
            "mariadb-server (mariadbd, mariadb-install-db)")
    require(os.geteuid() == 0, "root (unix_socket authentication as the OS root)")
    data, sock, port = tmp_path / "data", tmp_path / "mysqld.sock", free_ports(1)[0]
    subprocess.run(["mariadb-install-db", f"--datadir={data}", "--user=root",
                    "--auth-root-authentication-method=socket"], check=True, capture_output=True,
                   timeout=120)
    proc = subprocess.Popen(["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}",
                             f"--port={port}", "--bind-address=127.0.0.1", "--user=root",
                             f"--pid-file={tmp_path / 'pid'}", f"--log-error={tmp_path / 'err.log'}"])
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.2)
    assert sock.exists(), (tmp_path / "err.log").read_text(errors="replace")[-2000:]
    _sql(sock, "CREATE USER 'root'@'%' IDENTIFIED BY 'weak'")
    yield sock, port
    proc.terminate()
    proc.wait(timeout=60)


def _sql(sock: Path, query: str) -> str:
    return subprocess.run(["mariadb", "-S", str(sock), "-uroot", "-NBe", query], check=True,
                          capture_output=True, text=True, timeout=30).stdout


def test_secure_installation_converges_and_is_idempotent(server, tmp_path):
    sock, port = server
    assert "test" in _sql(sock, "SHOW DATABASES").split()
    assert _sql(sock, "SELECT COUNT(*) FROM mysql.user WHERE User = ''").strip() != "0"
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Secure\n      ansible.builtin.include_role:\n        name: mariadb\n"
        "        tasks_from: secure\n")
    inv = tmp_path / "hosts.yml"
    inv.write_text(f"all:\n  hosts:\n    db:\n      ansible_connection: local\n"
                   f"      ansible_python_interpreter: {sys.executable}\n")
    extravars = {"mariadb_socket": str(sock), "mariadb_root_password": "r00t-pw",
                 "mariadb_remove_remote_root": True}
    first = run_site([inv], tmp_path / "state", playbook=play, progress=False, extravars=extravars)
    assert first.ok, first.report()
    # remote root, anonymous accounts, test database, root password: 4 changes at least
    assert first.changed_by_host()["db"] >= 4, first.report()
    assert "test" not in _sql(sock, "SHOW DATABASES").split()
    assert _sql(sock, "SELECT COUNT(*) FROM mysql.user WHERE User = ''").strip() == "0"
    assert _sql(sock, "SELECT Host FROM mysql.user WHERE User = 'root'").split() == ["localhost"]
    assert "PUBLIC" in _sql(sock, "SELECT User FROM mysql.user")  # 10.11's role kept
    tcp = ["mariadb", "-h127.0.0.1", f"-P{port}", "-uroot", "-NBe", "SELECT CURRENT_USER()"]
    ok = subprocess.run([*tcp, "-pr00t-pw"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout.strip() == "root@localhost", ok.stderr
    bad = subprocess.run([*tcp, "-pwrong"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "Access denied" in bad.stderr
    second = run_site([inv], tmp_path / "state", playbook=play, progress=False, extravars=extravars)
    assert second.ok and second.changed_by_host() == {"db": 0}, second.report()
    assert "r00t-pw" not in "".join(p.read_text(errors="replace")
                                    for p in Path(second.artifacts).rglob("*") if p.is_file())

