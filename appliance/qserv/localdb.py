"""A private, throw-away MariaDB server (Debian's mariadbd) for tests, benchmarks and local trials.

It lives entirely in one directory: data dir from ``mariadb-install-db``, a unix socket there, TCP
only on 127.0.0.1 with a free port, ``local_infile`` on. ``stop()`` ends exactly the process it
started, by PID. Nothing here touches a system MariaDB.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.qserv.errors import DatabaseError
from appliance.qserv.load import DbConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    return bool(shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()) and bool(shutil.which("mariadb-install-db"))


@dataclass
class LocalMariaDB:
    base: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def socket_path(self) -> Path:
        return self.base / "mysqld.sock"

    def config(self) -> DbConfig:
        return DbConfig(host="127.0.0.1", port=self.port, user="root", unix_socket=str(self.socket_path))

    def start(self, timeout: float = 60.0) -> DbConfig:
        self.base.mkdir(parents=True, exist_ok=True)
        datadir = self.base / "data"
        run_as_root = os.geteuid() == 0
        user_args = ["--user=root"] if run_as_root else []
        if not datadir.exists():
            cmd = [
                "mariadb-install-db",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *user_args,
            ]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise DatabaseError(f"mariadb-install-db failed: {r.stderr.strip()[-500:]}")
        self.port = self.port or _free_port()
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        log = open(self.base / "mariadbd.log", "ab")
        self.proc = subprocess.Popen(
            [
                mariadbd,
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={self.socket_path}",
                f"--pid-file={self.base / 'mariadbd.pid'}",
                "--bind-address=127.0.0.1",
                f"--port={self.port}",
                "--local-infile=1",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--key-buffer-size=64M",
                "--max-allowed-packet=64M",
                *user_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        cfg = self.config()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DatabaseError(f"mariadbd exited early; see {self.base / 'mariadbd.log'}")
            try:
                cfg.connect().close()
                return cfg
            except DatabaseError:
                time.sleep(0.2)
        self.stop()
        raise DatabaseError(f"mariadbd did not accept connections within {timeout} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
