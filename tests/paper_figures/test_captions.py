"""The report captions (paper_figures/report/*.rst) render with each profile's config and state its settings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest

from experiments.config import load_config

REPO = Path(__file__).resolve().parents[2]
CAPTIONS = sorted((REPO / "paper_figures" / "report").glob("*.rst"))


@pytest.mark.parametrize("profile", ["config.yaml", "cpu.yaml", "smoke.yaml"])
def test_captions_render_with_the_profile_settings(profile):
    cfg = load_config(REPO / "config" / profile)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    ev = cfg["evaluation"]
    for path in CAPTIONS:
        text = env.from_string(path.read_text()).render(snakemake=SimpleNamespace(config=cfg))
        assert "{{" not in text and "{%" not in text, path.name
        if path.name in ("objectives.rst", "classification.rst"):
            assert f"K = {ev['n_samples']} importance samples" in text
            assert f"{ev['validation_runs']['n_runs']} validation runs" in text
