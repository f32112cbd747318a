"""Every test here runs inside its tmp_path (config paths are relative to the working directory)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _run_in_tmp_path(in_tmp_path):
    return in_tmp_path
