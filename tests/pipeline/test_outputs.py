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


def test_compare_with_chooses_the_comparison_model_and_its_replicate_of_the_same_seed():
    models = {
        "vhe_deconv": {"experiment": "class"},
        "vhe_matched": {"experiment": "class", "train": {"max_steps": 5}},
        "hierarchical": {"experiment": "hierarchical", "compare_with": "vhe_matched"},
        "other": {"experiment": "hierarchical"},
    }
    cfg = load_config({"run": "t", "models": models})
    assert OUT.comparison_model(cfg, "hierarchical") == "vhe_matched"
    assert OUT.comparison_model(cfg, "other") == "vhe_deconv"  # unset: the same objective and decoder
    assert OUT.comparison_model(cfg, "vhe_matched") is None  # only hierarchical models are compared
    reps = load_config(
        {"run": "t", "models": models, "replicates": {"models": ["hierarchical", "vhe_matched"], "seeds": [1, 2]}}
    )
    assert OUT.comparison_model(reps, "hierarchical") == "vhe_matched"
    assert OUT.comparison_model(reps, "hierarchical_seed2") == "vhe_matched_seed2"
    only = load_config({"run": "t", "models": models, "replicates": {"models": ["hierarchical"], "seeds": [1]}})
    assert OUT.comparison_model(only, "hierarchical_seed1") == "vhe_matched"  # no replicate of that seed
