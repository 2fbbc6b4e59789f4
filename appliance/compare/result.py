"""Comparison results as values: status, what was tolerated, and the first differences."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

IDENTICAL = "identical"
WITHIN_TOLERANCE = "within_tolerance"
DIFFERS = "differs"
IGNORED = "ignored"
MISSING = "missing"

RANK = {IDENTICAL: 0, IGNORED: 0, WITHIN_TOLERANCE: 1, DIFFERS: 2, MISSING: 2}


@dataclass
class OutputComparison:
    path: str
    policy: str
    status: str
    tolerated: list[str] = field(default_factory=list)  # what differed but was allowed
    differences: list[dict[str, Any]] = field(default_factory=list)  # first differences, located
    detail: str = ""  # the tool's own report (e.g. FITSDiff), trimmed

    @property
    def ok(self) -> bool:
        return RANK[self.status] < 2

    def report(self) -> str:
        lines = [f"{self.path} [{self.policy}]: {self.status.replace('_', ' ')}"]
        lines += [f"    tolerated: {t}" for t in self.tolerated]
        for d in self.differences:
            lines.append("    differs: " + ", ".join(f"{k}={v}" for k, v in d.items()))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}
