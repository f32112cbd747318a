"""paper_figures.claims: McNemar, the headline choice (validation runs only), the claims' verdicts."""

import json

import pytest

from paper_figures import claims as C
from paper_figures.metrics import metrics_frame, read_run, value
from tests.pipeline.synthetic import acc, make_run, replicate


def test_mcnemar_exact_values():
    # 10 discordant trials, all in one direction: p = 2 / 2^10
    t = C.mcnemar([1] * 10 + [0] * 5, [0] * 10 + [0] * 5)
    assert (t["n10"], t["n01"]) == (10, 0) and t["p_value"] == pytest.approx(2 / 2**10)
    assert C.mcnemar([1, 0, 1, 0], [0, 1, 0, 1])["p_value"] == pytest.approx(1.0)
    # 8 vs 2 of 10: p = 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * 56 / 1024
    assert C.mcnemar([1] * 8 + [0] * 2, [0] * 8 + [1] * 2)["p_value"] == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert C.mcnemar([], [])["p_value"] == 1.0
    with pytest.raises(ValueError, match="same trials"):
        C.mcnemar([1], [1, 0])


def _set_accuracy(rd, model, set_, accs):
    import json

    path = rd / "metrics" / f"{model}.json"
    m = json.loads(path.read_text())
    m["classification"][set_] = {e: acc(a) for e, a in accs.items()}
    path.write_text(json.dumps(m))


def test_headline_is_chosen_on_validation_runs_never_on_lake_runs(tmp_path):
    rd = make_run(tmp_path)
    for model in (
        "ns_deconv",
        "vhe_deconv",
        "ns_pixelcnn",
        "vhe_pixelcnn",
        "resample_deconv",
        "rescale_deconv",
        "resample_pixelcnn",
        "rescale_pixelcnn",
    ):
        _set_accuracy(rd, model, "lake_runs", {"marginal_ratio": 0.2, "conditional": 0.3, "ns_kl": 0.9})
        _set_accuracy(rd, model, "validation_runs", {"marginal_ratio": 0.7, "conditional": 0.5, "ns_kl": 0.1})
    df = metrics_frame(read_run(rd))
    best, reason = C.choose_headline(df)
    assert best == {"deconv": "marginal_ratio", "pixelcnn": "marginal_ratio"}
    assert "validation runs" in reason and "not used" in reason
    assert C.choose_headline(df[df["set"] != "validation_runs"])[0] == {
        "deconv": "conditional",
        "pixelcnn": "conditional",
    }  # the default


def test_headline_is_chosen_per_decoder(tmp_path):
    rd = make_run(tmp_path)
    for model in ("ns_deconv", "vhe_deconv", "resample_deconv", "rescale_deconv"):
        _set_accuracy(rd, model, "validation_runs", {"marginal_ratio": 0.4, "conditional": 0.7, "ns_kl": 0.6})
    for model in ("ns_pixelcnn", "vhe_pixelcnn", "resample_pixelcnn", "rescale_pixelcnn"):
        _set_accuracy(rd, model, "validation_runs", {"marginal_ratio": 0.2, "conditional": 0.5, "ns_kl": 0.6})
    # one PixelCNN model where conditional wins does not outweigh the decoder's mean
    _set_accuracy(rd, "vhe_pixelcnn", "validation_runs", {"marginal_ratio": 0.2, "conditional": 0.65, "ns_kl": 0.6})
    run = read_run(rd)
    df = metrics_frame(run)
    best, reason = C.choose_headline(df)
    assert best == {"deconv": "conditional", "pixelcnn": "ns_kl"}
    assert "deconv: best mean over its 4 class models, conditional 70.0%" in reason
    assert "PixelCNN: best mean over its 4 class models, ns_kl 60.0%, conditional 53.8%" in reason
    # every table and claim reads each model with its decoder's estimator
    from paper_figures import tables as T

    long = T.classification_long(run, df, best)
    chosen = long[long["headline"]]
    assert set(zip(chosen["decoder"], chosen["estimator"])) == {("deconv", "conditional"), ("pixelcnn", "ns_kl")}
    disp, note = T.classification(run, df, best, reason)
    row = disp[disp["model"] == "vhe_pixelcnn"].iloc[0]
    lake_ns_kl = value(df, "vhe_pixelcnn", "accuracy", "lake_runs", "ns_kl")
    assert row[T.HEADLINE_COLUMN] == f"{T.fmt_ci(lake_ns_kl, 100)} (ns_kl)"
    assert "deconv: conditional, PixelCNN: ns_kl" in note
    claims = C.check_claims(run, df, best)
    px = claims[(claims["claim"].str.startswith("VHE classifies")) & (claims["scope"] == "PixelCNN")].iloc[0]
    assert "(ns_kl)" in px["rule"] and "(ns_kl)" in px["evidence"]
    dc = claims[(claims["claim"].str.startswith("VHE classifies")) & (claims["scope"] == "deconv")].iloc[0]
    assert "(conditional)" in dc["rule"]


