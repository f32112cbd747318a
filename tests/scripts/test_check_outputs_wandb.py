"""scripts/check_outputs.py --wandb: every trained model needs its training run, its model artifact
and an evaluation run in its group, and the profile its summary run (read from W&B's offline files);
a wandb older than the project's floor is reported as such."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments import tracking
from experiments.config import load_config, model_config
from experiments.trainer import Trainer
from tests.experiments import tiny_config
from tests.wandb_records import runs

pytest.importorskip("wandb")

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_outputs", REPO / "scripts" / "check_outputs.py")
co = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(co)


def test_wandb_check_asks_for_artifact_eval_run_and_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the config's paths are relative to the working directory
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    raw = tiny_config(
        Path("."), wandb={"mode": "offline", "project": "test"}, train={"max_steps": 2, "val_every": 2, "log_every": 1}
    )
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(raw))
    cfg = model_config(load_config(raw), "vhe_deconv")
    out = tmp_path / "ckpt"
    Trainer(cfg, out).fit()
    wdir = tmp_path / "results" / "wandb"
    runs(wdir)

    assert co.check_wandb(str(profile), tmp_path) == 1
    err = capsys.readouterr().err
    assert "test/vhe_deconv: no evaluation run (job_type eval)" in err and "test/summary: no summary run" in err
    assert "no training run" not in err and "no model artifact" not in err  # training logged both

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
    assert tracking.log_evaluation(cfg, "vhe_deconv", out / "best.pt", rows, {})
    wb = tracking.open_run(cfg, "summary", job_type="summary", run_id=tracking.summary_run_id(cfg))
    assert tracking.log_tables(wb, {"metrics": rows})
    tracking.finish(wb)
    runs(wdir)
    assert co.check_wandb(str(profile), tmp_path) == 0
    assert "model artifact and evaluation run of all 1 models" in capsys.readouterr().out

    import wandb

    monkeypatch.setattr(wandb, "__version__", "0.18.7")
    assert co.check_wandb(str(profile), tmp_path) == 1
    assert "wandb 0.18.7 is older than 0.19.9" in capsys.readouterr().err
