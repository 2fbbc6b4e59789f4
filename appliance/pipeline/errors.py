"""Errors of the pipeline: each names the file or item at fault."""

from __future__ import annotations

from appliance.errors import ApplianceError
from appliance.exitcodes import Exit


class PipelineError(ApplianceError):
    """A pipeline stage cannot go on; ``path`` is the file or folder at fault."""

    exit_code = Exit.ANALYSIS

    def __init__(self, path: object, message: str):
        self.path, self.detail = str(path), message
        super().__init__(f"{path}: {message}")


class BadInput(PipelineError):
    """An input file or folder is unusable (corrupt FITS, no WCS, empty, schema-failing XML)."""

    exit_code = Exit.CHECKSUM


class UsageProblem(PipelineError):
    exit_code = Exit.USAGE
