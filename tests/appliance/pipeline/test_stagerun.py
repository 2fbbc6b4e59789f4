"""A stage execution is a run: a record in the run store that `runs show|diff` read, and a replay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from appliance.pipeline.stagerun import replay_stage
from appliance.pipeline.stages import run_products
from appliance.runs.record import RunStore

APPLIANCE = [sys.executable, "-c", "import sys; from appliance.cli import main; sys.exit(main())"]


def test_products_run_record_and_replay(archive_root, tmp_path, run_home):
    summary, _xml = run_products(archive_root, tmp_path / "w", parallel=2, progress=False)
    rec = RunStore(run_home).load(summary.run_id)
    assert rec.state == "succeeded" and rec.runtime["name"] == "host-process" and rec.exit_code == 0
    assert rec.image["image_id"].startswith("host-env:sha256:")
    fits_inputs = [i for i in rec.inputs if i.name.endswith(".fits")]
    assert fits_inputs and all(len(i.sha256) == 64 and i.uri.startswith("file://") for i in fits_inputs)
    names = {o.name: o.compare for o in rec.outputs}
    assert names["work/products.xml"] == "sha256" and names["verdicts.json"] == "sha256"
    assert any(n.startswith("work/rebuilt/") and c == "fits" for n, c in names.items())
    verdict, new = replay_stage(summary.run_id, home=run_home)
    assert verdict.ok and verdict.status == "identical" and new.replay_of == rec.run_id
    out = subprocess.run([*APPLIANCE, "runs", "diff", rec.run_id, new.run_id, "--home", str(run_home), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["same_key"] is True
    # the ordinary `appliance replay` replays a stage run too
    out = subprocess.run([*APPLIANCE, "replay", rec.run_id, "--home", str(run_home), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "identical"
    # an input changed since: the replay refuses it (checksum, exit 4) instead of comparing
    victim = Path(fits_inputs[0].uri.removeprefix("file://"))
    data = victim.read_bytes()
    try:
        victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        import pytest

        from appliance.errors import ChecksumMismatch

        with pytest.raises(ChecksumMismatch):
            replay_stage(summary.run_id, home=run_home)
    finally:
        victim.write_bytes(data)
