"""The entry point of a stage run inside the ``stages`` container (``appliance.pipeline.container``).

``python3 -m appliance.pipeline.inside JOB.json`` runs the job's items with the same per-item
functions and the same worker pool as a host run (``runner.process``), writes each item's verdict
to the work area's state and prints ``@appliance-item "ITEM"`` (JSON) when it is written; with
``tether`` in the job it stops when the host run that holds that file's lock is gone. It
imports only what the items need: no run store, no container runtime, no network client.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from appliance.pipeline import runner
from appliance.pipeline.container import MARK


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m appliance.pipeline.inside JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    if job.get("tether"):
        _watch_caller(Path(args[0]).parent / job["tether"])
    stage, opts = job["stage"], job["options"]
    root, work = opts["root"], opts["work"]
    if stage not in ("products", "image"):
        print(f"{args[0]}: field 'stage': expected products or image, got {stage!r}", file=sys.stderr)
        return 2
    from appliance.pipeline.stages import item_function

    fn = item_function(stage, root, work, opts)  # the host's own per-item function

    def on_result(item: str, res: tuple[str, str, dict, float]) -> None:
        runner.write_state(Path(work), stage, item, res)
        print(MARK + json.dumps(item), flush=True)

    runner.process(list(job["items"]), fn, int(job["parallel"]), on_result)
    return 0


def _watch_caller(tether: Path) -> None:
    """The host holds an exclusive lock on ``tether`` (a file of the read-only job mount) for as
    long as it lives; a shared lock granted here means the stage run that started this container
    is gone (killed, even with SIGKILL: the kernel drops its locks). Stop this process group at
    once, so that no orphan keeps writing into the work area while a re-run resumes there. Locks
    are the kernel's, on the one inode, whatever the mount namespace: any runtime does."""
    import contextlib
    import fcntl
    import os
    import signal
    import threading

    with contextlib.suppress(OSError):  # already a group leader (PID 1 of a container)
        os.setpgid(0, 0)
    fd = os.open(tether, os.O_RDONLY)

    def watch() -> None:
        fcntl.flock(fd, fcntl.LOCK_SH)
        print("appliance.pipeline.inside: the stage run that started this container is gone; stopping",
              file=sys.stderr, flush=True)
        # the whole group, this process with it; PID 1 of a container is immune to a SIGKILL sent
        # from inside its namespace, so it then exits by itself (and the engine ends the container)
        os.killpg(0, signal.SIGKILL)
        os._exit(137)

    threading.Thread(target=watch, name="caller-tether", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
