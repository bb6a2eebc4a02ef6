"""Throttled progress reporting: at most one update per interval (twice a second by default)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

ProgressSink = Callable[[dict[str, Any]], None]


class ProgressThrottle:
    """Wraps a sink; runpod's progress_update starts a thread per call, so keep calls rare."""

    def __init__(
        self,
        sink: ProgressSink,
        *,
        min_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last_sent = float("-inf")

    def __call__(self, stage: str, percent: float) -> bool:
        now = self._clock()
        if now - self._last_sent < self._min_interval_s:
            return False
        self._last_sent = now
        self._sink({"stage": stage, "percent": round(max(0.0, min(100.0, percent)), 1)})
        return True
