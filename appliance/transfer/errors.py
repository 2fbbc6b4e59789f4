"""Transfer error types: each names the URL at fault and says whether a retry can help.

``transient`` is the only thing the retry loop looks at: connection refused/reset, timeouts and
5xx answers are worth another attempt; a missing file or a refused credential is not.
"""

from __future__ import annotations

from appliance.errors import ApplianceError
from appliance.exitcodes import Exit


class TransferError(ApplianceError):
    """A transfer operation failed; ``url`` is the endpoint at fault."""

    exit_code = Exit.REMOTE

    def __init__(self, url: str, message: str, transient: bool = False):
        self.url, self.detail, self.transient = url, message, transient
        super().__init__(f"{url}: {message}")


class NotFound(TransferError):
    exit_code = Exit.NOT_FOUND

    def __init__(self, url: str, message: str = "no such file or directory"):
        super().__init__(url, message, transient=False)


class PermissionDenied(TransferError):
    exit_code = Exit.PERMISSION

    def __init__(self, url: str, message: str = "permission denied"):
        super().__init__(url, message, transient=False)


class ChecksumUnavailable(TransferError):
    """Neither the caller nor the server could give the checksum needed to verify a copy."""

    exit_code = Exit.CHECKSUM

    def __init__(self, url: str, algorithm: str):
        self.algorithm = algorithm
        super().__init__(
            url,
            f"the server does not provide a {algorithm} checksum; pass --checksum ALGO:VALUE, "
            "choose another --checksum-type, or --no-verify to copy without verification",
        )


class UnsupportedURL(TransferError):
    exit_code = Exit.USAGE

    def __init__(self, url: str, message: str):
        super().__init__(url, message, transient=False)
