"""pipeline/gpu_check.py (vhe-gpu-check, make gpu-check): the measured GPU rates file, and the cost
model, the rules' runtimes and vhe-estimate --gpu pricing GPU jobs from it (cost.py, assumption 8).
Run with --tiny --device cpu: the same code path as on a GPU, in seconds."""

from __future__ import annotations

import io
import json
import math
import time
import tomllib
from pathlib import Path

import pytest

from experiments.config import load_config
from pipeline import cost, estimate, gpu_check, resources

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "config" / "config.yaml"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One complete --tiny --device cpu check (a generous budget: only the steps bound it)."""
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_rates.json"
    t0 = time.perf_counter()
    rc = gpu_check.main(["--tiny", "--device", "cpu", "--out", str(out), "--budget-s", "300"])
    wall = time.perf_counter() - t0
    return rc, json.loads(out.read_text()), out, wall


@pytest.fixture(scope="module")
def tiny_cfg():
    return gpu_check.tiny_config(load_config(PAPER))


def test_tiny_check_measures_every_model_and_decoder(tiny_run):
    rc, data, out, wall = tiny_run
    assert rc == 0 and wall < 60, (rc, wall)
    assert data["format"] == cost.GPU_RATES_FORMAT and data["version"] == 1
    for key in ("date", "device_name", "torch", "git_commit", "settings", "elapsed_s"):
        assert data[key] is not None, key
    assert data["device"] == "cpu" and data["tiny"] is True and data["complete"] is True and data["stopped"] is None
    assert list(data["models"]) == list(load_config(PAPER)["models"])  # every model of the profile
    for name, e in data["models"].items():
        assert "error" not in e, (name, e)
        assert e["steps"] >= gpu_check.MIN_STEPS and e["warmup_steps"] >= 1, name
        assert e["images_per_s"] > 0 and e["step_ms"] > 0 and e["images"] == e["steps"] * e["batch_size"]
        assert e["peak_memory_mb"] is None  # on a CPU
        assert math.isfinite(e["bound_start"]) and math.isfinite(e["bound_end"]) and e["bound_end"] < 0
        assert e["signature"]["batch_size"] == gpu_check.TINY["train"]["batch_size"]
    assert set(data["decoders"]) == {"deconv", "pixelcnn"}
    for dec, e in data["decoders"].items():
        assert e["model"] == f"vhe_{dec}" and e["decodes_per_s"] > 0 and e["k_target"] == gpu_check.TINY_SETTINGS["k"]
        assert e["max_elements"] == 256 and e["classes"] == 1 and e["images_per_class"] == 20
    p = data["projection"]
    assert p["n_measured"] == len(load_config(PAPER)["models"]) and p["wall_s"] == pytest.approx(
        p["train_s"] + p["eval_s"]
    )
    assert "one at a time" in p["assumption"]
    assert {v["train_source"] for v in p["models"].values()} == {"measured"}


def test_projection_uses_the_measured_rates(tiny_run, tiny_cfg, monkeypatch):
    _, data, out, _ = tiny_run
    name = "vhe_deconv"
    m, d = data["models"][name], data["decoders"]["deconv"]
    tr = tiny_cfg["train"]
    want_train = (
        tr["max_steps"] * tr["batch_size"] / m["images_per_s"]
        + cost.curve_decodes(tr, tr["max_steps"]) / d["decodes_per_s"]
    )
    got = cost.gpu_model_seconds(tiny_cfg, name, gpu_rates=out)
    assert got["train_source"] == got["eval_source"] == "measured"
    assert got["train_s"] == pytest.approx(want_train)
    assert got["eval_s"] == pytest.approx(cost.evaluation_decodes(tiny_cfg, "deconv") / d["decodes_per_s"])
    guess = cost.gpu_model_seconds(tiny_cfg, name, gpu_rates=None)
    assert guess["train_source"] == "guess" and guess["train_s"] != pytest.approx(got["train_s"])
    # the file's own projection is the cost model's
    assert cost.gpu_estimate(tiny_cfg, out)["wall_s"] == pytest.approx(data["projection"]["wall_s"])
    # the rules' runtimes read it through $VHE_GPU_RATES (a fresh config object: resources caches per config)
    monkeypatch.setenv(cost.GPU_RATES_ENV, str(out))
    r = cost.rates()["runtime"]
    fresh = gpu_check.tiny_config(load_config(PAPER))
    assert resources.train_minutes(fresh, name, True) == math.ceil(r["start_min"] + r["safety"] * want_train / 60)
    # a structured model's evaluation job: a class model's decodes at the measured rate
    ev = cost.evaluation_decodes(fresh, "deconv", "class") / d["decodes_per_s"]
    assert resources.eval_minutes(fresh, "hierarchical", True) == math.ceil(r["start_min"] + r["safety"] * ev / 60)


def test_measured_rates_apply_only_to_the_settings_measured(tiny_run, capsys):
    """The tiny file matches no model of the paper profile (other networks and batch): all guessed."""
    _, _, out, _ = tiny_run
    g = cost.gpu_estimate(PAPER, out)
    assert g["n_measured"] == 0 and g["measured"]["path"] == str(out)
    assert g["wall_s"] == pytest.approx(cost.gpu_estimate(PAPER, None)["wall_s"])
    assert estimate.main(["--config", str(PAPER), "--gpu", "--gpu-rates", str(out)]) == 0
    text = capsys.readouterr().out
    assert "matches none of these models" in text and "guess/guess" in text and "one at a time" in text


def test_default_rates_file_and_missing_files(tmp_path, monkeypatch):
    monkeypatch.delenv(cost.GPU_RATES_ENV, raising=False)
    assert cost.gpu_rates_path() == REPO / cost.rates()["gpu_rates"]
    monkeypatch.setenv(cost.GPU_RATES_ENV, str(tmp_path / "absent.json"))
    with pytest.raises(FileNotFoundError):
        cost.gpu_rates()
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError):
        cost.gpu_rates(tmp_path / "other.json")


def test_budget_overrun_stops_cleanly_with_what_was_measured(tmp_path, monkeypatch, capsys):
    real = gpu_check.train_model

    def slow(*args, **kwargs):  # every model takes at least 0.4 s: a 1 s budget runs out after a few
        out = real(*args, **kwargs)
        time.sleep(0.4)
        return out

    monkeypatch.setattr(gpu_check, "train_model", slow)
    out = tmp_path / "partial.json"
    rc = gpu_check.main(["--tiny", "--device", "cpu", "--out", str(out), "--budget-s", "1"])
    assert rc == gpu_check.EXIT_INCOMPLETE
    data = json.loads(out.read_text())
    assert data["complete"] is False and "budget" in data["stopped"] and data["decoders"] == {}
    measured = [n for n, e in data["models"].items() if e.get("images_per_s")]
    n_models = len(load_config(PAPER)["models"])
    assert 1 <= len(measured) < n_models and len(data["models"]) < n_models
    assert data["projection"]["n_measured"] == len(measured)
    srcs = {n: v["train_source"] for n, v in data["projection"]["models"].items()}
    assert all(srcs[n] == "measured" for n in measured) and list(srcs.values()).count("guess") == n_models - len(
        measured
    )
    assert "INCOMPLETE" in capsys.readouterr().out


def test_gate_on_a_gpu_prints_the_projection(monkeypatch):
    monkeypatch.setattr(estimate, "gpu_will_be_used", lambda config: "Fake GPU")
    monkeypatch.delenv(cost.GPU_RATES_ENV, raising=False)
    out = io.StringIO()
    assert estimate.gate(PAPER, cores=8, out=out) == 0
    assert "Fake GPU" in out.getvalue() and "with one GPU" in out.getvalue()


def test_entry_points():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vhe-gpu-check"] == "pipeline.gpu_check:main"
    assert "gpu-check:" in (REPO / "Makefile").read_text()
