"""``appliance check|lock|run|replay|runs``: the recipe life cycle."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from appliance.config import Settings
from appliance.errors import NotReproduced
from appliance.recipes.model import load_recipe
from appliance.runs.runner import Runner
from appliance.runtimes import runtime_names


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(home=getattr(args, "home", None), runtime=getattr(args, "runtime", None))


def _runner(args: argparse.Namespace) -> Runner:
    quiet = getattr(args, "json", False) or getattr(args, "quiet", False)
    return Runner(_settings(args), on_log=(lambda line: None) if quiet else None)


def register(sub: argparse._SubParsersAction) -> None:
    def common(q: argparse.ArgumentParser, runtime: bool = True) -> None:
        q.add_argument("--home", type=Path, help="run store + content store (default ~/.local/share/appliance)")
        if runtime:
            q.add_argument("--runtime", choices=runtime_names(),
                           help="container runtime (default docker; charliecloud runs without root)")
        q.add_argument("--json", action="store_true", help="machine-readable result on stdout")

    q = sub.add_parser("check", help="find everything wrong with a recipe that can be found without running it",
                       description="Validate DIR/recipe.yaml: the schema, unique keys and outputs, "
                                   "regular expressions, limits, a locked image name, local inputs "
                                   "that exist, known URI schemes. Errors name the file, line and "
                                   "field; exit 2.")
    q.add_argument("recipe", type=Path, help="recipe directory")
    q.set_defaults(func=_check)

    q = sub.add_parser("lock", help="pin the recipe's image ID and input checksums into recipe.lock",
                       description="Resolves `image` to an image ID through images/images.lock and every "
                                   "input to its sha256 (fetching it into the content store); writes recipe.lock.")
    q.add_argument("recipe", type=Path)
    common(q, runtime=False)
    q.set_defaults(func=_lock)

    q = sub.add_parser(
        "run", help="run a recipe hermetically (or reuse an identical earlier run)",
        description="Runs the recipe in its locked image with network none, a read-only root, inputs at "
                    "/input (ro), the recipe at /recipe (ro) and /output as the only writable mount. "
                    "When the cache key (image, command, params, env, code, inputs) matches an earlier "
                    "successful run, its outputs are reused unless --force. Exit codes: 0 ok, 2 bad recipe, "
                    "3 engine/image problem, 4 input/checksum problem, 5 the analysis failed.",
    )
    q.add_argument("recipe", type=Path)
    q.add_argument("--force", action="store_true", help="run even when an identical run is cached")
    q.add_argument("-o", "--output-dir", type=Path, help="also copy the outputs here")
    q.add_argument("-q", "--quiet", action="store_true", help="do not stream the container log")
    common(q)
    q.set_defaults(func=_run)

    q = sub.add_parser(
        "replay", help="re-run a recorded run and compare outputs (exit 0 only when reproduced)",
        description="Re-runs RUN with its recorded image ID, input bytes and recipe snapshot, then compares "
                    "each output by its policy (sha256, fits, text, ignore). Exit 0: identical or within "
                    "tolerance; 6: differs.",
    )
    q.add_argument("run_id", metavar="RUN")
    q.add_argument("-q", "--quiet", action="store_true")
    common(q)
    q.set_defaults(func=_replay)

    q = sub.add_parser("runs", help="list and inspect run records")
    rsub = q.add_subparsers(dest="runs_command", metavar="ACTION")
    rsub.required = True
    r = rsub.add_parser("list", help="all runs")
    common(r, runtime=False)
    r.set_defaults(func=_list)
    r = rsub.add_parser("show", help="print a run record (JSON)")
    r.add_argument("run_id", metavar="RUN")
    common(r, runtime=False)
    r.set_defaults(func=_show)
    r = rsub.add_parser("outputs", help="copy a run's outputs to a directory")
    r.add_argument("run_id", metavar="RUN")
    r.add_argument("dest", type=Path)
    common(r, runtime=False)
    r.set_defaults(func=_outputs)
    r = rsub.add_parser(
        "diff", help="why two runs differ: which cache-key part, which output files",
        description="Takes the cache keys of RUN_A and RUN_B apart (image, command, params, env, code "
                    "snapshot with the files that differ, each input) and compares their outputs with "
                    "RUN_A's replay policies (sha256, fits, text, ignore). Exit 0 when the key is the "
                    "same and the outputs reproduce, 6 otherwise.")
    r.add_argument("run_a", metavar="RUN_A")
    r.add_argument("run_b", metavar="RUN_B")
    common(r, runtime=False)
    r.set_defaults(func=_diff)
    r = rsub.add_parser(
        "gc", help="remove old runs (keep the last N and pinned ones) and the store objects only they used",
        description="Keeps the N most recent runs, every pinned run (`runs pin`), runs still running and "
                    "the originals of kept replays; removes the others, their cache entries and the "
                    "store objects (inputs, outputs, recipe snapshots) no kept run refers to. "
                    "--dry-run shows the plan and touches nothing.")
    r.add_argument("--keep-last", type=int, default=20, metavar="N", help="runs to keep (default 20)")
    r.add_argument("-n", "--dry-run", action="store_true", help="show what would be removed")
    common(r, runtime=False)
    r.set_defaults(func=_gc)
    for verb, pinned in (("pin", True), ("unpin", False)):
        r = rsub.add_parser(verb, help=f"{'protect a run from' if pinned else 'let'} `runs gc`"
                                      + ("" if pinned else " remove a run again"))
        r.add_argument("run_id", metavar="RUN")
        common(r, runtime=False)
        r.set_defaults(func=_pin, pinned=pinned)


def _check(args: argparse.Namespace) -> int:
    from appliance.config import Settings
    from appliance.recipes.check import check_recipe

    recipe = load_recipe(args.recipe)
    check_recipe(recipe, Settings.load())
    print(f"{recipe.path}: valid recipe '{recipe.name}'")
    return 0


def _lock(args: argparse.Namespace) -> int:
    lock = _runner(args).lock(args.recipe)
    if args.json:
        print(json.dumps(lock.to_dict(), indent=2))
    else:
        print(f"locked {lock.recipe}: image {lock.image_id}")
        for i in lock.inputs:
            print(f"  input {i.name}: sha256 {i.sha256} ({i.size} bytes)")
    return 0


def _export_outputs(runner: Runner, run_id: str, dest: Path) -> None:
    record = runner.runs.load(run_id)
    for o in record.outputs:
        runner.store.export(o.sha256, dest / o.name)


def _run(args: argparse.Namespace) -> int:
    runner = _runner(args)
    outcome = runner.run(args.recipe, force=args.force)
    if args.output_dir:
        _export_outputs(runner, outcome.record.run_id, args.output_dir)
    if args.json:
        print(json.dumps({"run_id": outcome.record.run_id, "cache_hit": outcome.cache_hit,
                          "state": outcome.record.state,
                          "outputs": {o.name: o.sha256 for o in outcome.record.outputs}}, indent=2))
    else:
        print(outcome.report())
    return 0


def _replay(args: argparse.Namespace) -> int:
    from appliance.runs.replay import replay

    verdict, new = replay(_runner(args), args.run_id)
    print(verdict.to_json() if args.json else verdict.report())
    if not verdict.ok:
        if not args.json:
            print(f"appliance: replay record: {new.run_id}", file=sys.stderr)
        return NotReproduced.exit_code
    return 0


def _list(args: argparse.Namespace) -> int:
    runner = _runner(args)
    records = runner.runs.list()
    if args.json:
        print(json.dumps([{"run_id": r.run_id, "recipe": r.recipe["name"], "state": r.state,
                           "replay_of": r.replay_of, "verdict": (r.verdict or {}).get("status")}
                          for r in records], indent=2))
    else:
        for r in records:
            extra = f" replay of {r.replay_of}: {(r.verdict or {}).get('status')}" if r.replay_of else ""
            print(f"{r.run_id}  {r.state:9}{extra}")
    return 0


def _show(args: argparse.Namespace) -> int:
    print(json.dumps(_runner(args).runs.load(args.run_id).to_dict(), indent=2))
    return 0


def _outputs(args: argparse.Namespace) -> int:
    _export_outputs(_runner(args), args.run_id, args.dest)
    print(args.dest)
    return 0


def _diff(args: argparse.Namespace) -> int:
    from appliance.runs.diff import diff_runs

    runner = _runner(args)
    d = diff_runs(runner.runs.load(args.run_a), runner.runs.load(args.run_b), runner.store)
    print(d.to_json() if args.json else d.report())
    return 0 if d.ok else NotReproduced.exit_code


def _gc(args: argparse.Namespace) -> int:
    from appliance.errors import ConfigError
    from appliance.runs.gc import collect

    if args.keep_last < 0:
        raise ConfigError("--keep-last must be >= 0")
    runner = _runner(args)
    plan = collect(runner.runs, runner.store, args.keep_last, dry_run=args.dry_run)
    print(plan.to_json() if args.json else plan.report())
    return 0


def _pin(args: argparse.Namespace) -> int:
    from appliance.runs.gc import pin

    run_id = pin(_runner(args).runs, args.run_id, args.pinned)
    print(f"{'pinned' if args.pinned else 'unpinned'} {run_id}")
    return 0
