"""A pipeline stage's items run in the locked ``stages`` image (images/stages): one container per run.

The host keeps what is the host's: it plans the items (resume, manual flags), hashes the inputs,
writes the run record and stores the outputs. The container does the science: it runs
``python3 -m appliance.pipeline.inside JOB`` over exactly the planned items, with

* the image named ``stages`` in images/images.lock (or this machine's recorded stand-in), by ID;
* the code the run record names: the ``appliance`` package snapshot (``recipe.code_sha256``) taken
  from the content store and unpacked into a private directory, mounted read-only with the job
  file (which items, which stage options); nothing of the host's Python is used;
* the archive root read-only and the work area read-write, each mounted at its own host path, so
  every path and reason an item writes is the one a host run writes;
* no network, a read-only root file system, a private /tmp, all capabilities dropped, as the owner
  of the work area (files the stage writes belong to whoever owns the area, never to root when the
  area is a user's);
* tethered: this process holds an exclusive lock on ``tether`` in the job mount while the
  container runs; the program inside waits for a shared lock on it and stops its process group
  when it gets one, so a run killed even with SIGKILL leaves no orphan container writing into the
  work area that a re-run resumes in (the engine alone would keep a detached container running);
  the stopped container such a run leaves in the engine is removed by the next run
  (``remove_abandoned``: its tether is free).

Inside, each item's verdict is written to ``WORK/state/STAGE/ITEM.json`` as on the host, and a line
``@appliance-item ITEM`` on stdout tells the host's progress bar. Items the container left without
a verdict (it was killed, ran out of memory, the image is broken) end ``failed`` with the
container's exit code and its last log lines.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import Settings
from appliance.runtimes.base import ContainerSpec, Mount

IMAGE = "stages"
MARK = "@appliance-item "
PREFIX = "appliance-stage-"  # the job areas on the host, in the temporary directory
LABEL_KEY = "org.appliance.pipeline-stage"
LABEL = f"{LABEL_KEY}=1"  # on every stage container: what remove_abandoned looks at
JOB_DIR = "/opt/appliance-stage"  # code/ and job.json, read-only
# the variables a stage's result may depend on are passed (stagerun.ENV_KEYS); these are fixed
FIXED_ENV = {"HOME": "/tmp",
             "PYTHONPATH": f"{JOB_DIR}/code", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}


def add_runtime_option(p: Any) -> None:
    """``--runtime`` of the stages that run in the ``stages`` image (products, image, serve)."""
    from appliance.runtimes import runtime_names

    p.add_argument("--runtime", choices=["host", *runtime_names()], default=None,
                   help="where the items run: a container runtime runs them in the locked `stages` "
                        "image (default: the appliance's configured runtime, docker unless "
                        "config.yaml says otherwise); `host` runs them in this process with this "
                        "Python's packages (the run record then names no image)")


def runtime_of(a: Any) -> str:
    return a.runtime or Settings.load().runtime


@dataclass
class StageContainer:
    """Where a stage's items run when they run in a container; filled in by ``prepare``."""

    runtime_name: str
    settings: Settings
    image_id: str = ""
    image_packages: dict[str, str] = field(default_factory=dict)
    engine: dict[str, str] = field(default_factory=dict)
    _runtime: Any = None

    @classmethod
    def prepare(cls, runtime_name: str, home: Path | None = None, image_id: str | None = None,
                packages: dict[str, str] | None = None) -> StageContainer:
        """Resolve the ``stages`` image on ``runtime_name`` (ImageMissing, exit 3, when absent);
        ``image_id`` (a replay): exactly that image, with the ``packages`` its record lists."""
        from appliance.errors import ImageMissing
        from appliance.images.lock import ImagesLock, local_lock_path, resolve
        from appliance.runtimes import get_runtime

        settings = Settings.load(home=home)
        rt = get_runtime(runtime_name, settings)
        if image_id is not None:
            if not rt.has_image(image_id):
                raise ImageMissing(f"image {image_id} (the '{IMAGE}' image the run ran in) is not on "
                                   f"{runtime_name}; `appliance images ensure {IMAGE}` rebuilds the locked one")
            return cls(runtime_name, settings, image_id, dict(packages or {}), rt.version(), rt)
        tracked = ImagesLock.load(settings.images_dir / "images.lock")
        local = ImagesLock.load(local_lock_path(settings.image_store))
        locked = resolve(IMAGE, tracked, local, rt.has_image)
        found = dict(locked.packages)  # the layer's debs and wheels
        return cls(runtime_name, settings, locked.image_id, dict(sorted(found.items())), rt.version(), rt)

    def spec(self, root: Path, work: Path, job_dir: Path, parallel: int, env: dict[str, str]) -> ContainerSpec:
        st = work.stat()
        return ContainerSpec(
            image_id=self.image_id,
            command=["python3", "-m", "appliance.pipeline.inside", f"{JOB_DIR}/job.json"],
            env={**env, **FIXED_ENV},
            mounts=[Mount(job_dir, JOB_DIR, True), Mount(root, str(root), True), Mount(work, str(work), False)],
            user=f"{st.st_uid}:{st.st_gid}", workdir=str(work), network="none", read_only_root=True,
            # the engines refuse more CPUs than the machine has (docker: "range of CPUs is from
            # 0.01 to 2.00"); more workers than cores share them
            tmpfs_size="1g", cpus=float(max(1, min(parallel, os.cpu_count() or 1))),
            labels={LABEL_KEY: "1"})

    def record_fields(self, spec: ContainerSpec) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The run record's ``image``, ``runtime`` and ``container`` for this execution."""
        image = {"ref": IMAGE, "image_id": self.image_id, "packages": self.image_packages}
        runtime = {"name": self.runtime_name, **self.engine}
        container = {"command": spec.command, "env": spec.env, "user": spec.user, "network": spec.network,
                     "read_only_root": spec.read_only_root, "cpus": spec.cpus, "memory_bytes": None,
                     "mounts": {m.target: ("ro" if m.read_only else "rw") for m in spec.mounts}}
        return image, runtime, container

    def execute(self, spec: ContainerSpec, code_tar: Path, job: dict[str, Any],
                on_item: Callable[[str], None]) -> str | None:
        """Run the job; ``on_item`` hears each finished item. A reason when the container failed."""
        from appliance.runs import codearchive

        job_dir = Path(spec.mounts[0].source)
        (job_dir / "code").mkdir(parents=True, exist_ok=True)
        codearchive.extract(code_tar, job_dir / "code" / "appliance")
        (job_dir / "job.json").write_text(json.dumps({**job, "tether": "tether"}, sort_keys=True))
        tether = os.open(job_dir / "tether", os.O_RDWR | os.O_CREAT, 0o644)
        # held while this process lives (see the module's docstring), from the moment the tether
        # exists: another run's job_area or remove_abandoned takes a free tether for a dead run's
        fcntl.flock(tether, fcntl.LOCK_EX)
        tail: deque[str] = deque(maxlen=8)

        def on_log(line: str) -> None:
            if line.startswith(MARK):
                on_item(json.loads(line[len(MARK):]))
                return
            tail.append(line)
            print(line, file=sys.stderr)

        try:
            for d, _dirs, files in os.walk(job_dir):  # readable by the work area's owner inside
                os.chmod(d, 0o755)
                for f in files:
                    os.chmod(os.path.join(d, f), 0o644)
            remove_abandoned(self._runtime)
            result = self._runtime.run(spec, on_log)
        finally:
            os.close(tether)
        if result.exit_code == 0 and not result.oom_killed:
            return None
        why = "out of memory" if result.oom_killed else f"exit code {result.exit_code}"
        last = " | ".join(x.strip() for x in tail if x.strip())[-400:]
        return f"the stage container ({self.image_id[:19]}) ended with {why}" + (f": {last}" if last else "")


