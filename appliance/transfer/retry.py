"""When to try again: exponential backoff with jitter, on transient errors only.

Pure: ``RetryPolicy.delays()`` yields the waits, ``is_transient`` classifies an exception; the
engine does the sleeping, so tests can use a zero-delay policy.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.errors import ChecksumMismatch
from appliance.transfer.errors import TransferError


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # total tries, including the first
    initial: float = 1.0  # seconds before the second try
    factor: float = 2.0
    maximum: float = 60.0
    jitter: float = 0.1  # +-10 % so parallel transfers do not retry in lockstep

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        rng = rng or random.Random()
        delay = self.initial
        for _ in range(max(self.attempts - 1, 0)):
            yield max(0.0, min(delay, self.maximum) * (1 + rng.uniform(-self.jitter, self.jitter)))
            delay *= self.factor


def is_transient(err: BaseException) -> bool:
    """A checksum mismatch is retried (the next copy may be clean); so are transient errors."""
    if isinstance(err, ChecksumMismatch):
        return True
    if isinstance(err, TransferError):
        return err.transient
    return isinstance(err, (ConnectionError, TimeoutError))
