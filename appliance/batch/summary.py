"""The verdict of a batch: one result per item, a table, JSON for scripts."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ItemResult:
    index: int
    uri: str
    state: str  # done | failed | flagged (done, but only after retries)
    run_id: str | None = None
    cache_hit: bool = False
    attempts: int = 1
    error: str | None = None
    exit_code: int = 0
    seconds: float = 0.0
    worker: str | None = None
    errors: list[str] = field(default_factory=list)  # one per failed attempt

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemResult:
        return cls(**data)


@dataclass
class BatchSummary:
    recipe: str
    results: list[ItemResult]
    seconds: float
    staged: int = 0

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(r.state for r in self.results)
        return {"done": c["done"], "failed": c["failed"], "flagged": c["flagged"],
                "cache_hits": sum(r.cache_hit for r in self.results)}

    @property
    def ok(self) -> bool:
        return self.counts["failed"] == 0

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "ok": self.ok, "seconds": round(self.seconds, 3),
                "staged": self.staged, **self.counts,
                "items": [asdict(r) for r in sorted(self.results, key=lambda r: r.index)]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def report(self, width: int = 60) -> str:
        c = self.counts
        lines = [f"{'#':>4}  {'state':8} {'run':38} input / error"]
        for r in sorted(self.results, key=lambda r: r.index):
            state = "cached" if r.cache_hit and r.state == "done" else r.state
            what = r.uri if len(r.uri) <= width else "..." + r.uri[-(width - 3):]
            lines.append(f"{r.index:>4}  {state:8} {(r.run_id or '-'):38} {what}")
            if r.error:
                lines.append(f"{'':>4}  {'':8} {'':38} error: {r.error}")
            elif r.state == "flagged":
                lines.append(f"{'':>4}  {'':8} {'':38} succeeded on attempt {r.attempts}: {r.errors[-1]}")
        lines.append(f"{len(self.results)} items in {self.seconds:.1f} s: {c['done']} done "
                     f"({c['cache_hits']} cache hits), {c['failed']} failed, {c['flagged']} flagged")
        return "\n".join(lines)
