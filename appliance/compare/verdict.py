"""The replay verdict: identical / within tolerance / differs, with the comparisons behind it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.compare.policies import POLICIES
from appliance.compare.result import (
    DIFFERS,
    IDENTICAL,
    MISSING,
    RANK,
    WITHIN_TOLERANCE,
    OutputComparison,
)


@dataclass
class ReplayVerdict:
    original_run: str
    replay_run: str
    comparisons: list[OutputComparison] = field(default_factory=list)

    @property
    def status(self) -> str:
        worst = max((RANK[c.status] for c in self.comparisons), default=0)
        return {0: IDENTICAL, 1: WITHIN_TOLERANCE, 2: DIFFERS}[worst]

    @property
    def ok(self) -> bool:
        return self.status != DIFFERS

    def report(self) -> str:
        head = {IDENTICAL: "REPRODUCED: identical", WITHIN_TOLERANCE: "REPRODUCED: within tolerance",
                DIFFERS: "NOT REPRODUCED: outputs differ"}[self.status]
        lines = [f"{head} (run {self.original_run} replayed as {self.replay_run})"]
        lines += [c.report() for c in self.comparisons]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok, "original_run": self.original_run,
                "replay_run": self.replay_run, "outputs": [c.to_dict() for c in self.comparisons]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


def compare_outputs(
    expected: dict[str, tuple[Path, str, dict[str, Any]]], actual: dict[str, Path],
    original_run: str, replay_run: str,
) -> ReplayVerdict:
    """``expected``: path -> (file, policy, options); ``actual``: path -> file."""
    verdict = ReplayVerdict(original_run, replay_run)
    for path, (exp_file, policy, options) in sorted(expected.items()):
        if path not in actual:
            verdict.comparisons.append(OutputComparison(path, policy, MISSING,
                                                        differences=[{"problem": "missing in replay"}]))
            continue
        verdict.comparisons.append(POLICIES[policy](path, exp_file, actual[path], options))
    for path in sorted(set(actual) - set(expected)):
        verdict.comparisons.append(OutputComparison(path, "sha256", DIFFERS,
                                                    differences=[{"problem": "new output, not in the original run"}]))
    return verdict
