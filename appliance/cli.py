"""``appliance`` command line: one sub-command module per concern, each with ``register()``.

A module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its parsers and
sets ``func`` (called with the parsed args, returns an exit code). Errors of type
``ApplianceError`` become one line on stderr and the error's exit code (``appliance.cliutil``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from appliance import __version__
from appliance.cliutil import run_command, teach_exit_codes

# module -> the top-level commands it registers. Only the module owning the command on the
# command line is imported (keeps `appliance run` on a cache hit fast); --help imports all.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "appliance.images.cli": ("images",),
    "appliance.runs.cli": ("check", "lock", "run", "replay", "runs"),
    "appliance.export.cli": ("export", "import"),
    "appliance.qserv.cli": ("qserv",),
    "appliance.cluster.cli": ("cluster",),
    "appliance.dl3.cli": ("dl3",),
    "appliance.batch.cli": ("batch",),
    "appliance.pipeline.cli": ("pipeline",),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
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
    words = [a for a in (argv or []) if not a.startswith("-")]
    wanted = [m for m, cmds in COMMAND_MODULES.items() if words and words[0] in cmds]
    for name in wanted or COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return teach_exit_codes(parser)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_command("appliance", build_parser(argv).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
