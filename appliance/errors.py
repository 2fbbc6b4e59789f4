"""Error types of the appliance.

Every error carries the file, field, URL or object at fault, so the CLI can print one clear line
and pick a meaningful exit code (``exit_code``) without parsing messages.
"""

from __future__ import annotations

from appliance.exitcodes import Exit


class ApplianceError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user."""

    exit_code = Exit.INTERNAL


def yaml_problem(path: object, err: Exception) -> str:
    """A YAML (or decoding) error as one line: ``FILE:LINE: not valid YAML: PROBLEM``."""
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{where}: not valid YAML: {problem}"


class ConfigError(ApplianceError):
    exit_code = Exit.USAGE


class RecipeError(ApplianceError):
    """A recipe (or its lock) is malformed; the message names file, line and field."""

    exit_code = Exit.USAGE

    def __init__(self, path: str, message: str, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field, self.detail = path, line, field, message
        where = f"{path}:{line}" if line else path
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")


class EngineUnavailable(ApplianceError):
    exit_code = Exit.ENGINE


class ImageMissing(ApplianceError):
    exit_code = Exit.ENGINE


RESTORE_WAYS = (
    "`appliance import BUNDLE` (a run bundle carries its image), "
    "`appliance images load TAR` (from `images save`), or `appliance images rebuild --offline "
    "--packages FILE` (from `images export-packages`); or `appliance images ensure` to build "
    "local stand-ins from today's mirror"
)
RESTORE_ADVICE = f"to get the exact locked images back: {RESTORE_WAYS}"


class ChecksumMismatch(ApplianceError):
    """Content does not match the checksum that was recorded or announced for it."""

    exit_code = Exit.CHECKSUM

    def __init__(self, what: str, expected: str, actual: str):
        self.what, self.expected, self.actual = what, expected, actual
        super().__init__(f"checksum mismatch for {what}: expected {expected}, got {actual}")


class InputError(ApplianceError):
    exit_code = Exit.CHECKSUM


class RunFailed(ApplianceError):
    """The analysis container ran but did not succeed (non-zero exit, OOM kill, missing output)."""

    exit_code = Exit.ANALYSIS

    def __init__(self, message: str, run_id: str | None = None):
        self.run_id = run_id
        super().__init__(message + (f" (run record: {run_id})" if run_id else ""))


class NotReproduced(ApplianceError):
    exit_code = Exit.NOT_REPRODUCED


class NotFoundError(ApplianceError):
    """A local file, run or path the user named does not exist."""

    exit_code = Exit.NOT_FOUND


class RunNotFound(ApplianceError):
    exit_code = Exit.NOT_FOUND
