"""``appliance export RUN --ro-crate DIR | --bundle FILE.tar`` and ``appliance import FILE.tar``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from appliance.config import Settings
from appliance.errors import ConfigError
from appliance.runs.record import RunStore
from appliance.runtimes import runtime_names
from appliance.store import ContentStore


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "export", help="write a run as an RO-Crate and/or a self-contained bundle",
        description="--ro-crate DIR: a Workflow Run RO-Crate (inputs, outputs with sha256, image ID, replay "
                    "verdict). --bundle FILE.tar: image (docker save), inputs, outputs, recipe snapshot and "
                    "record; `appliance import` + `appliance replay` work from it with no registry or network.",
    )
    q.add_argument("run_id", metavar="RUN")
    q.add_argument("--ro-crate", type=Path, metavar="DIR")
    q.add_argument("--bundle", type=Path, metavar="FILE.tar")
    q.add_argument("--home", type=Path)
    q.add_argument("--runtime", choices=runtime_names())
    q.add_argument("--json", action="store_true", help="print the written paths as JSON")
    q.set_defaults(func=_export)
    q = sub.add_parser("import", help="import a bundle: image, objects and run record (verified)")
    q.add_argument("bundle", type=Path)
    q.add_argument("--home", type=Path)
    q.add_argument("--runtime", choices=runtime_names())
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_import)


def _parts(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    s = Settings.load(home=args.home, runtime=args.runtime)
    return s, ContentStore(s.store_root), RunStore(s.home)


def _export(args: argparse.Namespace) -> int:
    from appliance.export.bundle import export_bundle
    from appliance.export.rocrate_export import export_rocrate
    from appliance.runtimes import get_runtime

    if not args.ro_crate and not args.bundle:
        raise ConfigError("export: give --ro-crate DIR and/or --bundle FILE.tar")
    settings, store, runs = _parts(args)
    record = runs.load(args.run_id)
    written: dict[str, str] = {}
    if args.ro_crate:
        written["ro_crate"] = str(export_rocrate(record, runs, store, args.ro_crate))
    if args.bundle:
        written["bundle"] = str(export_bundle(record, store, get_runtime(settings.runtime), args.bundle,
                                                   progress=not args.json))
    if args.json:
        print(json.dumps({"run_id": record.run_id, **written}))
    else:
        for kind, path in written.items():
            print(f"{kind}: {path}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from appliance.export.bundle import import_bundle
    from appliance.runtimes import get_runtime

    settings, store, runs = _parts(args)
    record = import_bundle(args.bundle, store, runs, get_runtime(settings.runtime), progress=not args.json)
    if args.json:
        print(json.dumps({"run_id": record.run_id, "image_id": record.image["image_id"]}))
    else:
        print(f"imported run {record.run_id} (image {record.image['image_id']}); "
              f"replay with: appliance replay {record.run_id}")
    return 0
