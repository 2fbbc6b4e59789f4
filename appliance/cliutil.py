"""The shell every console script shares (``appliance``, ``archive``, ``dataclient``).

Logging level from ``--verbose``, then the command; an ``ApplianceError`` becomes one line on
stderr and the error's exit code, an interrupt exit code 130. ``on_error`` lets a command add a
machine-readable form of the error (``dataclient --json``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from appliance.errors import ApplianceError


def run_command(prog: str, args: argparse.Namespace,
                on_error: Callable[[ApplianceError], None] | None = None) -> int:
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader went away (`... --json | head`): stop quietly, as coreutils do; point stdout
        # at /dev/null so the interpreter's final flush does not fail a second time
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe
    except ApplianceError as err:
        if on_error is not None:
            on_error(err)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
