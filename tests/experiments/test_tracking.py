"""experiments.tracking: training and evaluation land in one W&B run (offline files checked record
by record); the summary page is its own run; mode disabled writes nothing."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments import tracking
from experiments.config import load_config, model_config
from experiments.trainer import Trainer
from tests.experiments import tiny_config
from tests.wandb_records import runs

pytest.importorskip("wandb")


def _cfg(tmp_path, mode):
    return model_config(load_config(tiny_config(tmp_path, wandb={"mode": mode, "project": "test"},
                                                train={"max_steps": 2, "val_every": 2, "log_every": 1})),
                        "vhe_deconv")


def test_evaluation_lands_in_the_training_run(tmp_path):
    from tests.pipeline.synthetic import write_png

    cfg = _cfg(tmp_path, "offline")
    out = tmp_path / "ckpt"
    summary = Trainer(cfg, out).fit()
    run_id = summary["wandb_id"]
    assert run_id and json.loads((out / "train_summary.json").read_text())["wandb_id"] == run_id
    rows = pd.DataFrame([{"metric": "nll", "set": "test", "estimator": None, "value": 123.5, "ci_low": None,
                          "ci_high": None, "n": 4, "K": 3},
                         {"metric": "accuracy", "set": "lake_runs", "estimator": "conditional", "value": 0.25,
                          "ci_low": 0.1, "ci_high": 0.5, "n": 20, "K": 3}])
    png = tmp_path / "samples.png"
    write_png(png)
    assert tracking.log_evaluation(cfg, "vhe_deconv", out / "best.pt", rows, {"eval/samples": png})
    found = runs(tmp_path / "results" / "wandb")
    assert len(found) == 2 and {r["id"] for r in found} == {run_id}  # one W&B run, two offline sessions
    train, evaluation = found
    assert train["job_type"] == "train" and train["group"] == "test" and train["name"] == "test/vhe_deconv"
    assert "loss" in train["history_keys"] and "val_bound" in train["history_keys"]
    assert evaluation["summary"]["eval/nll/test"] == 123.5
    assert evaluation["summary"]["eval/accuracy/lake_runs/conditional"] == 0.25
    assert evaluation["media"] == {"eval/metrics": "table-file", "eval/classification": "table-file",
                                   "eval/samples": "image-file"}
    # what scripts/check_outputs.py --wandb asks of a run: here only the summary run is missing
    assert tracking.missing_tracking(tmp_path / "results" / "wandb", "test", ["vhe_deconv"]) == [
        "test/summary: no summary run with tables"]
    assert "test/other: no training history" in tracking.missing_tracking(
        tmp_path / "results" / "wandb", "test", ["vhe_deconv", "other"])


def test_an_untracked_training_gets_an_evaluate_run(tmp_path):
    cfg = _cfg(tmp_path, "disabled")
    out = tmp_path / "ckpt"
    assert Trainer(cfg, out).fit()["wandb_id"] is None
    assert not (tmp_path / "results" / "wandb").exists()  # disabled: nothing written
    rows = pd.DataFrame([{"metric": "nll", "set": "test", "estimator": None, "value": 1.0, "ci_low": None,
                          "ci_high": None, "n": 1, "K": 1}])
    assert not tracking.log_evaluation(cfg, "vhe_deconv", out / "best.pt", rows, {})  # still disabled
    cfg["wandb"]["mode"] = "offline"
    assert tracking.log_evaluation(cfg, "vhe_deconv", out / "best.pt", rows, {})
    (only,) = runs(tmp_path / "results" / "wandb")
    assert only["job_type"] == "evaluate" and only["summary"]["eval/nll/test"] == 1.0
    assert only["exited"]


def test_a_session_without_its_exit_record_is_waited_for_then_reported_unfinished(tmp_path):
    """A file W&B's service has not finished (here: its header alone) reads as not exited; the
    tests' reader waits for the exit record up to its timeout, then returns what it found."""
    cfg = _cfg(tmp_path, "offline")
    rows = pd.DataFrame([{"metric": "nll", "set": "test", "estimator": None, "value": 1.0, "ci_low": None,
                          "ci_high": None, "n": 1, "K": 1}])
    assert tracking.log_evaluation(cfg, "vhe_deconv", tmp_path / "best.pt", rows, {})
    wdir = tmp_path / "results" / "wandb"
    (done,) = tracking.offline_runs(wdir)
    assert done["exited"] and done["job_type"] == "evaluate"
    path = Path(done["file"])
    path.write_bytes(path.read_bytes()[:tracking.HEADER])  # as if nothing after the header were written yet
    (cut,) = tracking.offline_runs(wdir)
    assert not cut["exited"] and "job_type" not in cut
    t0 = time.monotonic()
    (waited,) = runs(wdir, timeout=1.0)
    assert not waited["exited"] and time.monotonic() - t0 >= 1.0


def test_the_summary_page_is_a_run_of_its_own(tmp_path):
    from paper_figures import make as PF
    from tests.pipeline.synthetic import make_run

    rd = make_run(tmp_path)
    for p in (rd / "configs").glob("*.json"):
        c = json.loads(p.read_text())
        p.write_text(json.dumps({**c, "wandb": {"mode": "disabled", "project": "test"}}))
    assert PF.main(["--run-dir", str(rd)]) == 0
    assert not (rd / "wandb").exists()
    assert PF.main(["--run-dir", str(rd), "--wandb-mode", "offline"]) == 0
    (summary,) = runs(rd / "wandb")
    assert summary["job_type"] == "evaluate" and summary["name"] == "synthetic/summary"
    assert summary["summary"]["headline_estimator"] == "conditional"
    media = summary["media"]
    assert {media[k] for k in ("objectives", "claims", "classification", "structured", "metrics")} == {"table-file"}
    assert media["learning_curves"] == media["kl_c"] == "image-file"
