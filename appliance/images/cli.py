"""``appliance images build|ensure|verify|save|load|list``.

Heavy modules (the Docker SDK) are imported inside the commands that need them, so that
`appliance --help` and a cache hit stay fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from appliance.config import Settings
from appliance.images.lock import ImagesLock


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "images", help="build, verify and preserve the pinned images",
        description=(
            "Pinned images live in images/<name>/ (spec.yaml for mmdebstrap bases, image.yaml + "
            "Dockerfile for derived images); their identities are in images/images.lock. "
            "Nothing is pulled from a registry."
        ),
    )
    isub = p.add_subparsers(dest="images_command", metavar="ACTION")
    isub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("names", nargs="*", help="image names (default: all)")
        q.add_argument("--json", action="store_true", help="machine-readable output")

    q = isub.add_parser("build", help="build (again) and update images.lock")
    common(q)
    q.set_defaults(func=lambda a: _checks(a, lambda m: m.ensure(a.names or None, force=True)))
    q = isub.add_parser("ensure", help="build only what is missing or changed (used by make)")
    common(q)
    q.set_defaults(func=lambda a: _checks(a, lambda m: m.ensure(a.names or None)))
    q = isub.add_parser(
        "verify", help="rebuild from the specs and say whether the locked identity was reproduced",
        description="Exit 0 when every image is identical or has identical layer contents; 1 otherwise.",
    )
    common(q)
    q.set_defaults(func=lambda a: _checks(a, lambda m: m.verify(a.names or None)))
    q = isub.add_parser("save", help="docker save the locked images (preservation; no registry needed)")
    common(q)
    q.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="directory for the tars")
    q.set_defaults(func=_save)
    q = isub.add_parser("load", help="load image tars written by `images save` or a bundle")
    q.add_argument("tars", nargs="+", type=Path)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_load)
    q = isub.add_parser("list", help="show the locked images")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_list)


def _checks(args: argparse.Namespace, action) -> int:  # type: ignore[no-untyped-def]
    from appliance.images.manage import ImageManager, checks_json

    checks = action(ImageManager(Settings.load()))
    if args.json:
        print(checks_json(checks))
    else:
        for c in checks:
            print(c.report())
    return 0 if all(c.ok for c in checks) else 1


def _save(args: argparse.Namespace) -> int:
    from appliance.images.manage import ImageManager

    paths = ImageManager(Settings.load()).save(args.names or None, args.output_dir)
    print(json.dumps([str(p) for p in paths]) if args.json else "\n".join(map(str, paths)))
    return 0


def _load(args: argparse.Namespace) -> int:
    from appliance.images.manage import ImageManager

    m = ImageManager(Settings.load())
    ids = [i for t in args.tars for i in m.runtime.load_image(t)]
    print(json.dumps(ids) if args.json else "\n".join(ids))
    return 0


def _list(args: argparse.Namespace) -> int:
    settings = Settings.load()
    lock = ImagesLock.load(settings.images_dir / "images.lock")
    if args.json:
        print(json.dumps({n: i.image_id for n, i in lock.images.items()}, indent=2))
    else:
        for n, i in sorted(lock.images.items()):
            print(f"{n:12} {i.image_id}  {i.tag}")
    return 0
