"""The W&B offline-run reader the tests use (it lives in experiments.tracking)."""
from experiments.tracking import offline_records as records  # noqa: F401
from experiments.tracking import offline_runs as runs  # noqa: F401