def _claims(rd, headline="conditional"):
    run = read_run(rd)
    rows = C.check_claims(run, metrics_frame(run), headline)
    return {(r["claim"][:20], r["scope"]): r for _, r in rows.iterrows()}


def test_claims_use_the_headline_and_the_paired_test(tmp_path):
    rd = make_run(tmp_path)
    _set_accuracy(rd, "ns_deconv", "lake_runs", {"marginal_ratio": 0.1, "conditional": 0.40, "ns_kl": 0.1})
    _set_accuracy(rd, "vhe_deconv", "lake_runs", {"marginal_ratio": 0.1, "conditional": 0.42, "ns_kl": 0.1})
    by = _claims(rd)
    # 42% vs 40% of 400 trials: 8 discordant trials, all for VHE: p = 2/256 < 0.05 -> holds
    assert by[("VHE classifies bette", "deconv")]["verdict"] == C.HOLDS
    assert "McNemar p = 0.00781" in by[("VHE classifies bette", "deconv")]["evidence"]
    # with ns_kl as the headline the two are equal: NS at least as accurate
    assert _claims(rd, "ns_kl")[("VHE classifies bette", "deconv")]["verdict"] == C.FAILS
    mhd = next(r for k, r in by.items() if k[0].startswith("VHE beats Lake's"))
    assert mhd["verdict"] == C.HOLDS and mhd["scope"] == "vhe_pixelcnn" and "105x105 originals: 61.3" in mhd["evidence"]


def test_direction_only_when_the_difference_is_not_significant():
    assert C._verdict(True, 0.2) == C.DIRECTION and C._verdict(True, 0.01) == C.HOLDS
    assert C._verdict(False, 0.01) == C.FAILS


def test_kl_and_likelihood_claims_flip_with_the_numbers(tmp_path):
    import json

    rd = make_run(tmp_path)
    by = _claims(rd)
    assert by[("With a PixelCNN deco", "PixelCNN")]["verdict"] == C.HOLDS
    assert by[("VHE's test likelihoo", "PixelCNN")]["verdict"] == C.HOLDS
    assert by[("VHE's test likelihoo", "deconv")]["verdict"] == C.FAILS
    m = json.loads((rd / "metrics" / "ns_pixelcnn.json").read_text())
    m["kl_c"]["mean"] = 39.0
    (rd / "metrics" / "ns_pixelcnn.json").write_text(json.dumps(m))
    (rd / "metrics" / "vhe_deconv.json").unlink()
    by = _claims(rd)
    assert by[("With a PixelCNN deco", "PixelCNN")]["verdict"] == C.FAILS
    assert by[("VHE classifies bette", "deconv")]["verdict"] == C.UNMEASURED
    assert by[("VHE's test likelihoo", "deconv")]["verdict"] == C.UNMEASURED


