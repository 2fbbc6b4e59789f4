"""Pure cache decisions: ISO 8601 pin lifetimes and watermark eviction."""

from __future__ import annotations

import pytest

from archive.cache import parse_duration, plan_eviction
from archive.catalog import DiskReplica


def test_parse_duration():
    assert parse_duration("PT1H") == 3600
    assert parse_duration("P2D") == 2 * 86400
    assert parse_duration("P1DT12H30M5S") == 86400 + 12 * 3600 + 30 * 60 + 5
    assert parse_duration("pt0.5s") == 0.5
    for bad in ("", "P", "PT", "1H", "P1H", "PTH"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def reps(*specs):
    return [DiskReplica(fid, size, 0, last) for fid, size, last in specs]


def test_no_eviction_below_high_watermark():
    plan = plan_eviction(reps(("a", 80, 1)), {}, {"a"}, 100, 0.9, 0.5, 10)
    assert plan.evict == []


def test_lru_unpinned_tape_safe_only_down_to_low():
    r = reps(("old", 30, 1), ("pinned", 30, 2), ("notape", 20, 3), ("mid", 10, 4), ("new", 5, 5))
    plan = plan_eviction(r, {"pinned": 100}, {"old", "pinned", "mid", "new"}, 100, 0.9, 0.7, 10)
    assert plan.evict == ["old"]  # 95 -> 65 <= 70: stop
    plan = plan_eviction(r, {"pinned": 100}, {"old", "pinned", "mid", "new"}, 100, 0.9, 0.55, 10)
    assert plan.evict == ["old", "mid"] and plan.used_after == 55
    assert plan.blocked_bytes == 50
    # an expired pin no longer protects
    plan = plan_eviction(r, {"pinned": 5}, {"old", "pinned", "mid", "new"}, 100, 0.9, 0.3, 10)
    assert "pinned" in plan.evict and "notape" not in plan.evict
