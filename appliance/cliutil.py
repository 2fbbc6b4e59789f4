"""The shell every console script shares (``appliance``, ``archive``, ``dataclient``).

Logging level from ``--verbose``, then the command; an ``ApplianceError`` becomes one line on
stderr and the error's exit code, an interrupt exit code 130. ``on_error`` lets a command add a
machine-readable form of the error (``dataclient --json``).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Callable

from appliance.errors import ApplianceError
from appliance.exitcodes import HELP as EXIT_HELP
from appliance.exitcodes import Exit

OS_EXIT = {errno.EACCES: Exit.PERMISSION, errno.EPERM: Exit.PERMISSION, errno.EROFS: Exit.PERMISSION,
           errno.ENOENT: Exit.NOT_FOUND, errno.ENOTDIR: Exit.NOT_FOUND, errno.EISDIR: Exit.USAGE,
           errno.EEXIST: Exit.USAGE, errno.ENOSPC: Exit.INTERNAL}


class HelpFormatter(argparse.HelpFormatter):
    """Wraps prose as argparse does, but keeps text that has line breaks (tables, examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class OneLineErrors(argparse.ArgumentParser):
    """argparse, except that a bad option is ONE line (argparse prints the whole usage first, ten
    lines for `qserv partition`), naming the command and where to read more; exit 2 as before."""

    def error(self, message: str):  # type: ignore[override]  # noqa: ANN201 - NoReturn
        self.exit(Exit.USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def teach_exit_codes(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every parser and sub-parser ends its --help with the product's one exit-code table and
    reports a bad option in one line (``OneLineErrors``)."""
    if type(parser) is argparse.ArgumentParser:
        parser.__class__ = OneLineErrors
    parser.formatter_class = HelpFormatter
    if EXIT_HELP not in (parser.epilog or ""):
        parser.epilog = f"{parser.epilog.rstrip()}\n\n{EXIT_HELP}\n" if parser.epilog else f"{EXIT_HELP}\n"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                teach_exit_codes(sub)
    return parser


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
        return Exit.PIPE  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe
    except ApplianceError as err:
        if on_error is not None:
            on_error(err)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # a local file the command was given or writes: one line, a code by errno
        code = OS_EXIT.get(err.errno or 0, Exit.INTERNAL)
        wrapped = ApplianceError(f"{err.filename}: {err.strerror}" if err.filename else str(err))
        wrapped.exit_code = code
        if on_error is not None:
            on_error(wrapped)
        print(f"{prog}: error: {wrapped}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
