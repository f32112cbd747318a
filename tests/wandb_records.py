"""The W&B offline-run reader the tests use (it lives in experiments.tracking).

``runs`` waits until every session's file ends in its exit record: W&B's service process writes
the file, and on a loaded machine ``run.finish()`` has been seen to return before it had
(CI, 2026-12-06: a run record missing right after ``evaluate`` returned).
"""

import time

from experiments.tracking import offline_records as records  # noqa: F401
from experiments.tracking import offline_runs


def runs(wandb_dir, timeout: float = 60.0) -> list[dict]:
    """``experiments.tracking.offline_runs(wandb_dir)`` once every session found has exited (or
    after ``timeout`` seconds: then as found, and the test's assertions say what is missing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = offline_runs(wandb_dir)
        except Exception:  # noqa: BLE001 - a file still being written may not parse yet
            if time.monotonic() > deadline:
                raise
            found = None
        if found is not None and ((found and all(r["exited"] for r in found)) or time.monotonic() > deadline):
            return found
        time.sleep(0.5)