# --------------------------------------------------------------------------- across training seeds
def test_seeds_verdict_needs_every_seed():
    assert C.seeds_verdict([(True, 0.01)] * 3) == C.HOLDS
    assert C.seeds_verdict([(True, 0.01), (True, 0.01), (True, 0.2)]) == C.DIRECTION
    assert C.seeds_verdict([(True, 0.01), (True, 0.01), (False, 0.01)]) == C.FAILS
    assert C.seeds_verdict([(True, 0.01), (False, 0.9)]) == C.FAILS
    assert C.seeds_verdict([]) == C.UNMEASURED
    for better, p in ((True, 0.01), (True, 0.3), (False, 0.01)):  # one seed: the one-run verdict
        assert C.seeds_verdict([(better, p)]) == C._verdict(better, p)


def _seeded_run(tmp_path, vhe, ns):
    """The synthetic run with vhe_pixelcnn and ns_pixelcnn trained again with seeds 1 and 2: ``vhe``,
    ``ns``: their Lake-runs accuracies in seeds 1 and 2 (seed 0: the synthetic 80% and 30%)."""
    reps = {}
    for seed in (1, 2):
        reps[f"vhe_pixelcnn_seed{seed}"] = replicate("vhe_pixelcnn", seed, lake=vhe[seed - 1])
        reps[f"ns_pixelcnn_seed{seed}"] = replicate("ns_pixelcnn", seed, lake=ns[seed - 1])
    return make_run(tmp_path, replicates=reps)


def _pixelcnn_claim(rd):
    return _claims(rd)[("VHE classifies bette", "PixelCNN")]


def test_a_comparison_significant_in_every_seed_holds_with_mean_and_spread(tmp_path):
    rd = _seeded_run(tmp_path, vhe=(0.78, 0.70), ns=(0.35, 0.40))
    row = _pixelcnn_claim(rd)
    assert row["verdict"] == C.HOLDS
    assert "judged on 3 seeds (0, 1, 2)" in row["rule"] and "in every seed" in row["rule"]
    ev = row["evidence"]
    assert "seed 0: NS 30.0" in ev and "seed 1: NS 35.0" in ev and "seed 2: NS 40.0" in ev
    assert "VHE 70.0 [65.0, 75.0] %, VHE right where NS wrong on 120 trials, the reverse on 0" in ev
    # VHE 80, 78, 70 %: mean 76.0, sd sqrt((4^2 + 2^2 + 6^2) / 2) = 5.3; NS 30, 35, 40 %: mean 35.0, sd 5.0
    assert "NS mean 35.0% (sd 5.0, 30.0–40.0)" in ev and "VHE mean 76.0% (sd 5.3, 70.0–80.0)" in ev
    assert "VHE above NS in 3 of 3 seeds, significantly (p < 0.05) in 3" in ev


def test_a_comparison_significant_in_two_of_three_seeds_is_direction_only(tmp_path):
    # seed 2: 41% vs 40% of 400 trials: 4 discordant trials, all for VHE: p = 2/16 = 0.125
    rd = _seeded_run(tmp_path, vhe=(0.78, 0.41), ns=(0.35, 0.40))
    row = _pixelcnn_claim(rd)
    assert row["verdict"] == C.DIRECTION
    assert "McNemar p = 0.125" in row["evidence"] and "significantly (p < 0.05) in 2" in row["evidence"]


def test_a_comparison_that_flips_in_one_seed_does_not_hold(tmp_path):
    rd = _seeded_run(tmp_path, vhe=(0.78, 0.38), ns=(0.35, 0.40))
    row = _pixelcnn_claim(rd)
    assert row["verdict"] == C.FAILS and "VHE above NS in 2 of 3 seeds" in row["evidence"]
    # the best VHE (PixelCNN, mean 65.3%) against MHD (55%): below it in seed 2
    mhd = next(r for k, r in _claims(rd).items() if k[0].startswith("VHE beats Lake's"))
    assert mhd["scope"] == "vhe_pixelcnn" and mhd["verdict"] == C.FAILS
    assert "judged on 3 seeds (0, 1, 2)" in mhd["rule"] and "vhe_pixelcnn above MHD in 2 of 3 seeds" in mhd["evidence"]


def test_without_replicates_every_claim_is_judged_on_one_seed(tmp_path):
    rows = _claims(make_run(tmp_path))
    assert all("1 seed" in r["rule"] for r in rows.values())
    assert "McNemar p = " in rows[("VHE classifies bette", "PixelCNN")]["evidence"]
    assert "seed 0:" not in rows[("VHE classifies bette", "PixelCNN")]["evidence"]  # as with one run


