"""A second, empty Docker engine: what a newcomer's machine has (no images at all).

``dockerd`` with its own ``--data-root``, ``--exec-root``, ``--pidfile`` and socket, reached
through ``DOCKER_HOST``. With ``netns=True`` it runs in a network namespace of its own with only
loopback up, and so does every command given to ``run``: nothing there can reach a mirror, so a
build that succeeds there is offline by construction, not by promise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.prereq import require


class BareEngine:
    def __init__(self, root: Path, netns: bool):
        self.root, self.netns = root, netns
        self.socket = root / "docker.sock"
        self.holder: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.prefix: list[str] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def start(self) -> None:
        if self.netns:
            self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"])
            ns = f"/proc/{self.holder.pid}/ns/net"
            for _ in range(50):  # until unshare has exec'd sleep inside the new namespace
                if os.path.exists(ns) and os.readlink(ns) != os.readlink("/proc/self/ns/net"):
                    break
                time.sleep(0.05)
            self.prefix = ["nsenter", f"--net={ns}", "--"]
            subprocess.run([*self.prefix, "ip", "link", "set", "lo", "up"], check=True)
        log = open(self.root / "dockerd.log", "wb")  # noqa: SIM115 - closed with the daemon
        self.daemon = subprocess.Popen(
            [*self.prefix, "dockerd", "--data-root", str(self.root / "data"), "--exec-root",
             str(self.root / "exec"), "--pidfile", str(self.root / "dockerd.pid"), "--host",
             f"unix://{self.socket}", "--bridge=none", "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.socket.exists() and self.run(["docker", "info"], check=False).returncode == 0:
                return
            if self.daemon.poll() is not None:
                break
            time.sleep(0.3)
        tail = (self.root / "dockerd.log").read_text(errors="replace")[-1500:]
        self.stop()
        require(False, f"a second dockerd did not start: {tail}")

    def run(self, cmd: list[str], check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 1500) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.prefix, *cmd], env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-3000:]}")
        return proc

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
        # the daemon unmounts its layers on shutdown; anything left mounted is unmounted here
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if str(self.root) in line]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def bare_engine(netns: bool = False) -> Iterator[BareEngine]:
    require(shutil.which("dockerd") is not None, "dockerd not installed (apt-get install docker.io)")
    # a short path: the socket's must fit in sun_path (108 bytes)
    engine = BareEngine(Path(tempfile.mkdtemp(prefix="bare-engine-", dir="/tmp")), netns)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()
