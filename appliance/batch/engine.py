"""Drive a batch on Dask distributed and journal every result the moment it lands.

Where it runs: an embedded ``LocalCluster`` (one single-threaded worker process per core: the
engine does the parallel work, and a process per worker keeps one stuck item from blocking
the others), an existing scheduler (``tcp://HOST:PORT``), or Slurm through dask-jobqueue's
``SLURMCluster`` (each job one worker). What survives a kill: every finished item has its run
record and outputs in the run store (written by the worker before it answers) and a line in
``results.jsonl`` (fsynced); a re-run derives the same item recipes, so finished items are
cache hits and only the missing ones run. Dask itself re-runs the items of a worker that died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.batch.items import Item
from appliance.batch.summary import BatchSummary, ItemResult
from appliance.batch.worker import run_item
from appliance.config import Settings
from appliance.errors import ConfigError


@dataclass
class ClusterOptions:
    scheduler: str | None = None  # tcp://HOST:PORT of an existing cluster
    slurm: bool = False
    workers: int | None = None  # LocalCluster workers / Slurm jobs (default: cores / 2 jobs)
    slurm_options: dict[str, Any] = field(default_factory=dict)  # passed to SLURMCluster
    worker_timeout: float = 300.0


@contextlib.contextmanager
def open_client(opts: ClusterOptions) -> Iterator[Any]:
    """A distributed Client on the chosen cluster; the cluster is closed on exit."""
    from distributed import Client, LocalCluster

    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if opts.scheduler:
        if not opts.scheduler.startswith(("tcp://", "tls://")):
            raise ConfigError(f"--scheduler {opts.scheduler}: expected tcp://HOST:PORT or tls://HOST:PORT")
        try:
            client = Client(opts.scheduler, timeout=30)
        except OSError as err:
            from appliance.errors import EngineUnavailable

            raise EngineUnavailable(f"no Dask scheduler answers at {opts.scheduler}: {err}") from err
        with client:
            yield client
        return
    n = opts.workers or (os.cpu_count() or 1)
    if opts.slurm:
        from dask_jobqueue import SLURMCluster

        kw: dict[str, Any] = {"cores": 1, "processes": 1, "memory": "2GB", "walltime": "01:00:00",
                              "scheduler_options": {"host": "127.0.0.1", "dashboard_address": None},
                              "interface": None, "python": os.sys.executable, "silence_logs": "error"}
        kw.update(opts.slurm_options)
        cluster = SLURMCluster(**kw)
        cluster.scale(jobs=n)
    else:
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=opts.worker_timeout)
        yield client


class Journal:
    """``results.jsonl``: one line per finished item, appended and fsynced (a kill loses none)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, result: ItemResult) -> None:
        from dataclasses import asdict

        with open(self.path, "a") as f:
            f.write(json.dumps({"at": time.time(), **asdict(result)}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line cut by a kill mid-write
                out.append(json.loads(line))
        return out


def run_batch(settings: Settings, recipe: str, items: list[Item], journal: Journal, opts: ClusterOptions,
              retries: int = 2, progress: bool = True, staged: int = 0,
              on_result: Callable[[ItemResult], None] | None = None) -> BatchSummary:
    from distributed import as_completed
    from tqdm import tqdm

    start = time.monotonic()
    results: list[ItemResult] = []
    with open_client(opts) as client:
        futures = [client.submit(run_item, settings, it.index, it.uri, str(it.directory), retries,
                                 key=f"item-{it.index}-{it.directory.name}", pure=False)
                   for it in items]
        with tqdm(total=len(futures), disable=not progress, unit="item", desc=recipe) as bar:
            for fut in as_completed(futures):
                try:
                    res = ItemResult.from_dict(fut.result())
                except Exception as err:  # noqa: BLE001 - a worker lost too often (KilledWorker)
                    idx = futures.index(fut)
                    it = items[idx]
                    res = ItemResult(it.index, it.uri, "failed", error=f"{type(err).__name__}: {err}",
                                     exit_code=1)
                journal.append(res)
                results.append(res)
                if on_result:
                    on_result(res)
                bar.update(1)
                bar.set_postfix(failed=sum(r.state == "failed" for r in results))
    return BatchSummary(recipe, results, time.monotonic() - start, staged)
