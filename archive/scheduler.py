"""Recall scheduling: a pure function of the recall queue, the drive states and the clock.

Rules, each for a reason taken from tape operations (CTA, dCache, LOFAR LTA):

* **Per-tape batches.** A mount costs about a minute; every queued file on a cartridge is read
  in one mount.
* **Position order.** Within a batch, reads go in increasing position from the head (one pass,
  wrapping once), so locate time is a fraction of FIFO's.
* **No remount ping-pong.** A cartridge already mounted keeps its drive while it has work; a
  cartridge mounted in a busy drive is never scheduled onto a second drive; a new file for a
  mounted cartridge joins that drive's next batch.
* **Bounded drives.** Only healthy, idle drives receive work; at most ``max_drives``.
* **Fairness by age.** Cartridges are served in the order of their oldest waiting request, so a
  small request is not starved by a large one on another cartridge. Requests less than
  ``age_quantum`` seconds apart count as equally old; among those, the cartridge with the most
  bytes to read goes first (longest job first), so the drives finish together.
* **Copies.** A file with copies on several cartridges is read from the copy whose cartridge is
  mounted, else the one with the most waiting work; copies that failed (``bad_tapes``) are
  skipped; a file with no usable copy is reported in ``lost``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CopyLoc:
    tape: str
    offset: int
    size: int


@dataclass(frozen=True)
class QueuedRecall:
    file_id: str
    requested: float
    copies: tuple[CopyLoc, ...]
    bad_tapes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DriveState:
    drive_id: str
    mounted: str | None
    head: int
    idle: bool
    failed: bool = False


@dataclass(frozen=True)
class Read:
    file_id: str
    tape: str
    offset: int
    size: int


@dataclass
class Plan:
    assignments: dict[str, list[Read]] = field(default_factory=dict)  # drive_id -> ordered reads
    lost: list[str] = field(default_factory=list)  # file ids with no usable copy

    @property
    def tapes(self) -> set[str]:
        return {r[0].tape for r in self.assignments.values() if r}


def order_reads(reads: Sequence[Read], head: int) -> list[Read]:
    """Increasing position from the head, then wrap once for those behind it."""
    ahead = sorted((r for r in reads if r.offset >= head), key=lambda r: r.offset)
    behind = sorted((r for r in reads if r.offset < head), key=lambda r: r.offset)
    return ahead + behind


def plan_recalls(queue: Sequence[QueuedRecall], drives: Sequence[DriveState], now: float,
                 max_drives: int | None = None, age_quantum: float = 300.0) -> Plan:
    """Decide which idle drive reads which cartridge next, and in what order."""
    del now  # ages come from ``requested``; kept in the signature so policies may use it
    plan = Plan()
    mounted_busy = {d.mounted for d in drives if d.mounted and not d.idle}
    mounted_idle = {d.mounted: d for d in drives if d.mounted and d.idle and not d.failed}

    # per-cartridge counts of waiting work, to pick the best copy
    demand: dict[str, int] = defaultdict(int)
    for rec in queue:
        for c in rec.copies:
            if c.tape not in rec.bad_tapes:
                demand[c.tape] += 1

    groups: dict[str, list[Read]] = defaultdict(list)
    oldest: dict[str, float] = {}
    for rec in queue:
        usable = [c for c in rec.copies if c.tape not in rec.bad_tapes]
        if not usable:
            plan.lost.append(rec.file_id)
            continue
        best = min(usable, key=lambda c: (
            0 if c.tape in mounted_idle or c.tape in mounted_busy else 1, -demand[c.tape], c.tape))
        groups[best.tape].append(Read(rec.file_id, best.tape, best.offset, best.size))
        oldest[best.tape] = min(oldest.get(best.tape, rec.requested), rec.requested)

    healthy_idle = [d for d in drives if d.idle and not d.failed]
    busy_count = sum(1 for d in drives if not d.idle and not d.failed)
    budget = (max_drives if max_drives is not None else len(drives)) - busy_count

    # 1) an idle drive whose cartridge has work continues on it (no unmount, no remount)
    for d in healthy_idle:
        if budget <= 0:
            break
        if d.mounted in groups:
            plan.assignments[d.drive_id] = order_reads(groups.pop(d.mounted), d.head)
            budget -= 1

    # 2) remaining cartridges by age of their oldest request; skip ones held by a busy drive
    free = [d for d in healthy_idle if d.drive_id not in plan.assignments]
    # prefer empty drives, then drives whose cartridge has no work (any order is equivalent)
    free.sort(key=lambda d: (d.mounted is not None, d.drive_id))
    volume = {t: sum(r.size for r in reads) for t, reads in groups.items()}
    for tape in sorted(groups, key=lambda t: (int(oldest[t] // age_quantum), -volume[t], t)):
        if budget <= 0 or not free:
            break
        if tape in mounted_busy:
            continue
        d = free.pop(0)
        plan.assignments[d.drive_id] = order_reads(groups[tape], 0)
        budget -= 1
    return plan


def plan_fifo(queue: Sequence[QueuedRecall], drives: Sequence[DriveState], now: float,
              max_drives: int | None = None) -> Plan:
    """The naive baseline (benchmarks only): each idle drive takes the oldest waiting file alone,
    mounting whatever cartridge it is on. This is what a tape system without a scheduler does."""
    del now, max_drives
    plan = Plan()
    busy = {d.mounted for d in drives if d.mounted and not d.idle}
    free = [d for d in drives if d.idle and not d.failed]
    for rec in sorted(queue, key=lambda r: (r.requested, r.file_id)):
        usable = [c for c in rec.copies if c.tape not in rec.bad_tapes]
        if not usable:
            plan.lost.append(rec.file_id)
            continue
        if not free:
            continue
        c = usable[0]
        if c.tape in busy:
            continue
        d = next((x for x in free if x.mounted == c.tape), free[0])
        free.remove(d)
        busy.add(c.tape)
        plan.assignments[d.drive_id] = [Read(rec.file_id, c.tape, c.offset, c.size)]
    return plan
