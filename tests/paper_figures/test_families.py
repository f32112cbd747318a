"""paper_figures.families: vector against spatial network family, paired by the models' configs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from paper_figures import families as F
from paper_figures import make as PF
from paper_figures import results_page as RP
from paper_figures.metrics import metrics_frame, read_run
from tests.pipeline.synthetic import NUMBERS, make_run, metrics_for

HEADLINE = {"deconv": "conditional", "pixelcnn": "ns_kl"}


def _add_model(rd, name, entry, numbers, *, family="spatial", seed=None, replicate_of=None, summary=None):
    """Add a class model to a synthetic run: its config (``model.nets.family`` as
    experiments.config.training_config writes it: absent for the vector family), metrics JSON
    (tests.pipeline.synthetic layout) and train_summary.json (``summary``)."""
    model = {"name": name, **entry, "nets": {"family": family} if family != "vector" else {}}
    if replicate_of is not None:
        model["replicate_of"] = replicate_of
    cfg = {"run": rd.name, "model": model, **({"seed": seed} if seed is not None else {})}
    (rd / "configs" / f"{name}.json").write_text(json.dumps(cfg))
    (rd / "metrics" / f"{name}.json").write_text(json.dumps(metrics_for(name, entry, **numbers)))
    ck = rd / "checkpoints" / name
    (ck / "final").mkdir(parents=True, exist_ok=True)
    (ck / "final" / "history.csv").write_text("step,bound,val_bound,val_acc\n0,200,210,\n80,190,200,\n")
    (ck / "train_summary.json").write_text(json.dumps(summary if summary is not None else {"steps": 80}))


def _benchmark(rd, name, seconds):
    """benchmarks/train/<name>.tsv as Snakemake writes it (column s: the job's wall seconds)."""
    (rd / "benchmarks" / "train").mkdir(parents=True, exist_ok=True)
    (rd / "benchmarks" / "train" / f"{name}.tsv").write_text(
        f"s\th:m:s\tmax_rss\n{seconds}\t0:00:{int(seconds):02d}\t100.0\n"
    )


def _paired_run(tmp_path):
    """The synthetic run with spatial counterparts of vhe_deconv and ns_pixelcnn (names that say
    nothing: pairs come from the configs) and a spatial NS deconv of another seed (no pair)."""
    rd = make_run(tmp_path)
    _add_model(
        rd,
        "deformable_a",
        {"experiment": "class", "objective": "vhe", "decoder": "deconv"},
        dict(nll=98.0, kl_c=12.0, lake=0.55),
        summary={"steps": 80, "ms_per_step": 625.0, "train_time_s": 50.0},
    )
    _add_model(
        rd,
        "deformable_b",
        {"experiment": "class", "objective": "ns", "decoder": "pixelcnn"},
        dict(nll=88.0, kl_c=3.0, lake=0.40),
        summary={"steps": 40, "train_time_s": 30.0},  # no ms_per_step: train_time_s / steps
    )
    _add_model(
        rd,
        "ns_deconv_spatial",
        {"experiment": "class", "objective": "ns", "decoder": "deconv"},
        dict(nll=97.0, kl_c=5.0, lake=0.70),
        seed=3,  # the vector ns_deconv trained with seed 0: not a pair
    )
    _benchmark(rd, "vhe_deconv", 50.0)  # the vector models' summaries record no step time
    return rd


def _table(rd, headline=HEADLINE):
    run = read_run(rd)
    return F.families(run, metrics_frame(run), headline)


def test_a_vector_and_a_spatial_pair_give_their_numbers_side_by_side(tmp_path):
    table, disp, note = _table(_paired_run(tmp_path))
    assert list(table.columns) == F.COLUMNS
    assert [(r["objective"], r["decoder"]) for _, r in table.iterrows()] == [("vhe", "deconv"), ("ns", "pixelcnn")]
    dc = table.iloc[0]
    assert (dc["vector_model"], dc["spatial_model"], dc["seed"], dc["estimator"]) == (
        "vhe_deconv",
        "deformable_a",
        0,
        "conditional",
    )
    vec = NUMBERS["vhe_deconv"]
    assert dc["vector_lake_acc_pct"] == pytest.approx(100 * vec["lake"])
    assert (dc["vector_lake_acc_ci95_low"], dc["vector_lake_acc_ci95_high"]) == pytest.approx(
        (100 * vec["lake"] - 5, 100 * vec["lake"] + 5)
    )
    assert dc["vector_validation_acc_pct"] == pytest.approx(100 * (vec["lake"] + 0.1))  # synthetic: lake + 10%
    assert dc["vector_nll_nats_per_image"] == pytest.approx(vec["nll"])
    assert dc["vector_bound_nats_per_image"] == pytest.approx(vec["nll"] + 3.0)  # synthetic: nll + 3
    assert dc["vector_kl_c_nats"] == pytest.approx(vec["kl_c"])
    assert dc["spatial_lake_acc_pct"] == pytest.approx(55.0) and dc["spatial_validation_acc_pct"] == pytest.approx(65)
    assert (dc["spatial_nll_nats_per_image"], dc["spatial_kl_c_nats"]) == pytest.approx((98.0, 12.0))
    # step time: the trainer's ms_per_step; the vector model's from its benchmark (50 s / 100 steps)
    assert (dc["spatial_ms_per_step"], dc["spatial_step_time_source"], dc["spatial_steps"]) == (
        625.0,
        "ms_per_step",
        80,
    )
    assert (dc["vector_ms_per_step"], dc["vector_step_time_source"], dc["vector_steps"]) == (500.0, "benchmark", 100)
    assert dc["spatial_train_time_s"] == 50.0 and dc["vector_train_time_s"] is None
    # McNemar on the same 400 trials: 200 vs 220 correct, the first k of each: 20 discordant, all spatial's
    assert (dc["lake_trials"], dc["spatial_right_vector_wrong"], dc["vector_right_spatial_wrong"]) == (400, 20, 0)
    assert dc["mcnemar_p"] == pytest.approx(2 / 2**20)
    px = table.iloc[1]
    assert (px["vector_model"], px["spatial_model"], px["estimator"]) == ("ns_pixelcnn", "deformable_b", "ns_kl")
    # the decoder's headline (ns_kl: the synthetic's lake - 5%): 25% vs 35% -> 40 discordant trials
    assert (px["vector_lake_acc_pct"], px["spatial_lake_acc_pct"]) == pytest.approx((25.0, 35.0))
    assert (px["spatial_right_vector_wrong"], px["vector_right_spatial_wrong"]) == (40, 0)
    assert (px["spatial_ms_per_step"], px["spatial_step_time_source"]) == (750.0, "train_time_s")
    assert px["vector_ms_per_step"] is None and px["vector_step_time_source"] is None  # nothing recorded
    row = disp.iloc[0]
    assert row["models (vector / spatial)"] == "vhe_deconv / deformable_a"
    assert row["Lake runs (%): vector"] == "50.0 [45.0, 55.0]" and row["Lake runs (%): spatial"] == "55.0 [50.0, 60.0]"
    assert row["ms/step: vector"] == "500.0" and row["steps: spatial"] == "80"
    assert row["McNemar spatial vs vector (Lake runs)"].startswith(
        "p = 1.91e-06; spatial right where vector wrong on 20"
    )
    assert disp.iloc[1]["ms/step: vector"] == "n/a"
    assert "Snakemake benchmark" in note and "vhe_deconv" in note and "not recorded for ns_pixelcnn" in note
    assert "deconv: conditional, PixelCNN: ns_kl" in note


def test_different_trials_are_not_compared(tmp_path):
    rd = _paired_run(tmp_path)
    path = rd / "metrics" / "deformable_a.json"
    m = json.loads(path.read_text())
    m["classification"]["lake_runs"]["conditional"]["per_trial"] = [1] * 10
    path.write_text(json.dumps(m))
    table, disp, _ = _table(rd)
    assert table.iloc[0]["mcnemar_p"] is None
    assert disp.iloc[0]["McNemar spatial vs vector (Lake runs)"] == "different trials (10 vs 400), not compared"


def test_a_run_without_spatial_models_gives_an_empty_table_and_still_writes_it(tmp_path):
    rd = make_run(tmp_path)
    table, disp, note = _table(rd)
    assert table.empty and list(table.columns) == F.COLUMNS and disp.empty
    assert "No vector/spatial pair" in note
    PF.make(rd, wandb_mode="disabled")
    written = pd.read_csv(rd / "tables" / "families.csv")
    assert written.empty and list(written.columns) == F.COLUMNS
    md = (rd / "tables" / "families.md").read_text()
    assert md.startswith("## Network families") and "No vector/spatial pair" in md
    assert "Network families" not in RP.page(rd)  # an empty table stays off the results page


def test_the_pairs_are_written_and_shown_on_the_results_page(tmp_path):
    rd = _paired_run(tmp_path)
    PF.make(rd, wandb_mode="disabled")
    written = pd.read_csv(rd / "tables" / "families.csv")
    assert list(written["spatial_model"]) == ["deformable_a", "deformable_b"]
    md = (rd / "tables" / "families.md").read_text()
    assert "vhe_deconv / deformable_a" in md
    assert md.strip() in RP.page(rd)


def test_replicates_are_ignored(tmp_path):
    rd = make_run(tmp_path)
    deconv = {"experiment": "class", "objective": "vhe", "decoder": "deconv"}
    _add_model(rd, "vhe_deconv_spatial", deconv, dict(nll=98.0, kl_c=12.0, lake=0.55))
    before, _, _ = _table(rd)
    # a spatial replicate and a vector replicate of the same seed: never a pair, never a row's model
    rep = dict(seed=1, replicate_of="vhe_deconv_spatial")
    _add_model(rd, "vhe_deconv_spatial_seed1", deconv, dict(nll=50.0, kl_c=1.0, lake=0.9), **rep)
    rep = dict(family="vector", seed=1, replicate_of="vhe_deconv")
    _add_model(rd, "vhe_deconv_seed1", deconv, dict(nll=60.0, kl_c=2.0, lake=0.1), **rep)
    # a spatial replicate of a model with no spatial base: no row either
    pixel = {"experiment": "class", "objective": "vhe", "decoder": "pixelcnn"}
    _add_model(rd, "vhe_pixelcnn_seed2", pixel, dict(nll=70.0, kl_c=3.0, lake=0.2), seed=2, replicate_of="vhe_pixelcnn")
    after, _, _ = _table(rd)
    assert len(after) == 1 and (after.iloc[0]["vector_model"], after.iloc[0]["spatial_model"]) == (
        "vhe_deconv",
        "vhe_deconv_spatial",
    )
    pd.testing.assert_frame_equal(before, after)


def test_the_family_comes_from_the_config(tmp_path):
    rd = _paired_run(tmp_path)
    run = read_run(rd)
    assert F.model_family(run, "vhe_deconv") == "vector"  # no nets.family: the default
    assert F.model_family(run, "deformable_a") == "spatial"
    cfg = {"run": rd.name, "nets": {"family": "spatial"}, "model": {"name": "g", "experiment": "class"}}
    (rd / "configs" / "g.json").write_text(json.dumps(cfg))
    assert F.model_family(run, "g") == "spatial"  # a config without model.nets: its global nets
