"""Bringing files from tape to disk through the WLCG Tape REST API, and copying them as they land.

``client.StagingClient`` speaks only the documented API (discovery at
``/.well-known/wlcg-tape-rest-api``, stage, stage status, cancel, delete, release, archiveinfo),
so it works with our archive server, dCache, StoRM-tape and EOS-CTA alike. ``model`` holds the
answers as values (pure parsing); ``bulk.StagingCopier`` asks archiveinfo, stages what is only
on tape, polls with backoff, copies each file the moment it is online and releases the pins.
"""

from appliance.staging.errors import StagingFailed, TapeApiUnavailable
from appliance.staging.model import ArchiveInfo, FileStage, StageStatus

__all__ = ["ArchiveInfo", "FileStage", "StageStatus", "StagingClient", "StagingFailed",
           "TapeApiUnavailable"]


def __getattr__(name: str):
    # StagingClient pulls in requests; import it only when used (dataclient start-up time).
    if name == "StagingClient":
        from appliance.staging.client import StagingClient

        return StagingClient
    raise AttributeError(name)