def test_seeds_are_paired_by_training_seed(tmp_path):
    # only VHE has a seed 1: no pair, the comparison stays on seed 0; the KL claim needs every seed
    rd = make_run(tmp_path, replicates={"vhe_pixelcnn_seed1": replicate("vhe_pixelcnn", 1, lake=0.1)})
    rows = _claims(rd)
    assert rows[("VHE classifies bette", "PixelCNN")]["verdict"] == C.HOLDS
    assert "1 seed (seed 0)" in rows[("VHE classifies bette", "PixelCNN")]["rule"]
    assert "1 seed (seed 0)" in rows[("With a PixelCNN deco", "PixelCNN")]["rule"]
    rd = make_run(
        tmp_path / "kl",
        replicates={
            "vhe_pixelcnn_seed1": replicate("vhe_pixelcnn", 1, kl_c=0.5),
            "ns_pixelcnn_seed1": replicate("ns_pixelcnn", 1),
        },
    )
    kl = _claims(rd)[("With a PixelCNN deco", "PixelCNN")]
    assert kl["verdict"] == C.FAILS and "holds in 1 of 2 seeds" in kl["evidence"]


def test_replicates_stay_out_of_the_headline_choice_and_the_per_model_tables(tmp_path):
    from paper_figures import tables as T

    rd = _seeded_run(tmp_path, vhe=(0.78, 0.70), ns=(0.35, 0.40))
    for seed in (1, 2):  # validation runs where ns_kl would win if the replicates counted
        for m in ("vhe_pixelcnn", "ns_pixelcnn"):
            _set_accuracy(
                rd, f"{m}_seed{seed}", "validation_runs", {"marginal_ratio": 0.1, "conditional": 0.1, "ns_kl": 0.99}
            )
    run = read_run(rd)
    df = metrics_frame(run)
    assert run.replicate_of == {f"{m}_seed{s}": m for m in ("vhe_pixelcnn", "ns_pixelcnn") for s in (1, 2)}
    assert run.seed_models("vhe_pixelcnn") == {0: "vhe_pixelcnn", 1: "vhe_pixelcnn_seed1", 2: "vhe_pixelcnn_seed2"}
    assert C.choose_headline(df, exclude=run.replicate_of)[0]["pixelcnn"] == "conditional"
    assert C.choose_headline(df)[0]["pixelcnn"] == "ns_kl"  # what counting them would do
    assert T.cell_model(run, "vhe", "pixelcnn") == "vhe_pixelcnn"
    disp, _ = T.classification(run, df, "conditional", "")
    assert not disp["model"].str.contains("_seed").any()
    assert not T.classification_long(run, df, "conditional")["model"].str.contains("_seed").any()


