"""``appliance batch``: one recipe over many inputs, each item its own run record."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.runtimes import runtime_names

EPILOG = """\
examples:
  appliance batch recipes/detect --inputs 'data/*.fits'
  appliance batch recipes/detect --inputs items.txt --scheduler tcp://127.0.0.1:8786 --json
  appliance batch recipes/detect --archive-query davs://archive:8443/projects/X/ --match '*.fits'
  appliance batch recipes/detect --archive-query 'davs://archive:8443/?project=LC9_001&start=2024-01-01'
  appliance batch recipes/detect --inputs 'data/*.fits' --slurm --workers 4 --runtime charliecloud

A re-run of the same batch runs only what is missing: finished items are cache hits.
"""


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "batch", help="run one recipe over many inputs on Dask (local, a scheduler, or Slurm)",
        description="Runs RECIPE once per input, each item with its own run record. The item replaces "
                    "the recipe's input (--input-name when it has several). Archive inputs are staged "
                    "in one bulk request per server before any run starts (the archive recalls them in "
                    "tape order) and released when the batch ends. Failed items are retried "
                    "(--retries); an item that needed a retry to succeed is 'flagged'. Results are "
                    "journaled as they land (BATCH/results.jsonl under the home): a kill loses no "
                    "finished item. Exit 0 when no item failed, 5 otherwise.",
        epilog=EPILOG)
    q.add_argument("recipe", type=Path, help="recipe directory")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--inputs", metavar="LIST|GLOB",
                     help="a glob ('data/*.fits', quote it) or a file with one path or URI per line")
    src.add_argument("--archive-query", metavar="COLLECTION[?SEARCH]",
                     help="every file under an archive collection, e.g. davs://host:port/projects/X/; "
                          "with a query string the archive's catalog search below it, e.g. "
                          "'davs://host:port/projects/?project=X&instrument=HBA'")
    q.add_argument("--match", default="*", help="with --archive-query: file name pattern (default *)")
    q.add_argument("--input-name", help="which recipe input the items replace (default: its only one)")
    where = q.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="an existing Dask scheduler")
    where.add_argument("--slurm", action="store_true", help="workers as Slurm jobs (dask-jobqueue)")
    q.add_argument("--slurm-partition", help="with --slurm: the partition (queue)")
    q.add_argument("--workers", type=int, help="local worker processes or Slurm jobs (default: cores)")
    q.add_argument("--retries", type=int, default=2, help="retries per failed item (default 2)")
    q.add_argument("--no-stage", action="store_true", help="do not bulk-stage archive inputs first")
    q.add_argument("--home", type=Path, help="run store + content store (default ~/.local/share/appliance)")
    q.add_argument("--runtime", choices=runtime_names(), help="container runtime of the workers")
    q.add_argument("--json", action="store_true", help="the summary as JSON on stdout")
    q.set_defaults(func=_batch)


def _batch(args: argparse.Namespace) -> int:
    from appliance.batch.engine import ClusterOptions, Journal, run_batch
    from appliance.batch.items import batch_root, derive, expand_inputs, input_name
    from appliance.batch.stage import archive_query, release_all, stage_all
    from appliance.config import Settings
    from appliance.errors import ConfigError, RunFailed
    from appliance.recipes.model import load_recipe

    if args.retries < 0 or (args.workers is not None and args.workers < 1):
        raise ConfigError("--retries must be >= 0 and --workers >= 1")
    settings = Settings.load(home=args.home, runtime=args.runtime)
    recipe = load_recipe(args.recipe)
    name = input_name(args.recipe, args.input_name)
    uris = archive_query(args.archive_query, args.match) if args.archive_query else expand_inputs(args.inputs)
    requests: dict[str, str] = {}
    if not args.no_stage:
        requests = stage_all(uris)
    root = batch_root(settings.home, args.recipe)
    from appliance.runs.runner import Runner

    base_lock = Runner(settings, on_log=lambda line: None).lock(args.recipe)  # once, for every item
    items = derive(args.recipe, root, name, uris, base_lock)
    slurm_options: dict[str, object] = {"log_directory": str(root / "slurm-logs")}
    if args.slurm_partition:
        slurm_options["queue"] = args.slurm_partition
    opts = ClusterOptions(scheduler=args.scheduler, slurm=args.slurm, workers=args.workers,
                          slurm_options=slurm_options)
    try:
        summary = run_batch(settings, recipe.name, items, Journal(root / "results.jsonl"), opts,
                            retries=args.retries, progress=not args.json and sys.stderr.isatty(),
                            staged=len(requests))
    finally:
        for line in release_all(requests):
            print(f"appliance: {line}", file=sys.stderr)
    print(summary.to_json() if args.json else summary.report())
    if not summary.ok:
        print(f"appliance: {summary.counts['failed']} of {len(items)} items failed", file=sys.stderr)
        return RunFailed.exit_code
    return 0
