"""``appliance images build|ensure|verify|save|load|list``.

Heavy modules (the Docker SDK) are imported inside the commands that need them, so that
`appliance --help` and a cache hit stay fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from appliance.config import Settings
from appliance.exitcodes import Exit
from appliance.images.lock import ImagesLock

EPILOG = """\
where identities come from:
  images/images.lock            the tracked lock: image IDs and every .deb (sha256, size, pool path)
  <image_store>/packages/       the package store: the .deb files of every build, by sha256
  <image_store>/images.lock.local
                                local stand-ins, for locked identities this machine cannot reproduce
  image_store defaults to ~/.local/share/appliance/images (setting image_store, APPLIANCE_IMAGE_STORE);
  snapshot_mirror (setting or APPLIANCE_SNAPSHOT_MIRROR) names a dated snapshot mirror template,
  e.g. http://snapshot.example.org/archive/{archive}/{timestamp}

typical use:
  appliance images ensure                      # what make does: present, else rebuilt, else a stand-in
  appliance images export-packages -o pk.tar   # keep everything a rebuild needs, in one verified file
  appliance images export-packages -o lta://images/pk-2026-12.tar   # ... or in the archive
  appliance images rebuild --offline --packages pk.tar   # no mirror, no network: the locked IDs
  appliance images verify --from store         # which guarantee holds, per image
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "images", help="build, verify and preserve the pinned images",
        description=(
            "Pinned images live in images/<name>/ (spec.yaml for mmdebstrap bases, image.yaml + "
            "Dockerfile for derived images); their identities are in images/images.lock. "
            "Nothing is pulled from a registry, and every .deb a build used is kept."
        ),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    isub = p.add_subparsers(dest="images_command", metavar="ACTION")
    isub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("names", nargs="*", help="image names (default: all; bases are included)")
        q.add_argument("--json", action="store_true", help="machine-readable output")

    q = isub.add_parser(
        "build", help="build again from today's mirror (the tracked lock changes only with --update-lock)",
        description="Rebuild from today's mirror, filling the package store. Without --update-lock a "
                    "result that differs from images.lock becomes a local stand-in.")
    common(q)
    q.add_argument("--update-lock", action="store_true",
                   help="write the new identities into images/images.lock (for developers re-locking)")
    q.set_defaults(func=lambda a: _checks(a, lambda m: m.ensure(a.names or None, force=True,
                                                                update_lock=a.update_lock)))
    q = isub.add_parser(
        "ensure", help="make the images present, preferring the exact locked identity (used by make)",
        description="Per image: present; else rebuilt from the package store (or a snapshot mirror); "
                    "else from today's mirror, which reproduces the lock or gives a local stand-in "
                    "with a report of what moved. Never edits images/images.lock.")
    common(q)
    q.add_argument("--offline", action="store_true", help="the package store only; fail if it lacks packages")
    q.set_defaults(func=lambda a: _checks(a, lambda m: m.ensure(a.names or None, offline=a.offline)))
    q = isub.add_parser(
        "rebuild", help="rebuild the locked images from the package store alone (--offline)",
        description="Rebuild every (named) locked image from the package store, with no mirror and "
                    "the base built in a network namespace of its own; the image IDs must be the "
                    "locked ones. --packages first loads a file of `export-packages` (a path or an "
                    "lta://, davs://, https:// URL) into the store, checking every file.")
    common(q)
    q.add_argument("--offline", action="store_true", required=True,
                   help="required: say it (an online rebuild is `images build`)")
    q.add_argument("--packages", metavar="FILE|URL", help="package file from `images export-packages`")
    q.set_defaults(func=_rebuild)
    q = isub.add_parser(
        "verify", help="rebuild without cache and say which guarantee held; changes no lock",
        description="Verdicts: identical from the package store, identical from the mirror, same "
                    "content (layers equal, config differs), or differs (with the packages that "
                    "moved). Exit 0 when every image held, 6 otherwise.")
    common(q)
    q.add_argument("--from", dest="source", choices=("auto", "store", "mirror"), default="auto",
                   help="where the packages come from (auto: the store if it has them all)")
    q.set_defaults(func=lambda a: _checks(a, lambda m: m.verify(a.names or None, a.source)))
    q = isub.add_parser(
        "export-packages", help="specs + lock + every locked .deb as one verified file (or into the archive)")
    common(q)
    q.add_argument("-o", "--output", required=True, metavar="FILE|URL",
                   help="a file, or an lta://, davs:// or https:// URL (copied with a verified checksum)")
    q.set_defaults(func=_export)
    q = isub.add_parser("import-packages", help="load a file of `export-packages` into the package store")
    q.add_argument("source", metavar="FILE|URL")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_import)
    q = isub.add_parser("save", help="docker save the images (preservation; no registry needed)")
    common(q)
    q.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="directory for the tars")
    q.set_defaults(func=_save)
    q = isub.add_parser("load", help="load image tars written by `images save` or a bundle")
    q.add_argument("tars", nargs="+", type=Path)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_load)
    q = isub.add_parser("list", help="show the locked images and any local stand-ins")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_list)


def _checks(args: argparse.Namespace, action) -> int:  # type: ignore[no-untyped-def]
    from appliance.images.manage import ImageManager, checks_json

    checks = action(ImageManager(Settings.load()))
    if args.json:
        print(checks_json(checks))
    else:
        for c in checks:
            print(c.report(), flush=True)
    return 0 if all(c.ok for c in checks) else Exit.NOT_REPRODUCED


def _rebuild(args: argparse.Namespace) -> int:
    from appliance.images.manage import ImageManager

    def action(m: ImageManager):  # type: ignore[no-untyped-def]
        if args.packages:
            m.import_packages(args.packages)
        return m.ensure(args.names or None, force=True, offline=True)

    return _checks(args, action)


def _export(args: argparse.Namespace) -> int:
    from appliance.images.manage import ImageManager

    summary = ImageManager(Settings.load()).export_packages(args.output, args.names or None)
    print(json.dumps(summary.__dict__) if args.json else summary.report())
    return 0


def _import(args: argparse.Namespace) -> int:
    from appliance.images.manage import ImageManager

    lock = ImageManager(Settings.load()).import_packages(args.source)
    summary = {"source": args.source, "images": {n: i.image_id for n, i in lock.images.items()},
               "packages": len({d.sha256 for i in lock.images.values() for d in i.debs})}
    print(json.dumps(summary) if args.json else
          f"{args.source}: {summary['packages']} package(s) of {', '.join(sorted(lock.images))} in the store")
    return 0


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
    from appliance.images.lock import local_lock_path

    settings = Settings.load()
    lock = ImagesLock.load(settings.images_dir / "images.lock")
    local = ImagesLock.load(local_lock_path(settings.image_store))
    rows = {n: {"image_id": i.image_id, "local": (local.images[n].image_id if n in local.images
                                                   and local.images[n].replaces == i.image_id else None)}
            for n, i in lock.images.items()}
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for n, row in sorted(rows.items()):
            extra = f"  (here: local stand-in {row['local']})" if row["local"] else ""
            print(f"{n:12} {row['image_id']}{extra}")
    return 0
