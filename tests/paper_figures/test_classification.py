"""paper_figures.classification: exact keys, the headline choice, McNemar, the claims."""
import math

import pytest

from paper_figures import classification as CL
from tests.pipeline.synthetic import acc, baselines, by_estimator


def metrics(lake, val, estimators=("marginal_ratio", "conditional", "ns_kl")):
    return {"classification": {"estimators": list(estimators), "n_samples": 5,
                               "lake_runs": {e: acc(lake[e]) for e in estimators},
                               "validation_runs": {e: acc(val[e]) for e in estimators}}}


MODELS = {"ns_deconv": {"experiment": "class", "objective": "ns", "decoder": "deconv"},
          "vhe_deconv": {"experiment": "class", "objective": "vhe", "decoder": "deconv"},
          "vae_deconv": {"experiment": "vae", "decoder": "deconv"}}


def test_mcnemar_exact_values():
    # 10 discordant trials, all in one direction: p = 2 / 2^10
    t = CL.mcnemar([1] * 10 + [0] * 5, [0] * 10 + [0] * 5)
    assert (t["n10"], t["n01"]) == (10, 0) and t["p_value"] == pytest.approx(2 / 2 ** 10)
    # balanced discordance: p = 1
    assert CL.mcnemar([1, 0, 1, 0], [0, 1, 0, 1])["p_value"] == pytest.approx(1.0)
    # 8 vs 2 of 10: p = 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * 56 / 1024
    a, b = [1] * 8 + [0] * 2, [0] * 8 + [1] * 2
    assert CL.mcnemar(a, b)["p_value"] == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert CL.mcnemar([], [])["p_value"] == 1.0
    with pytest.raises(ValueError, match="same trials"):
        CL.mcnemar([1], [1, 0])


def test_headline_is_chosen_on_validation_runs_never_on_lake_runs():
    # Lake's runs favour ns_kl, the validation runs favour the marginal ratio: the headline follows validation
    lake = {"marginal_ratio": 0.2, "conditional": 0.3, "ns_kl": 0.9}
    val = {"marginal_ratio": 0.7, "conditional": 0.5, "ns_kl": 0.1}
    raw = {"ns_deconv": metrics(lake, val), "vhe_deconv": metrics(lake, val), "vae_deconv": {"classification": None}}
    df = CL.frame(MODELS, raw, None)
    assert set(df["model"]) == {"ns_deconv", "vhe_deconv"}  # the VAE has no classification rows
    best, reason = CL.choose_headline(df)
    assert best == "marginal_ratio" and "validation runs" in reason and "not used" in reason
    # without validation runs the conditional estimator is the default, and the reason says so
    empty = df[df["set"] != "validation_runs"]
    assert CL.choose_headline(empty)[0] == "conditional"


def test_a_missing_key_is_an_error_that_names_it():
    bad = {"classification": {"n_samples": 5, "lake_runs": {"conditional": {"accuracy": 0.5, "n_trials": 4}}}}
    with pytest.raises(KeyError, match="ci95"):
        CL.frame(MODELS, {"vhe_deconv": bad}, None)
    with pytest.raises(KeyError, match="classification"):
        CL.frame(MODELS, {"vhe_deconv": {"nll_estimate": 1.0}}, None)


def test_claims_use_the_headline_and_the_paired_test():
    val = {"marginal_ratio": 0.5, "conditional": 0.6, "ns_kl": 0.4}
    raw = {"ns_deconv": metrics({"marginal_ratio": 0.1, "conditional": 0.40, "ns_kl": 0.1}, val),
           "vhe_deconv": metrics({"marginal_ratio": 0.1, "conditional": 0.42, "ns_kl": 0.1}, val)}
    df = CL.frame(MODELS, raw, baselines(mhd_28=0.30))
    rows = CL.claims(df, MODELS, raw, baselines(mhd_28=0.30), "conditional")
    by = {(r["claim"][:20], r["scope"]): r for r in rows}
    # 42% vs 40% of 400 trials: 8 discordant trials, all for VHE: p = 2/256 < 0.05 -> holds
    assert by[("VHE classifies bette", "deconv")]["verdict"] == CL.HOLDS
    assert "McNemar p = 0.00781" in by[("VHE classifies bette", "deconv")]["evidence"]
    assert by[("VHE classifies bette", "PixelCNN")]["verdict"] == CL.UNMEASURED
    mhd = next(r for r in rows if r["claim"].startswith("VHE beats Lake's"))
    assert mhd["verdict"] == CL.HOLDS and mhd["scope"] == "vhe_deconv" and "105x105 originals: 61.3" in mhd["evidence"]
    # against a stronger MHD the claim fails and says why
    strong = baselines(mhd_28=0.50)
    rows = CL.claims(CL.frame(MODELS, raw, strong), MODELS, raw, strong, "conditional")
    mhd = next(r for r in rows if r["claim"].startswith("VHE beats Lake's"))
    assert mhd["verdict"] == CL.FAILS and "MHD is at least as accurate" in mhd["evidence"]


def test_direction_only_when_the_difference_is_not_significant():
    assert CL._verdict(True, 0.2) == CL.DIRECTION and CL._verdict(True, 0.01) == CL.HOLDS
    assert CL._verdict(False, 0.01) == CL.FAILS
    assert math.isclose(by_estimator(0.5)["conditional"]["accuracy"], 0.5)
