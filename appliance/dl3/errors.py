"""Errors of the DL3 converter: each names the file and the column (or keyword) at fault."""

from __future__ import annotations

from appliance.errors import ApplianceError
from appliance.exitcodes import Exit


class DL3InputError(ApplianceError):
    """A DL2 or MC input cannot be converted: missing column, wrong unit, no events, no sim info."""

    exit_code = Exit.USAGE

    def __init__(self, path: object, message: str, column: str | None = None):
        self.path, self.column, self.detail = str(path), column, message
        what = f" column '{column}':" if column else ""
        super().__init__(f"{path}:{what} {message}")


class ConformanceError(ApplianceError):
    """Our own DL3 output does not conform to GADF (raised by ``check --strict`` callers)."""

    exit_code = Exit.NOT_REPRODUCED
