"""paper_figures.claims: McNemar, the headline choice (validation runs only), the claims' verdicts."""
import pytest

from paper_figures import claims as C
from paper_figures.metrics import metrics_frame, read_run, value
from tests.pipeline.synthetic import acc, make_run


def test_mcnemar_exact_values():
    # 10 discordant trials, all in one direction: p = 2 / 2^10
    t = C.mcnemar([1] * 10 + [0] * 5, [0] * 10 + [0] * 5)
    assert (t["n10"], t["n01"]) == (10, 0) and t["p_value"] == pytest.approx(2 / 2 ** 10)
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
    for model in ("ns_deconv", "vhe_deconv", "ns_pixelcnn", "vhe_pixelcnn", "resample_deconv", "rescale_deconv",
                  "resample_pixelcnn", "rescale_pixelcnn"):
        _set_accuracy(rd, model, "lake_runs", {"marginal_ratio": 0.2, "conditional": 0.3, "ns_kl": 0.9})
        _set_accuracy(rd, model, "validation_runs", {"marginal_ratio": 0.7, "conditional": 0.5, "ns_kl": 0.1})
    df = metrics_frame(read_run(rd))
    best, reason = C.choose_headline(df)
    assert best == {"deconv": "marginal_ratio", "pixelcnn": "marginal_ratio"}
    assert "validation runs" in reason and "not used" in reason
    assert C.choose_headline(df[df["set"] != "validation_runs"])[0] == {"deconv": "conditional",
                                                                        "pixelcnn": "conditional"}  # the default


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
