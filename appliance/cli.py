"""``appliance`` command line: one sub-command module per concern, each with ``register()``.

A module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its parsers and
sets ``func`` (called with the parsed args, returns an exit code). Errors of type
``ApplianceError`` become one line on stderr and the error's exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from appliance import __version__
from appliance.errors import ApplianceError

COMMAND_MODULES = [
    "appliance.images.cli",
    "appliance.runs.cli",
    "appliance.export.cli",
    "appliance.qserv.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description=(
            "Reproducible containerised analyses (recipes) with pinned images, and the client side "
            "of the Long Term Archive. Typical flow: appliance lock DIR; appliance run DIR; "
            "appliance replay RUN; appliance export RUN --bundle FILE.tar."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ApplianceError as err:
        print(f"appliance: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("appliance: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
