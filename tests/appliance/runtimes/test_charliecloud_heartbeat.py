"""The heartbeat of a silent run under charliecloud, as an unprivileged user made for the test:
the CPU time and memory in the beats come from /proc of the ch-run process tree (the runtime's
usage()), not from an engine."""

from __future__ import annotations

import re

import pytest

from tests.appliance.conftest import write_recipe
from tests.appliance.runtimes.test_charliecloud import ch_setup, chown_tree  # noqa: F401

BEAT = re.compile(r"appliance: heartbeat (\S+): (\d+)m(\d+)s elapsed, no output for a while"
                  r"(?:; container cpu ([\d.]+) s, memory (\d+) MiB)?")

SILENT = """\
import time
x = bytearray(96 << 20)  # 96 MiB, touched: resident
for i in range(0, len(x), 4096):
    x[i] = 1
t = time.time()
while time.time() - t < 5:
    pass
open("/output/o", "w").write("ok")
"""


@pytest.mark.docker  # the image tar comes from the Docker engine (docker save of the locked base)
def test_heartbeat_samples_the_charliecloud_process_tree(ch_setup) -> None:  # noqa: F811
    u, base, env = ch_setup
    d = write_recipe(u.root / "silent", {"name": "silent", "image": base,
                                          "command": ["python3", "/recipe/main.py"],
                                          "outputs": [{"path": "o"}]}, {"main.py": SILENT})
    chown_tree(d, u.uid, u.gid)
    home = u.root / "silent-home"
    proc = u.run("run", str(d), "--runtime", "charliecloud", "--home", str(home), "--force",
                 env={**env, "APPLIANCE_HEARTBEAT_SECONDS": "1"}, check=True)
    beats = [m for m in map(BEAT.search, proc.stderr.splitlines()) if m]
    assert len(beats) >= 2, proc.stderr[-2000:]
    run_ids = {m.group(1) for m in beats}
    assert len(run_ids) == 1 and (home / "runs" / run_ids.pop() / "record.json").is_file()
    # beats that fall after ch-run exited have no sample; those while it runs do
    sampled = [(float(m.group(4)), int(m.group(5))) for m in beats if m.group(4)]
    assert sampled, proc.stderr[-2000:]
    assert max(mib for _, mib in sampled) >= 90, sampled  # the 96 MiB it holds, seen through /proc
    cpus = [cpu for cpu, _ in sampled]  # it spins: CPU time only grows (slowly on a busy machine)
    assert cpus == sorted(cpus) and cpus[-1] > cpus[0], sampled
    elapsed = [int(m.group(2)) * 60 + int(m.group(3)) for m in beats]
    assert elapsed == sorted(elapsed) and max(elapsed) >= 2
