"""Prerequisite checks shared by all tests.

``require(condition, reason)``: a missing prerequisite skips a test on a developer machine but
FAILS it in CI (``CI=true``), so CI never passes by skipping.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)
