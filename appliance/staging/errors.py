"""Staging error types (exit code 8), naming the endpoint or request at fault."""

from __future__ import annotations

from appliance.errors import ApplianceError
from appliance.exitcodes import Exit


class StagingError(ApplianceError):
    exit_code = Exit.REMOTE

    def __init__(self, where: str, message: str, transient: bool = False):
        self.where, self.detail, self.transient = where, message, transient
        super().__init__(f"{where}: {message}")


class TapeApiUnavailable(StagingError):
    """The server has no (working) WLCG Tape REST API: a disk-only endpoint."""


class StagingFailed(StagingError):
    """A stage request ended without bringing (some of) its files online."""

    def __init__(self, where: str, message: str, paths: list[str] | None = None):
        self.paths = paths or []
        super().__init__(where, message)
