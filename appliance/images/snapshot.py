"""Locked packages from a dated snapshot mirror (a site or user setting, never the repository).

A snapshot archive keeps every version ever published, by date: ``<archive>/<timestamp>/`` is
the archive as it was then, with the same ``pool/`` paths as the live mirror. The lock records
each package's pool path and archive and the time the mirror was read (``resolved_at``), so a
missing package is one GET of ``template.format(archive=..., timestamp=...)/<pool path>``,
checked against the lock's sha256 on the way into the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from appliance.errors import ApplianceError
from appliance.exitcodes import Exit
from appliance.images.packages import LockedDeb, PackageStore


class SnapshotError(ApplianceError):
    exit_code = Exit.REMOTE


def snapshot_url(template: str, deb: LockedDeb, timestamp: str) -> str:
    return f"{template.format(archive=deb.archive, timestamp=timestamp).rstrip('/')}/{deb.filename}"


def fetch_missing(template: str, debs: Sequence[LockedDeb], timestamp: str, store: PackageStore,
                  timeout: float = 60) -> int:
    """Download the ``debs`` the store lacks; returns how many were fetched."""
    import requests

    if not timestamp:
        raise SnapshotError("the lock records no `resolved_at` time, so no snapshot date is known; "
                            "rebuild offline from a package file instead")
    fetched = 0
    with requests.Session() as session:
        for deb in store.missing(debs):
            url = snapshot_url(template, deb, timestamp)
            try:
                with session.get(url, stream=True, timeout=timeout) as resp:
                    if resp.status_code != 200:
                        raise SnapshotError(f"{url}: HTTP {resp.status_code} (expected {deb.package} "
                                            f"{deb.version} in the snapshot of {timestamp})")
                    store.add_stream(resp.iter_content(1 << 20), deb, url)
            except requests.RequestException as err:
                raise SnapshotError(f"{url}: {err}") from err
            fetched += 1
    return fetched
