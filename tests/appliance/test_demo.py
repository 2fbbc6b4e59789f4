"""`make demo` end to end (both parts: local life cycle, and input staged from simulated tape)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import REPO_ROOT


@pytest.mark.slow
@pytest.mark.docker
def test_demo_runs_end_to_end(tmp_path: Path, locked_images) -> None:
    env = {**os.environ, "APPLIANCE_DEMO_DIR": str(tmp_path / "demo")}
    env.pop("APPLIANCE_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "appliance.demo"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "cache hit: reused the outputs" in out
    assert out.count("REPRODUCED: within tolerance") == 2, out[-3000:]
    assert "locality TAPE" in out and "stage" in out
    assert (tmp_path / "demo" / "ro-crate" / "ro-crate-metadata.json").is_file()
