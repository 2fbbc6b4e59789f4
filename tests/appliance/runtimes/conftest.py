"""An unprivileged user made for the test, and a world-readable place it can work in."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.config import REPO_ROOT
from tests.prereq import require

VENV_APPLIANCE = REPO_ROOT / ".venv" / "bin" / "appliance"


@dataclass
class Unprivileged:
    name: str
    uid: int
    gid: int
    root: Path  # owned by the user; pytest's tmp_path is 0700 root, so not usable by it

    def run(self, *args: str, env: dict[str, str] | None = None, check: bool = False,
            ) -> subprocess.CompletedProcess[str]:
        """Run ``appliance ARGS`` as this user, with a clean environment of its own."""
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root / "home"),
                "USER": self.name, "LANG": "C.UTF-8"}
        cmd = ["runuser", "-u", self.name, "--", "env", "-i",
               *(f"{k}={v}" for k, v in {**base, **(env or {})}.items()),
               str(VENV_APPLIANCE), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args}: exit {proc.returncode}: {proc.stderr[-2000:]}")
        return proc


@pytest.fixture(scope="session")
def unprivileged_user() -> Iterator[Unprivileged]:
    require(os.geteuid() == 0, "creating a test user needs root")
    require(shutil.which("useradd") is not None and shutil.which("runuser") is not None,
            "useradd/runuser missing (passwd, util-linux)")
    require(shutil.which("ch-run") is not None, "charliecloud missing (apt-get install charliecloud)")
    name = f"aptest{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                    "/usr/sbin/nologin", name], check=True)
    root = Path(tempfile.mkdtemp(prefix="appliance-unpriv-", dir="/tmp"))
    try:
        import pwd

        pw = pwd.getpwnam(name)
        root.chmod(0o755)
        (root / "home").mkdir()
        os.chown(root, pw.pw_uid, pw.pw_gid)
        os.chown(root / "home", pw.pw_uid, pw.pw_gid)
        probe = subprocess.run(["runuser", "-u", name, "--", "unshare", "--user", "--map-root-user",
                                "--net", "true"], capture_output=True, text=True)
        require(probe.returncode == 0, f"unprivileged user namespaces refused: {probe.stderr.strip()}")
        yield Unprivileged(name, pw.pw_uid, pw.pw_gid, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["userdel", name], capture_output=True)