def test_seeds_table_mean_and_spread(tmp_path):
    from paper_figures import tables as T

    reps = {
        "vhe_pixelcnn_seed1": replicate("vhe_pixelcnn", 1, lake=0.78, nll=86.0),
        "vhe_pixelcnn_seed2": replicate("vhe_pixelcnn", 2, lake=0.70, nll=88.0),
        "factorial_seed1": replicate("factorial", 1, texture={"accuracy": 0.3}),
    }
    run = read_run(make_run(tmp_path, replicates=reps))
    table, disp, note = T.seeds_table(run, metrics_frame(run), "conditional")
    acc = table[(table["model"] == "vhe_pixelcnn") & (table["metric"] == "accuracy")].iloc[0]
    assert acc["n_seeds"] == 3 and acc["seeds"] == "0 1 2" and acc["base_seed"] == 0
    assert acc["estimator"] == "conditional"
    assert acc["base_value"] == pytest.approx(0.80) and acc["mean"] == pytest.approx(0.76)
    assert acc["sd"] == pytest.approx(0.0529150, abs=1e-6) and (acc["min"], acc["max"]) == pytest.approx((0.70, 0.80))
    nll = table[(table["model"] == "vhe_pixelcnn") & (table["metric"] == "nll")].iloc[0]
    assert nll["mean"] == pytest.approx(86.333333) and nll["sd"] == pytest.approx(1.527525, abs=1e-6)
    tex = table[(table["model"] == "factorial") & (table["metric"] == "texture_accuracy")].iloc[0]
    assert tex["n_seeds"] == 2 and tex["mean"] == pytest.approx(0.35)
    assert tex["sd"] == pytest.approx(0.0707107, abs=1e-6)
    assert set(table["model"]) == {"vhe_pixelcnn", "factorial"}  # only models with replicates
    row = disp[(disp["model"] == "vhe_pixelcnn") & disp["metric"].str.startswith("Lake runs")].iloc[0]
    assert row["mean ± sd"] == "76.0 ± 5.3" and row["min–max"] == "70.0–80.0" and row["seeds"] == "3 (0, 1, 2)"
    assert row[T.SEED_OWN_COLUMN] == "80.0 (seed 0)" and row["per seed"] == "0: 80.0, 1: 78.0, 2: 70.0"
    assert "replicates" in note
    run = read_run(make_run(tmp_path / "plain"))
    table, disp, note = T.seeds_table(run, metrics_frame(run), "conditional")
    assert table.empty and disp.empty and "No model was trained with more than one seed" in note


# --------------------------------------------------------------------------- factorial transfer
def test_binomial_above_chance_exact_values():
    from analysis.stats import binomial_above

    assert binomial_above(3, 3, 0.5) == pytest.approx(0.125)
    assert binomial_above(2, 3, 0.5) == pytest.approx(0.5)
    assert binomial_above(0, 10, 0.3) == pytest.approx(1.0)
    # 44 of 320 cells at chance 1/8 (13.8%, the 2026-12-06 cpu run): not above chance
    assert binomial_above(44, 320, 0.125) > 0.05
    with pytest.raises(ValueError):
        binomial_above(5, 4, 0.5)


def test_factorial_claim_needs_both_parts_above_chance_in_every_seed(tmp_path):
    reps = {
        "factorial_seed1": replicate("factorial", 1, texture={"accuracy": 0.45}),
        "factorial_seed2": replicate("factorial", 2, texture={"accuracy": 0.138}),
    }
    rd = make_run(tmp_path, replicates=reps)
    row = _claims(rd)[("Factorial VHE: gener", "factorial")]
    assert row["verdict"] == C.DIRECTION  # seed 2's texture (13.8% of 320 at chance 12.5%) is not significant
    assert "3 seeds (0, 1, 2)" in row["rule"] and "seed 2: texture 13.8%" in row["evidence"]
    reps["factorial_seed2"] = replicate("factorial", 2, texture={"accuracy": 0.1})
    rd = make_run(tmp_path / "flip", replicates=reps)
    row = next(r for k, r in _claims(rd).items() if k[0].startswith("Factorial"))
    assert row["verdict"] == C.FAILS
    rd = make_run(tmp_path / "one")
    row = next(r for k, r in _claims(rd).items() if k[0].startswith("Factorial"))
    assert row["verdict"] == C.HOLDS and "1 seed" in row["rule"]


