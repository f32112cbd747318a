"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest


@pytest.fixture
def in_tmp_path(tmp_path, monkeypatch):
    """Run the test inside its tmp_path: config paths are relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
