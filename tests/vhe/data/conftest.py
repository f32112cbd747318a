"""Fixtures shared by the data tests."""

import pytest

from vhe.data.readers import load_npz_arrays

from .mirror import MIRROR


@pytest.fixture(scope="session")
def background():
    """The background arrays (train_small.npz) of the mirror, read once; tests must not modify it."""
    if not (MIRROR / "train_small.npz").is_file():
        pytest.skip(f"Omniglot data mirror not found at {MIRROR} (set VHE_DATA_MIRROR)")
    return load_npz_arrays(MIRROR / "train_small.npz")
