"""The one exit-code table of every command line of the product: ``appliance``, ``archive`` and
``dataclient``. Error types carry one of these (``ApplianceError.exit_code``); every ``--help``
prints ``HELP``; the README repeats it; ``tests/test_exit_codes.py`` runs bad inputs through the
real CLIs against it.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    ENGINE = 3
    CHECKSUM = 4
    ANALYSIS = 5
    NOT_REPRODUCED = 6
    NOT_FOUND = 7
    PERMISSION = 8
    REMOTE = 9
    PIPE = 141


MEANING = {
    Exit.OK: "success",
    Exit.INTERNAL: "unexpected internal error (a bug: please report it)",
    Exit.USAGE: "usage: a bad option, config, recipe, spec or lock (file, line, field named), or a conflict",
    Exit.ENGINE: "container engine, image, or the packages to rebuild an image, not available",
    Exit.CHECKSUM: "an input or a copy does not match its checksum, or no checksum to verify it with",
    Exit.ANALYSIS: "the analysis failed (non-zero exit, out of memory, missing output, no such command)",
    Exit.NOT_REPRODUCED: "a replay or an image rebuild did not reproduce",
    Exit.NOT_FOUND: "no such file, run, URL or archive path",
    Exit.PERMISSION: "credentials missing, expired or refused; permission denied (local or remote)",
    Exit.REMOTE: "a remote service, transfer or tape recall failed after its retries",
    Exit.PIPE: "the reader of the output went away (`| head`): stopped quietly",
}

HELP = "exit codes:\n" + "\n".join(f"  {int(code):>3}  {text}" for code, text in MEANING.items())
