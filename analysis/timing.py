"""Wall-clock seconds per evaluation phase, the ``eval_seconds`` of every metrics JSON."""

from __future__ import annotations

import time
from contextlib import contextmanager


class PhaseTimer:
    """``with timer("phase"): ...`` adds the block's wall-clock seconds to ``timer.seconds["phase"]``
    (rounded to ms; a phase timed twice accumulates)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
