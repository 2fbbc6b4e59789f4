"""A real single-node Slurm (Debian's slurm-wlm 22.05) for tests: munged with a key made here,
slurmctld and slurmd on 127.0.0.1 with a slurm.conf in a temporary directory, all stopped by PID.

proctrack/linuxproc and task/none: no cgroups and no systemd are needed, so this runs inside a
container as well as on a developer machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.prereq import require

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf(d: Path, munge_socket: Path, cpus: int) -> str:
    node = "localhost"
    return "\n".join([
        "ClusterName=appliancetest", f"SlurmctldHost={node}(127.0.0.1)",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={munge_socket}",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}",
        f"SlurmctldPidFile={d / 'slurmctld.pid'}", f"SlurmdPidFile={d / 'slurmd.pid'}",
        f"SlurmctldLogFile={d / 'slurmctld.log'}", f"SlurmdLogFile={d / 'slurmd.log'}",
        "SlurmUser=root", "SlurmdUser=root", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "SchedulerType=sched/backfill",
        "MpiDefault=none", "ReturnToService=2", "SlurmdTimeout=30", "InactiveLimit=0",
        "KillWait=5", "MinJobAge=5", "PrologFlags=NoHold",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=8000 State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP", "",
    ])


@contextmanager
def single_node_slurm() -> Iterator[dict[str, str]]:
    """Start munged + slurmctld + slurmd; yield the environment (SLURM_CONF) clients need."""
    for exe in DAEMONS:
        require(shutil.which(exe) is not None, f"{exe} missing (apt-get install slurm-wlm munge)")
    require(os.geteuid() == 0, "slurmd needs root")
    d = Path(tempfile.mkdtemp(prefix="appliance-slurm-", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    munged_pid: int | None = None
    try:
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = d / "munge.sock"
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={sock}",
                        f"--pid-file={d / 'munged.pid'}", f"--log-file={d / 'munged.log'}",
                        f"--seed-file={d / 'munged.seed'}"], check=True, capture_output=True)
        munged_pid = int((d / "munged.pid").read_text())
        conf = d / "slurm.conf"
        conf.write_text(_conf(d, sock, os.cpu_count() or 1))
        env = {"SLURM_CONF": str(conf)}
        full = {**os.environ, **env}
        procs.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)], env=full,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["slurmd", "-D", "-N", "localhost", "-f", str(conf)], env=full,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=full, capture_output=True,
                                   text=True).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                break
            time.sleep(0.5)
        logs = "".join(p.read_text()[-800:] for p in (d / "slurmctld.log", d / "slurmd.log") if p.is_file())
        require(state in ("idle", "mix", "alloc"), f"single-node Slurm did not come up ({state!r}): {logs}")
        yield env
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if munged_pid:
            try:
                os.kill(munged_pid, 15)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 30  # it writes its seed file on the way out
            while Path(f"/proc/{munged_pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            if Path(f"/proc/{munged_pid}").exists():
                # still there (a loaded machine): once its directory is removed it never exits
                # on SIGTERM (seen: a munged left running for 20 minutes after a test run)
                try:
                    os.kill(munged_pid, 9)
                except ProcessLookupError:
                    pass
        shutil.rmtree(d, ignore_errors=True)