def _abandoned(job_dir: str) -> bool:
    """Nobody holds the tether of ``job_dir`` (or it is gone): the run that made it is dead.
    A tether this process may not open (another user's run) is never taken for a dead run's."""
    try:
        fd = os.open(os.path.join(job_dir, "tether"), os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live run holds it
    finally:
        os.close(fd)
    return True


def remove_abandoned(runtime: Any) -> list[str]:
    """Remove the stopped stage containers whose run is dead; their IDs.

    A run removes its container when the engine reports it ended; a run killed with SIGKILL never
    gets there, so its container stays behind, stopped (the tether stopped it). Such a container
    is recognised by its job mount: a live run holds that directory's tether from before the
    container is created until after it is removed, so a stopped container whose tether nobody
    holds (or whose job directory is gone) belongs to no one. A live run's container is never
    touched, whatever its state.
    """
    find = getattr(runtime, "stopped_containers", None)
    if find is None:  # a runtime that cannot list its containers
        return []
    gone = []
    for cid, mounts in find(LABEL):
        source = mounts.get(JOB_DIR)
        if source is not None and _abandoned(source):
            runtime.remove_container(cid)
            gone.append(cid)
    return gone


def job_area() -> Path:
    """A private directory for one execution's code and job file (removed by the caller). Those
    that runs killed with SIGKILL left behind (nobody holds their tether) are removed first."""
    base = Path(tempfile.gettempdir())
    for old in base.glob(f"{PREFIX}*"):
        if (old / "tether").exists() and _abandoned(str(old)):  # no tether yet: not started (or not ours)
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))

