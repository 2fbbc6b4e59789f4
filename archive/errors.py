"""Error types of the archive; each carries the path, request or field at fault.

``status`` is the HTTP status the server answers for it, so the protocol layer maps errors
without parsing messages; ``exit_code`` serves the CLI.
"""

from __future__ import annotations

from appliance.errors import ApplianceError, ChecksumMismatch
from appliance.exitcodes import Exit


class ArchiveError(ApplianceError):
    status = 500
    exit_code = Exit.INTERNAL


class PathError(ArchiveError):
    """An error about one namespace path: ``.path`` holds it, the message starts with it."""

    def __init__(self, path: str, why: str):
        self.path = path
        super().__init__(f"{path}: {why}")


class NotFound(PathError):
    status = 404
    exit_code = Exit.NOT_FOUND

    def __init__(self, path: str, what: str = "no such file or collection"):
        super().__init__(path, what)


class AlreadyExists(PathError):
    status = 405
    exit_code = Exit.USAGE

    def __init__(self, path: str):
        super().__init__(path, "already exists")


class Conflict(PathError):
    status = 409
    exit_code = Exit.USAGE


class NearlineOnly(PathError):
    """A GET of a file whose only copies are on tape: the client must stage it first.

    423 (Locked), not 409: davix maps 409 to EEXIST, and ``gfal-copy -f`` then deletes the
    destination and retries forever; 423 maps to EPERM and stops at once (checked with gfal2
    2.21.3). The body says what to do.
    """

    status = 423
    exit_code = Exit.REMOTE

    def __init__(self, path: str):
        super().__init__(
            path, "file is on tape only (NEARLINE); stage it first with the WLCG Tape REST API "
            "(POST /api/v1/stage, e.g. gfal-bringonline or 'archive stage'), then retry")


class BadPath(ArchiveError):
    status = 400
    exit_code = Exit.USAGE

    def __init__(self, path: str, why: str = "invalid path"):
        self.path = path
        super().__init__(f"{path!r}: {why}")


class BadRequest(ArchiveError):
    status = 400
    exit_code = Exit.USAGE


class Forbidden(ArchiveError):
    status = 403
    exit_code = Exit.PERMISSION


class Unauthorized(ArchiveError):
    status = 401
    exit_code = Exit.PERMISSION


class DigestMismatch(ArchiveError):
    status = 400
    exit_code = Exit.CHECKSUM

    def __init__(self, path: str, algorithm: str, expected: str, actual: str):
        self.path, self.algorithm, self.expected, self.actual = path, algorithm, expected, actual
        super().__init__(
            f"{path}: {algorithm} digest mismatch: client sent {expected}, content is {actual}"
        )


class TapeError(ArchiveError):
    """A tape read or write failed (drive fault or bad record); the engine retries elsewhere."""

    def __init__(self, tape: str, why: str, drive: str | None = None):
        self.tape, self.drive = tape, drive
        super().__init__(f"tape {tape}{' in drive ' + drive if drive else ''}: {why}")


class ConfigError(ArchiveError):
    exit_code = Exit.USAGE


class ChecksumError(ChecksumMismatch, ArchiveError):
    """Bytes do not match their recorded checksum (disk file changed, tape record damaged):
    the appliance's ChecksumMismatch (message, exit code 4) inside the archive's hierarchy."""
