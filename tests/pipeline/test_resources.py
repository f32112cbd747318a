"""pipeline/resources.py: the rules' runtime resources come from the one cost model and grow with the attempt."""

from __future__ import annotations

from pathlib import Path

from experiments.config import load_config
from pipeline import cost, resources

REPO = Path(__file__).resolve().parents[2]


def test_runtime_grows_with_the_attempt_and_is_capped():
    cfg = load_config(REPO / "config" / "cpu.yaml")
    for name in ("vhe_deconv", "hierarchical"):
        one, two = resources.train_minutes(cfg, name, False, 1), resources.train_minutes(cfg, name, False, 2)
        assert two > one > 0
        assert resources.eval_minutes(cfg, name, False, 2) > resources.eval_minutes(cfg, name, False, 1) > 0
    paper = load_config(REPO / "config" / "config.yaml")
    cap = cost.rates()["runtime"]["max_min"]
    assert resources.train_minutes(paper, "vhe_pixelcnn", False, 3) == cap


def test_runtime_is_priced_by_the_cost_model():
    cfg = load_config(REPO / "config" / "cpu.yaml")
    r = cost.rates()["runtime"]
    secs = cost.model_seconds(cfg, "vhe_deconv", cpu_flags=set())["train_s"]
    want = r["start_min"] + r["safety"] * secs / 60
    # the resources read this machine's CPU flags (bf16 changes the rate), so allow the bf16 factor
    got = resources.train_minutes(cfg, "vhe_deconv", False, 1)
    assert want / 1.4 <= got <= want + 1, (got, want)
    gpu = resources.train_minutes(cfg, "vhe_deconv", True, 1)
    assert gpu < got  # a GPU job is priced at gpu_speedup_guess times one thread
