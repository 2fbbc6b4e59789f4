"""Disk-cache decisions: pin lifetimes and eviction, as pure functions.

Why pure: eviction is where an archive loses data or thrashes. Taking the replicas, the pins and
the clock as data makes the policy testable exhaustively: only files that are safely on tape
(all required copies) and not pinned are candidates, least recently used first, and eviction
runs only above the high watermark and stops at the low one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from archive.catalog import DiskReplica

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<mo>\d+(?:\.\d+)?)M)?(?:(?P<w>\d+(?:\.\d+)?)W)?"
    r"(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?=\d)(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<mi>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> float:
    """ISO 8601 duration (``PT1H``, ``P2D``, ``P1DT12H``) to seconds; ValueError if malformed.

    Years and months count as 365 and 30 days: pin lifetimes need no calendar arithmetic.
    """
    m = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    g = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
    return (g["y"] * 365 * 86400 + g["mo"] * 30 * 86400 + g["w"] * 7 * 86400 + g["d"] * 86400
            + g["h"] * 3600 + g["mi"] * 60 + g["s"])


def format_time(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class EvictionPlan:
    evict: list[str]  # file ids, in eviction order
    used_before: int
    used_after: int
    blocked_bytes: int  # bytes that are pinned or not yet on tape (cannot be evicted)

    @property
    def ok(self) -> bool:
        return True


def plan_eviction(replicas: Sequence[DiskReplica], pins: Mapping[str, float],
                  on_tape: set[str], capacity: int, high: float, low: float,
                  now: float) -> EvictionPlan:
    """Unpinned, tape-safe, least recently used files to drop so usage falls to ``low``.

    Nothing is evicted unless usage exceeds ``high * capacity``.
    """
    used = sum(r.size for r in replicas)
    if used <= high * capacity:
        return EvictionPlan([], used, used, 0)
    target = low * capacity
    blocked = sum(r.size for r in replicas
                  if r.file_id not in on_tape or pins.get(r.file_id, 0) > now)
    candidates = sorted(
        (r for r in replicas if r.file_id in on_tape and pins.get(r.file_id, 0) <= now),
        key=lambda r: (r.last_access, r.file_id),
    )
    evict, after = [], used
    for r in candidates:
        if after <= target:
            break
        evict.append(r.file_id)
        after -= r.size
    return EvictionPlan(evict, used, after, blocked)