def test_factorial_claim_reads_the_bootstrap_interval_over_rows_and_columns(tmp_path):
    """With bootstrap intervals (analysis.factorial.grid_bootstrap) the claim holds only when both
    intervals clear chance: a 45% texture accuracy whose interval reaches down to chance (rows that
    all fail, others that all succeed) is direction only, however many cells the grid has."""
    boot = {"texture": {"accuracy": 0.45, "bootstrap_ci95": [0.30, 0.60]}, "character": {"bootstrap_ci95": [0.5, 0.8]}}
    reps = {"factorial_seed1": replicate("factorial", 1, **boot)}
    rows = _claims(make_run(tmp_path / "a", replicates=reps))
    row = next(r for k, r in rows.items() if k[0].startswith("Factorial"))
    assert "bootstrap interval" not in row["rule"]  # seed 0 has no interval: the binomial rule for both
    tex = {"accuracy": 0.45, "bootstrap_ci95": [0.10, 0.70]}
    only = {
        "factorial": {"texture": {"bootstrap_ci95": [0.30, 0.60]}, "character": {"bootstrap_ci95": [0.5, 0.8]}},
    }
    rd = make_run(tmp_path / "b", replicates=reps)
    for model, upd in only.items():  # give seed 0 intervals too
        path = rd / "metrics" / f"{model}.json"
        data = json.loads(path.read_text())
        for part, sec in upd.items():
            data[part].update(sec)
        path.write_text(json.dumps(data))
    row = next(r for k, r in _claims(rd).items() if k[0].startswith("Factorial"))
    assert row["verdict"] == C.HOLDS and "bootstrap interval" in row["rule"] and "[30.0, 60.0]" in row["evidence"]
    path = rd / "metrics" / "factorial_seed1.json"
    data = json.loads(path.read_text())
    data["texture"].update(tex)
    path.write_text(json.dumps(data))
    row = next(r for k, r in _claims(rd).items() if k[0].startswith("Factorial"))
    assert row["verdict"] == C.DIRECTION  # seed 1: 45% but its interval reaches 10% < chance 12.5%
    df = metrics_frame(read_run(rd))
    r = value(df, "factorial_seed1", "texture_accuracy", "grid")
    assert (r["ci_low"], r["ci_high"]) == (0.10, 0.70)


# --------------------------------------------------------------------------- hierarchical: the alphabet
CONTEXT, STYLE = ("Hierarchical VHE: al", "hierarchical"), ("Hierarchical VHE: ne", "hierarchical")


def _gains(gain, ci, vs_class=13.0, ci_class=(11.8, 14.2)) -> dict:
    """A context_nll section (analysis.hierarchical layout) with these paired gains (nats/image)."""
    return {
        "context_gain": gain,
        "context_gain_ci95": list(ci),
        "nll_context_per_image": 115.0 - gain,
        "context_gain_vs_class": vs_class,
        "context_gain_vs_class_ci95": list(ci_class),
    }


def _edit_hierarchical(rd, change, name="hierarchical"):
    import json

    path = rd / "metrics" / f"{name}.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))


def test_interval_verdict_needs_the_interval_above_in_every_seed():
    assert C.interval_verdict([(True, True), (True, True)]) == C.HOLDS
    assert C.interval_verdict([(True, True), (True, False)]) == C.DIRECTION
    assert C.interval_verdict([(True, True), (False, False)]) == C.FAILS
    assert C.interval_verdict([]) == C.UNMEASURED


def test_hierarchical_claims_hold_on_the_synthetic_run(tmp_path):
    by = _claims(make_run(tmp_path))
    ctx, sty = by[CONTEXT], by[STYLE]
    assert ctx["verdict"] == C.HOLDS and "1 seed" in ctx["rule"] and "above 0 nats per image" in ctx["rule"]
    assert (
        "over no context 3.00 [2.02, 3.98]" in ctx["evidence"] and "the class model vhe_deconv 13.00" in ctx["evidence"]
    )
    assert sty["verdict"] == C.HOLDS and "above 5%" in sty["rule"]
    assert "12.0 [7.0, 17.0] % over 20 alphabets, chance 5.0 %" in sty["evidence"]
    assert "control the class model vhe_deconv 5.0 [3.0, 7.0] %" in sty["evidence"]


@pytest.mark.parametrize(
    "section, verdict",
    [
        (_gains(3.0, (2.0, 4.0), vs_class=1.0, ci_class=(-0.2, 2.2)), C.DIRECTION),  # the class model's interval
        (_gains(0.5, (-0.1, 1.1)), C.DIRECTION),  # no context: only the point estimate above 0
        (_gains(-0.5, (-1.0, 0.0)), C.FAILS),  # the context lowers log p
        (_gains(3.0, (2.0, 4.0), vs_class=-2.0, ci_class=(-3.0, -1.0)), C.FAILS),  # the class model is better
    ],
)
def test_context_claim_needs_both_paired_intervals_above_zero(tmp_path, section, verdict):
    rd = make_run(tmp_path)
    _edit_hierarchical(rd, lambda m: m["context_nll"].update(section))
    assert _claims(rd)[CONTEXT]["verdict"] == verdict


