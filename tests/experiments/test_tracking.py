"""experiments.tracking, checked record by record in W&B's offline files: per model a training run
that logs its best.pt as a model artifact and an evaluation run of its own in the same group; the
summary page is one run however often it is rerun; a wandb too old is an error, not silence;
mode disabled writes nothing."""

from __future__ import annotations

import json
import logging
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


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Run in tmp_path (the config's paths are relative to the working directory); W&B stages
    artifact files (the checkpoint, tables) under WANDB_DATA_DIR until a sync."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))


def _cfg(tmp_path, mode):
    """The tiny model's config; its paths (resources/, results/) relative, i.e. below tmp_path."""
    return model_config(
        load_config(
            tiny_config(
                Path("."),
                wandb={"mode": mode, "project": "test"},
                train={"max_steps": 2, "val_every": 2, "log_every": 1},
            )
        ),
        "vhe_deconv",
    )


def _rows(nll=123.5):
    return pd.DataFrame(
        [
            {
                "metric": "nll",
                "set": "test",
                "estimator": None,
                "value": nll,
                "ci_low": None,
                "ci_high": None,
                "n": 4,
                "K": 3,
            },
            {
                "metric": "accuracy",
                "set": "lake_runs",
                "estimator": "conditional",
                "value": 0.25,
                "ci_low": 0.1,
                "ci_high": 0.5,
                "n": 20,
                "K": 3,
            },
        ]
    )


def test_training_logs_its_model_artifact_and_the_evaluation_is_a_run_of_its_own(tmp_path):
    from tests.pipeline.synthetic import write_png

    cfg = _cfg(tmp_path, "offline")
    out = tmp_path / "ckpt"
    summary = Trainer(cfg, out).fit()
    run_id = summary["wandb_id"]
    assert run_id and json.loads((out / "train_summary.json").read_text())["wandb_id"] == run_id
    png = tmp_path / "samples.png"
    write_png(png)
    assert tracking.log_evaluation(cfg, "vhe_deconv", out / "best.pt", _rows(), {"eval/samples": png})
    wdir = tmp_path / "results" / "wandb"
    found = runs(wdir)  # by job type: two sessions started in the same second sort by id, not by start
    (train,) = [r for r in found if r["job_type"] == "train"]
    (evaluation,) = [r for r in found if r["job_type"] == "eval"]

    assert (train["id"], train["job_type"], train["group"], train["name"]) == (
        run_id,
        "train",
        "test/vhe_deconv",
        "test/vhe_deconv",
    )
    assert train["tags"] == ["test"]
    assert "loss" in train["history_keys"] and "val_bound" in train["history_keys"]
    (model,) = [a for a in train["artifacts"] if a["type"] == "model"]
    assert model["name"] == "test-vhe_deconv" and {"best", "final", "latest"} <= set(model["aliases"])
    meta = model["metadata"]
    assert meta["best_val_bound"] == pytest.approx(summary["best_val_bound"])
    assert meta["steps"] == 2 and meta["best_step"] == summary["best_step"] and meta["status"] == "completed"
    assert set(meta["best_val_kl"]) == set(summary["best_val_kl"])

    # not a resumed training run: its own id, in the training run's group
    assert (evaluation["id"], evaluation["job_type"], evaluation["group"], evaluation["name"]) == (
        f"{run_id}-eval",
        "eval",
        "test/vhe_deconv",
        "test/vhe_deconv/eval",
    )
    assert evaluation["summary"]["eval/nll/test"] == 123.5
    assert evaluation["summary"]["eval/accuracy/lake_runs/conditional"] == 0.25
    assert evaluation["summary"]["eval/checkpoint_step"] == summary["best_step"]
    assert evaluation["media"] == {
        "eval/metrics": "table-file",
        "eval/classification": "table-file",
        "eval/samples": "image-file",
    }
    assert evaluation["steps"] == [summary["best_step"]]  # one history row, at the checkpoint's step
    assert "eval/nll/test" in evaluation["history_keys"]
    assert evaluation["artifacts"] and all(a["type"] != "model" for a in evaluation["artifacts"])  # its tables

    # what scripts/check_outputs.py --wandb asks of a run: here only the summary run is missing
    assert tracking.missing_tracking(wdir, "test", ["vhe_deconv"]) == ["test/summary: no summary run with tables"]
    other = tracking.missing_tracking(wdir, "test", ["vhe_deconv", "other"])
    assert [g for g in other if g.startswith("test/other")] == [
        "test/other: no training run with history (job_type train)",
        "test/other: no model artifact test-other (type model, alias best) logged by its training run",
        "test/other: no evaluation run (job_type eval) with eval/* summary values",
    ]

    # re-evaluating updates the same evaluation run: a second offline session of its id (wandb
    # 0.19.9 writes a session started in the same second as the first into the same folder)
    assert tracking.log_evaluation(cfg, "vhe_deconv", out / "best.pt", _rows(nll=99.0), {})
    found = runs(wdir)
    evals = [r for r in found if r["job_type"] == "eval"]
    assert [r["id"] for r in found if r["job_type"] == "train"] == [run_id]
    assert {r["id"] for r in evals} == {f"{run_id}-eval"}
    assert evals[-1]["summary"]["eval/nll/test"] == 99.0


def test_a_finished_training_rerun_logs_no_second_artifact(tmp_path):
    """fit() on a finished run opens no W&B run: the artifact of the first session stands alone."""
    cfg = _cfg(tmp_path, "offline")
    Trainer(cfg, tmp_path / "ckpt").fit()
    Trainer(cfg, tmp_path / "ckpt").fit()
    (train,) = runs(tmp_path / "results" / "wandb")
    assert [a["name"] for a in train["artifacts"] if a["type"] == "model"] == ["test-vhe_deconv"]


def test_an_untracked_training_gets_an_eval_run_with_a_stable_id(tmp_path):
    cfg = _cfg(tmp_path, "disabled")
    out = tmp_path / "ckpt"
    assert Trainer(cfg, out).fit()["wandb_id"] is None
    assert not (tmp_path / "results" / "wandb").exists()  # disabled: nothing written
    rows = pd.DataFrame(
        [
            {
                "metric": "nll",
                "set": "test",
                "estimator": None,
                "value": 1.0,
                "ci_low": None,
                "ci_high": None,
                "n": 1,
                "K": 1,
            }
        ]
    )
    assert not tracking.log_evaluation(cfg, "vhe_deconv", out / "best.pt", rows, {})  # still disabled
    cfg["wandb"]["mode"] = "offline"
    assert tracking.log_evaluation(cfg, "vhe_deconv", out / "best.pt", rows, {})
    (only,) = runs(tmp_path / "results" / "wandb")
    assert only["job_type"] == "eval" and only["group"] == "test/vhe_deconv" and only["exited"]
    assert only["id"] == tracking.eval_run_id(cfg, "vhe_deconv", None)
    assert only["summary"]["eval/nll/test"] == 1.0


def test_a_session_without_its_exit_record_is_waited_for_then_reported_unfinished(tmp_path):
    """A file W&B's service has not finished (here: its header alone) reads as not exited; the
    tests' reader waits for the exit record up to its timeout, then returns what it found."""
    cfg = _cfg(tmp_path, "offline")
    rows = pd.DataFrame(
        [
            {
                "metric": "nll",
                "set": "test",
                "estimator": None,
                "value": 1.0,
                "ci_low": None,
                "ci_high": None,
                "n": 1,
                "K": 1,
            }
        ]
    )
    assert tracking.log_evaluation(cfg, "vhe_deconv", tmp_path / "best.pt", rows, {})
    wdir = tmp_path / "results" / "wandb"
    (done,) = runs(wdir)  # finish() may return before W&B's service has written the exit record
    assert done["exited"] and done["job_type"] == "eval"
    path = Path(done["file"])
    path.write_bytes(path.read_bytes()[: tracking.HEADER])  # as if nothing after the header were written yet
    (cut,) = tracking.offline_runs(wdir)
    assert not cut["exited"] and "job_type" not in cut
    t0 = time.monotonic()
    (waited,) = runs(wdir, timeout=1.0)
    assert not waited["exited"] and time.monotonic() - t0 >= 1.0


def test_the_summary_page_is_one_run_however_often_it_is_made(tmp_path):
    from paper_figures import make as PF
    from tests.pipeline.synthetic import make_run

    rd = make_run(tmp_path)
    for p in (rd / "configs").glob("*.json"):
        c = json.loads(p.read_text())
        p.write_text(json.dumps({**c, "wandb": {"mode": "disabled", "project": "test"}}))
    assert PF.main(["--run-dir", str(rd)]) == 0
    assert not (rd / "wandb").exists()
    assert PF.main(["--run-dir", str(rd), "--wandb-mode", "offline"]) == 0
    assert PF.main(["--run-dir", str(rd), "--wandb-mode", "offline"]) == 0
    found = runs(rd / "wandb")  # one offline session per call (wandb 0.19.9: one, in the same second)
    assert {r["id"] for r in found} == {tracking.summary_run_id(PF.tracking_config(PF.read_run(rd), "offline"))}
    for summary in found:
        assert summary["job_type"] == "summary" and summary["name"] == "synthetic/summary"
        assert summary["group"] == "synthetic/summary"
        assert summary["summary"]["headline_estimator"] == "conditional"
        media = summary["media"]
        assert {media[k] for k in ("objectives", "claims", "classification", "structured", "metrics")} == {"table-file"}
        assert media["learning_curves"] == media["kl_c"] == "image-file"


def test_the_ids_are_stable_and_differ_by_results_folder_run_and_model(tmp_path):
    a = {"run": "smoke", "paths": {"results": str(tmp_path / "a")}}
    b = {"run": "smoke", "paths": {"results": str(tmp_path / "b")}}
    assert tracking.summary_run_id(a) == tracking.summary_run_id(dict(a)) != tracking.summary_run_id(b)
    assert tracking.summary_run_id(a) != tracking.summary_run_id({**a, "run": "cpu"})
    assert tracking.eval_run_id(a, "m", "abc12345") == "abc12345-eval"
    assert tracking.eval_run_id(a, "m", None) != tracking.eval_run_id(a, "n", None)
    assert tracking.eval_run_id(a, "m", None) == tracking.eval_run_id(a, "m", None)


def test_a_too_old_or_missing_wandb_is_an_error_not_silence(tmp_path, monkeypatch, caplog):
    import sys

    import wandb

    cfg = _cfg(tmp_path, "offline")
    assert tracking.wandb_problem() is None  # the installed one is new enough
    monkeypatch.setattr(wandb, "__version__", "0.16.6")
    problem = tracking.wandb_problem()
    assert "wandb 0.16.6 is older than 0.19.9" in problem and "wandb: {mode: disabled}" in problem
    monkeypatch.setattr(tracking, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="experiments.tracking"):
        assert tracking.open_run(cfg, "vhe_deconv", job_type="train") is None
        assert not tracking.log_evaluation(cfg, "vhe_deconv", tmp_path / "best.pt", _rows(), {})
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "older than 0.19.9" in errors[0].getMessage()  # once, then warnings
    assert any(r.levelno == logging.WARNING and "older than" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "results" / "wandb").exists()
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    assert "wandb is not installed" in tracking.wandb_problem()
    cfg["wandb"]["mode"] = "disabled"
    assert tracking.open_run(cfg, "vhe_deconv", job_type="train") is None  # disabled: no check at all


def test_the_floor_matches_pyproject():
    import re
    import tomllib

    root = Path(__file__).resolve().parents[2]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if re.match(r"wandb\b", d)]
    assert spec == "wandb>=" + ".".join(map(str, tracking.MIN_WANDB))
