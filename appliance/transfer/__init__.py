"""Moving files between the appliance and the storage of a research infrastructure.

One seam (``base.TransferBackend``) with one backend per file (``gfal.py`` for gsiftp/ftp/davs/
https/root/srm through Debian's gfal2, ``http.py`` for plain HTTP(S)/WebDAV with requests,
``local.py`` for files); ``select.py`` picks the backend from the URL scheme and what is installed,
so callers never know which one runs. ``engine.Copier`` adds what every copy needs: end-to-end
checksums (adler32 by default, as in WLCG), retries with exponential backoff on transient errors,
resume where the protocol allows, parallel files, tqdm progress, and a destination that appears
under its final name only after the checksum matched. Results are values (``TransferResult``).
"""

from appliance.transfer.base import RemoteStat, TransferBackend
from appliance.transfer.credentials import Credentials
from appliance.transfer.engine import Copier, CopyOptions
from appliance.transfer.errors import (
    ChecksumUnavailable,
    NotFound,
    PermissionDenied,
    TransferError,
)
from appliance.transfer.result import BulkResult, TransferResult

__all__ = [
    "BulkResult",
    "ChecksumUnavailable",
    "Copier",
    "CopyOptions",
    "Credentials",
    "NotFound",
    "PermissionDenied",
    "RemoteStat",
    "TransferBackend",
    "TransferError",
    "TransferResult",
]
