"""Real servers for transfer tests: the Globus GridFTP server and nginx (HTTPS, WebDAV methods).

Both run on 127.0.0.1 on free ports, with the test PKI from ``tests.pki``; each is its own process
group, stopped (and restartable, for fault tests) by PID. The GridFTP server maps the test user
to ``nobody``, so its data directory lives directly under /tmp with permissive modes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.pki import PKI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created: server + its session children
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


class GridFTPServer:
    def __init__(self, pki: PKI, workdir: Path):
        self.pki = pki
        self.workdir = workdir
        self.data = Path(tempfile.mkdtemp(prefix="dc-gridftp-", dir="/tmp"))
        os.chmod(self.data, 0o777)
        self.gridmap = workdir / "grid-mapfile"
        self.gridmap.write_text(pki.gridmap_line("nobody"))
        self.log = workdir / "gridftp.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, name: str = "") -> str:
        return f"gsiftp://localhost:{self.port}{self.data}/{name}"

    def start(self) -> None:
        env = {**os.environ, **self.pki.server_env(), "GRIDMAP": str(self.gridmap)}
        self.proc = subprocess.Popen(
            ["globus-gridftp-server", "-p", str(self.port), "-control-interface", "127.0.0.1",
             "-data-interface", "127.0.0.1", "-s", "-l", str(self.log), "-d", "ERROR,WARN,INFO"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    def put_file(self, name: str, data: bytes) -> Path:
        p = self.data / name
        p.parent.mkdir(parents=True, exist_ok=True)
        for d in p.relative_to(self.data).parents:  # the server runs as nobody
            os.chmod(self.data / d, 0o777)
        p.write_bytes(data)
        os.chmod(p, 0o644)
        return p


NGINX_CONF = """
daemon off;
worker_processes 1;
user root;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {data};
        client_max_body_size 0;
        dav_methods PUT DELETE MKCOL COPY MOVE;
        create_full_put_path on;
        location /slow/ {{ limit_rate {rate}; }}
    }}
}}
"""


class NginxServer:
    """nginx as a plain HTTPS/WebDAV-methods server: Range, PUT, MOVE, no Digest, no PROPFIND."""

    def __init__(self, pki: PKI, workdir: Path, rate: str = "4m"):
        self.root = workdir / "nginx"
        self.data = self.root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.root / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(root=self.root, port=self.port, cert=pki.host_cert,
                                               key=pki.host_key, data=self.data, rate=rate))
        self.proc: subprocess.Popen | None = None

    def url(self, name: str = "") -> str:
        return f"https://localhost:{self.port}/{name}"

    def start(self) -> None:
        self.proc = subprocess.Popen(["nginx", "-c", str(self.conf), "-p", str(self.root)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_port(self.port)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
