"""Tests of analysis/ (evaluation entry points) on tiny synthetic Omniglot-like data."""
