"""pipeline.outputs: the outputs of a run's replicates (models trained again with other seeds)."""

from __future__ import annotations

from experiments.config import load_config
from pipeline import outputs as OUT


def _cfg(models, seeds):
    return load_config({"run": "t", "replicates": {"models": models, "seeds": seeds}})


def test_replicates_are_models_with_their_own_outputs():
    cfg = _cfg(["vhe_deconv", "factorial"], [1])
    assert {"vhe_deconv_seed1", "factorial_seed1"} <= set(OUT.models(cfg))
    assert "vhe_deconv_seed1" in OUT.class_models(cfg) and "factorial_seed1" in OUT.structured_models(cfg)
    out = OUT.expected_outputs(cfg, data=False)
    assert "results/t/metrics/vhe_deconv_seed1.json" in out and "results/t/configs/vhe_deconv_seed1.json" in out
    assert "results/t/figures/factorial_seed1_samples.png" in out
    assert {"results/t/tables/seeds.csv", "results/t/tables/seeds.md"} <= set(out)


def test_hierarchical_is_compared_with_the_class_model_of_its_seed():
    cfg = _cfg(["vhe_deconv", "hierarchical"], [1, 2])
    assert OUT.comparison_model(cfg, "hierarchical") == "vhe_deconv"
    assert OUT.comparison_model(cfg, "hierarchical_seed2") == "vhe_deconv_seed2"
    cfg = _cfg(["hierarchical"], [1])  # no class replicate of that seed: the model's own
    assert OUT.comparison_model(cfg, "hierarchical_seed1") == "vhe_deconv"
