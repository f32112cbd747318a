"""paper_figures.metrics: one long-form frame read by exact keys; a missing key names itself."""

import json

import pytest

from paper_figures.metrics import COLUMNS, MetricsError, metrics_frame, read_run, value
from tests.pipeline.synthetic import make_run


def test_every_number_is_one_row_with_its_provenance(tmp_path):
    rd = make_run(tmp_path)
    df = metrics_frame(read_run(rd))
    assert list(df.columns) == COLUMNS
    assert not df.duplicated(["model", "metric", "set", "estimator"]).any()
    r = value(df, "vhe_pixelcnn", "accuracy", "lake_runs", "conditional")
    assert r["value"] == pytest.approx(0.80) and r["n"] == 400 and r["K"] == 5 and r["unit"] == "fraction"
    assert r["steps"] == 100 and r["git_commit"] == "0" * 40
    nll = value(df, "vhe_pixelcnn", "nll", "test")
    assert nll["value"] == 85.0 and nll["K"] == 10 and nll["ci_low"] < 85.0 < nll["ci_high"]
    assert value(df, "vhe_pixelcnn", "neg_bound", "test")["value"] == 88.0
    assert value(df, "mhd_28", "accuracy", "lake_runs", "mhd_28")["experiment"] == "baseline"
    assert value(df, "hierarchical", "bound", "evaluation")["value"] == -120.0
    assert value(df, "factorial", "texture_accuracy", "grid")["value"] == 0.4
    assert value(df, "vae_pixelcnn", "nll") is None  # not evaluated: no row
    assert value(df, "vae_deconv", "kl_c") is None  # null in the JSON (no class latent): no row


@pytest.mark.parametrize("drop", ["nll_estimate", "bounds", "checkpoint", "provenance", "classification"])
def test_a_missing_key_is_an_error_naming_file_and_key(tmp_path, drop):
    rd = make_run(tmp_path)
    path = rd / "metrics" / "vhe_deconv.json"
    m = json.loads(path.read_text())
    del m[drop]
    path.write_text(json.dumps(m))
    with pytest.raises(MetricsError, match=rf"vhe_deconv.json: missing key '{drop}"):
        metrics_frame(read_run(rd))


def test_a_non_number_is_an_error(tmp_path):
    rd = make_run(tmp_path)
    path = rd / "metrics" / "vhe_deconv.json"
    m = json.loads(path.read_text())
    m["nll_estimate"] = "low"
    path.write_text(json.dumps(m))
    with pytest.raises(MetricsError, match="'nll_estimate' should be a number"):
        metrics_frame(read_run(rd))


def test_the_hierarchical_context_measures_are_rows_with_their_intervals(tmp_path):
    from paper_figures.metrics import HIERARCHICAL_CONTEXT_METRICS, INTERVAL_METRICS

    df = metrics_frame(read_run(make_run(tmp_path)))
    assert HIERARCHICAL_CONTEXT_METRICS <= INTERVAL_METRICS
    for metric, set_, est in [
        ("context_gain", "evaluation", None),
        ("context_gain_vs_class", "evaluation", None),
        ("oneshot_accuracy", "within_alphabet", "with_context"),
        ("oneshot_accuracy", "within_alphabet", "no_context"),
        ("alphabet_style", "evaluation", None),
        ("alphabet_style_class_model", "evaluation", None),
    ]:
        r = value(df, "hierarchical", metric, set_, est)
        assert r is not None and r["ci_low"] <= r["value"] <= r["ci_high"], metric
    gain = value(df, "hierarchical", "context_gain", "evaluation")
    assert gain["unit"] == "nats/image" and gain["n"] == 30 and gain["K"] == 10
    assert value(df, "hierarchical", "alphabet_style", "evaluation")["unit"] == "fraction"
