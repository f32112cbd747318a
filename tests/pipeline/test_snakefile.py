"""The pipeline: Snakefile dry runs, config validation, paper_figures.make, check_outputs.

Every Snakemake call here is a dry run (or --touch) in a temporary working directory, so the
tests are fast and never write into the repository's results/.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline.helpers import (
    REPO,
    SMOKE,
    SNAKEFILE,
    job_counts,
    needs_smoke,
    planned_jobs,  # noqa: F401
    pretend_finished,
    smoke_cfg,
    snakemake,
)
from tests.pipeline.synthetic import make_run, model_entries

pytestmark = pytest.mark.skipif(not SNAKEFILE.is_file(), reason="no Snakefile")


# --------------------------------------------------------------------------- Snakefile
@needs_smoke
def test_dry_run_plans_every_model(tmp_path):
    from pipeline import outputs as OUT

    cfg = smoke_cfg()
    proc = snakemake(tmp_path, "-n")
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    models = OUT.models(cfg)
    assert counts.get("train") == len(models), counts
    assert counts.get("evaluate") == len(OUT.class_models(cfg)), counts
    assert counts.get("evaluate_structured", 0) == len(OUT.structured_models(cfg)), counts
    assert counts.get("paper_figures") == 1 and counts.get("all") == 1, counts
    for rule in ("prepare_background", "prepare_evaluation", "lake_runs", "within_alphabet_runs", "textured"):
        assert counts.get(rule) == 1, (rule, counts)
    # one self-contained JSON per model, written by a rule (a dry run writes nothing)
    assert counts.get("model_config") == len(models) and counts.get("evaluation_config") == 1, counts
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()
    # training depends on the model's JSON and data, never on the profile YAML
    jobs = planned_jobs(out)
    train_inputs = [f["input"] for r, f in jobs if r == "train"]
    assert len(train_inputs) == len(models)
    for inputs in train_inputs:
        assert "/configs/" in inputs and ".yaml" not in inputs, inputs
    # every rule has a log and a benchmark
    for rule, fields in jobs:
        if rule != "all":
            assert "log" in fields and "benchmark" in fields, (rule, fields)


@needs_smoke
def test_changing_one_model_retrains_only_that_model(tmp_path):
    from experiments.config import load_config
    from pipeline import outputs as OUT
    import yaml

    cfg = pretend_finished(tmp_path)

    raw = yaml.safe_load(SMOKE.read_text())
    name = OUT.class_models(cfg)[0]
    raw.setdefault("models", dict(cfg["models"]))
    entry = dict(raw["models"][name])
    entry["train"] = {**(entry.get("train") or {}), "lr": 0.00123}
    raw["models"][name] = entry
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(raw))
    load_config(edited)  # still valid
    proc = snakemake(tmp_path, "-n", configfile=edited)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts.get("train") == 1 and counts.get("evaluate") == 1 and counts.get("model_config") == 1, counts
    assert counts.get("paper_figures") == 1 and sum(counts.values()) == 5, counts  # + all
    assert re.search(rf"wildcards: model={re.escape(name)}\b", proc.stdout), proc.stdout[-2000:]


def test_bad_config_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: badtest\ntrian:\n  max_steps: 5\n")
    proc = snakemake(tmp_path, "-n", configfile=bad, check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "trian" in err and "train" in err, err[-2000:]

    bad.write_text("run: badtest\ntrain:\n  lr: fast\n")
    proc = snakemake(tmp_path, "-n", configfile=bad, check=False)
    assert proc.returncode != 0
    assert "train.lr" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]


# --------------------------------------------------------------------------- paper_figures
def _claims(rd: Path) -> list[dict]:
    with open(rd / "tables" / "claims.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_paper_figures_on_synthetic_metrics(tmp_path):
    from paper_figures import make as PF
    from pipeline.outputs import FIGURE_FORMATS, FIGURES, TABLES

    rd = make_run(tmp_path)
    assert PF.main(["--run-dir", str(rd)]) == 0
    for t in TABLES:
        assert (rd / "tables" / t).stat().st_size > 0, t
    for f in FIGURES:
        for ext in FIGURE_FORMATS:
            assert (rd / "figures" / f"{f}.{ext}").stat().st_size > 0, (f, ext)
    for s in ("summary.md", "summary.html"):
        assert (rd / s).stat().st_size > 0
    html = (rd / "summary.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # curves, KL, montage, 2 structured grids
    # the learning curves side by side (synthetic: accuracy at steps 0, 50, 100 of the class models)
    curves = (rd / "tables" / "learning_curves.md").read_text()
    i = list(model_entries()).index("vhe_pixelcnn")
    cell = f"40% / {200 + i:.1f}"  # step 100: val_acc 0.4, val_bound 200 + i
    assert "vhe_pixelcnn" in curves and "vae_deconv" not in curves and cell in curves
    assert cell in (rd / "summary.md").read_text() and cell in html
    # every table comes from metrics.csv: its numbers are the ones the tables show
    import pandas as pd

    metrics = pd.read_csv(rd / "tables" / "metrics.csv")
    assert {"model", "metric", "set", "estimator", "value", "ci_low", "ci_high", "K", "steps", "git_commit"} <= set(
        metrics.columns
    )
    vhe_lake = metrics[
        (metrics["model"] == "vhe_pixelcnn")
        & (metrics["metric"] == "accuracy")
        & (metrics["set"] == "lake_runs")
        & (metrics["estimator"] == "conditional")
    ]
    assert vhe_lake["value"].tolist() == [0.8]
    structured = (rd / "tables" / "structured.md").read_text()
    assert "grid cells with the column's texture (%)" in structured and "40.0" in structured

    verdicts = {(r["claim"][:30], r["scope"]): r["verdict"] for r in _claims(rd)}
    assert len(verdicts) == 9
    by_start = lambda s, scope: next(v for (c, sc), v in verdicts.items() if c.startswith(s) and sc == scope)  # noqa: E731
    assert by_start("With a PixelCNN decoder", "PixelCNN") == "holds"
    assert by_start("VHE classifies better", "deconv") == "does not hold"
    assert by_start("VHE classifies better", "PixelCNN") == "holds"
    assert by_start("VHE's test likelihood", "deconv") == "does not hold"
    assert by_start("VHE's test likelihood", "PixelCNN") == "holds"
    assert by_start("VHE beats Lake's modified-Haus", "vhe_pixelcnn") == "holds"  # 80% vs 55% on 400 trials
    assert by_start("Factorial VHE: generated cells", "factorial") == "holds"  # 40% vs 12.5%, 20% vs 2.5% of 320
    assert by_start("Hierarchical VHE: alphabet con", "hierarchical") == "holds"  # gains [2.02, 3.98], [11.8, 14.2]
    assert by_start("Hierarchical VHE: new charact", "hierarchical") == "holds"  # style [7%, 17%], chance 5%
    assert all(r["rule"] for r in _claims(rd))
    # classification: the headline is chosen on the validation runs (conditional is best there)
    with open(rd / "tables" / "classification.csv", newline="") as f:
        cls = list(csv.DictReader(f))
    assert {r["estimator"] for r in cls if r["headline"] == "True"} == {"conditional"}
    assert {r["model"] for r in cls if r["experiment"] == "baseline"} == {
        "pixel_nn_28",
        "mhd_28",
        "pixel_nn_105",
        "mhd_105",
    }
    md = (rd / "tables" / "classification.md").read_text()
    assert "Lake runs: headline estimator" in md and "(conditional)" in md and "Lake's MHD (105x105)" in md
    assert "tabular" in (rd / "tables" / "classification.tex").read_text()

    with open(rd / "tables" / "objectives.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10  # 5 objectives x 2 decoders
    vhe_px = next(r for r in rows if r["objective"] == "VHE" and r["decoder"] == "PixelCNN")
    assert float(vhe_px["lake_20way_1shot_acc"]) == pytest.approx(80.0)
    assert float(vhe_px["paper_lake_20way_1shot_acc"]) == pytest.approx(81.3)
    assert float(vhe_px["diff_lake_20way_1shot_acc"]) == pytest.approx(-1.3)
    vae_px = next(r for r in rows if r["objective"] == "VAE" and r["decoder"] == "PixelCNN")
    assert vae_px["nll_nats_per_image"] == ""  # skipped model: empty in the CSV ...
    assert "n/a" in (rd / "tables" / "objectives.md").read_text()  # ... n/a in the display tables
    assert "tabular" in (rd / "tables" / "objectives.tex").read_text()


def test_paper_figures_missing_everything(tmp_path):
    from paper_figures import make as PF

    rd = tmp_path / "results" / "empty"
    rd.mkdir(parents=True)
    assert PF.main(["--run-dir", str(rd)]) == 0
    assert {r["verdict"] for r in _claims(rd)} == {"not measured"}
    assert (rd / "figures" / "samples_montage.png").is_file()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        '{"nll_estimate": "low"}',
        '{"lake_runs": {"accuracy": 0.5, "ci95": [0.4]}}',
        '{"classification": {"n_samples": 2, "lake_runs": {"conditional": {"accuracy": 0.5}}}}',
    ],
)
def test_paper_figures_fails_on_malformed_metrics(tmp_path, content, capsys):
    from paper_figures import make as PF

    rd = make_run(tmp_path)
    (rd / "metrics" / "vhe_deconv.json").write_text(content)
    assert PF.main(["--run-dir", str(rd)]) != 0
    assert "vhe_deconv.json" in capsys.readouterr().err


# --------------------------------------------------------------------------- check_outputs
def test_check_outputs_reports_missing(tmp_path):
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text("run: chk\nmodels:\n  vhe_deconv: {experiment: class, objective: vhe, decoder: deconv}\n")
    script = [
        sys.executable,
        str(REPO / "scripts" / "check_outputs.py"),
        "--configfile",
        str(cfgfile),
        "--root",
        str(tmp_path),
    ]
    listed = subprocess.run(script + ["--list"], capture_output=True, text=True, check=True).stdout.split()
    assert any(p.endswith("checkpoints/vhe_deconv/final/best.pt") for p in listed)
    assert any(p.endswith("metrics/vhe_deconv.json") for p in listed)
    assert any(p.endswith("summary.html") for p in listed)
    for p in listed:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        Path(p).write_text("x")
    # placeholders hold no metrics: presence only (the content check: tests/scripts/test_check_outputs.py)
    ok = subprocess.run(script + ["--no-content"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    victim = next(Path(p) for p in listed if p.endswith("best.pt"))
    victim.unlink()
    (tmp_path / "results" / "chk" / "summary.md").write_text("")
    bad = subprocess.run(script + ["--report", "report.html"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert str(victim) in bad.stderr and "summary.md" in bad.stderr and "report.html" in bad.stderr

    typo = tmp_path / "typo.yaml"
    typo.write_text("run: chk\nmodles: {}\n")
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_outputs.py"), "--configfile", str(typo)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "modles" in res.stderr