def test_context_claim_is_not_measured_without_the_context_or_the_class_model(tmp_path):
    rd = make_run(tmp_path)
    _edit_hierarchical(rd, lambda m: m.pop("context_nll"))
    row = _claims(rd)[CONTEXT]
    assert row["verdict"] == C.UNMEASURED and "no context_nll" in row["evidence"]
    rd = make_run(tmp_path / "no_class")
    _edit_hierarchical(
        rd,
        lambda m: [m["context_nll"].pop(k) for k in list(m["context_nll"]) if "class" in k],
    )
    row = _claims(rd)[CONTEXT]
    assert row["verdict"] == C.UNMEASURED and "no class-model comparison (gain 3.00 [2.02, 3.98])" in row["evidence"]


def test_context_claim_across_seeds(tmp_path):
    reps = {
        "hierarchical_seed1": replicate("hierarchical", 1, context_nll=_gains(2.0, (1.0, 3.0))),
        "hierarchical_seed2": replicate("hierarchical", 2, context_nll=_gains(0.4, (-0.2, 1.0))),
    }
    row = _claims(make_run(tmp_path, replicates=reps))[CONTEXT]
    assert row["verdict"] == C.DIRECTION and "3 seeds (0, 1, 2)" in row["rule"] and "in every seed" in row["rule"]
    assert "seed 2: gain per image (nats) over no context 0.40 [-0.20, 1.00]" in row["evidence"]
    reps["hierarchical_seed2"] = replicate("hierarchical", 2, context_nll=_gains(-0.4, (-1.0, 0.2)))
    assert _claims(make_run(tmp_path / "flip", replicates=reps))[CONTEXT]["verdict"] == C.FAILS
    reps["hierarchical_seed2"] = replicate("hierarchical", 2, context_nll=_gains(1.5, (0.5, 2.5)))
    assert _claims(make_run(tmp_path / "all", replicates=reps))[CONTEXT]["verdict"] == C.HOLDS


@pytest.mark.parametrize(
    "style, verdict",
    [
        ({"accuracy": 0.12, "accuracy_ci95": [0.04, 0.2]}, C.DIRECTION),  # the interval reaches below 5%
        ({"accuracy": 0.04, "accuracy_ci95": [0.01, 0.07]}, C.FAILS),
        ({"accuracy": 0.12, "accuracy_ci95": None, "accuracy_ci95_reason": "n < 2"}, C.DIRECTION),
        # 3 alphabets: chance 1/3 is the bar, not 5%
        ({"accuracy": 0.4, "accuracy_ci95": [0.3, 0.5], "chance": 1 / 3, "alphabets": 3}, C.DIRECTION),
        ({"accuracy": 0.6, "accuracy_ci95": [0.4, 0.8], "chance": 1 / 3, "alphabets": 3}, C.HOLDS),
    ],
)
def test_style_claim_needs_the_interval_above_5_percent_and_chance(tmp_path, style, verdict):
    rd = make_run(tmp_path)
    _edit_hierarchical(rd, lambda m: m["alphabet_style"].update(style))
    assert _claims(rd)[STYLE]["verdict"] == verdict


def test_style_claim_is_not_measured_when_skipped(tmp_path):
    rd = make_run(tmp_path)
    _edit_hierarchical(rd, lambda m: m.update(alphabet_style={"skipped": "fewer than 2 alphabets"}))
    by = _claims(rd)
    assert by[STYLE]["verdict"] == C.UNMEASURED and by[CONTEXT]["verdict"] == C.HOLDS


def test_hierarchical_claims_are_not_measured_without_a_hierarchical_model(tmp_path):
    rd = make_run(tmp_path)
    (rd / "configs" / "hierarchical.json").unlink()
    (rd / "metrics" / "hierarchical.json").unlink()
    by = _claims(rd)
    for key in (CONTEXT, STYLE):
        assert by[key]["verdict"] == C.UNMEASURED and by[key]["evidence"] == "the run has no hierarchical model"
