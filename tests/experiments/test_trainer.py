"""experiments.trainer / experiments.train: files, exact resumption, NaN stop, early stopping, CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.checkpoints import read_checkpoint
from experiments.config import dump_json_if_changed, load_config, model_config
from experiments.registry import build_experiment, load_checkpoint
from experiments.trainer import Trainer, TrainingDiverged, lr_lambda
from tests.experiments import tiny_config

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"images_per_s", "time_s", "data_share"}


@pytest.fixture(autouse=True)
def _restore_threads():
    """The trainer applies train.num_threads (1 in tiny_config) to the process; undo it."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def mcfg(tmp_path, name="vhe_deconv", models=None, **overrides):
    return model_config(load_config(tiny_config(tmp_path, models=models, **overrides)), name)


def read_history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_few_steps_write_every_file(tmp_path):
    cfg = mcfg(
        tmp_path, train={"max_steps": 5, "val_every": 2, "checkpoint_every": 2, "log_every": 2, "sample_every": 4}
    )
    out = tmp_path / "ckpt"
    summary = Trainer(cfg, out).fit()
    for f in (
        "best.pt",
        "last.pt",
        "config.json",
        "provenance.json",
        "history.csv",
        "train_summary.json",
        "samples.png",
    ):
        assert (out / f).is_file(), f
    assert summary == json.loads((out / "train_summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 5
    assert math.isfinite(summary["best_val_bound"]) and summary["best_val_bound"] < 0
    assert set(summary["final_val_kl"]) == {"c", "z"} and summary["images_per_s"] > 0
    assert 0 <= summary["data_share"] < 1 and summary["wall_time_s"] > 0
    hist = read_history(out / "history.csv")
    assert [int(r["step"]) for r in hist] == [2, 4, 5]  # log/val every 2 steps and the last step
    assert {"loss", "bound", "kl_c", "kl_z", "lr", "images_per_s", "val_bound", "val_kl_c"} <= set(hist[0])
    assert all(r["val_bound"] for r in hist)
    assert json.loads((out / "config.json").read_text()) == cfg
    prov = json.loads((out / "provenance.json").read_text())
    assert {"git_commit", "torch", "device", "hostname", "date", "seed"} <= set(prov)
    assert prov["torch"] == torch.__version__ and prov["seed"] == 0
    last = read_checkpoint(out / "last.pt")
    assert last["step"] == 5 and {"model", "optimizer", "scheduler", "train_loader", "rng"} <= set(last)
    assert {"torch", "numpy", "python"} <= set(last["rng"])
    model, cfg2, best = load_checkpoint(out / "best.pt", device="cpu")
    assert best["step"] == summary["best_step"] and best["val_bound"] == summary["best_val_bound"]
    assert cfg2["model"]["name"] == "vhe_deconv" and not model.training
    # a finished run started again only rewrites the summary
    again = Trainer(cfg, out).fit()
    assert again["steps"] == 5 and again["best_val_bound"] == summary["best_val_bound"]


#: configurations the profiles train with, each resumed bit for bit (see test_exact_resume)
RESUME_CASES = {
    "deconv": {},
    "targets_per_class_2": {"train": {"targets_per_class": 2}},
    "one_shot_curve": {
        "train": {"one_shot_curve": {"every": 3, "n_runs": 2, "n_way": 2, "method": "conditional", "n_samples": 2}}
    },
    "pixelcnn": {"model": ("vhe_pixelcnn", {"experiment": "class", "objective": "vhe", "decoder": "pixelcnn"})},
    "bf16_cpu": {"train": {"amp_cpu": True}},
}


def _assert_same_training_state(straight, resumed, dir_a, dir_b):
    """Weights, optimiser (every moment and step count), scheduler, history (timing columns aside)
    and summary of two trainers are identical."""
    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    oa, ob = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert oa["state"].keys() == ob["state"].keys() and oa["param_groups"] == ob["param_groups"]
    for i in oa["state"]:
        for key, v in oa["state"][i].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(ob["state"][i][key])), (i, key)
    assert straight.scheduler.state_dict() == resumed.scheduler.state_dict()
    ha, hb = read_history(dir_a / "history.csv"), read_history(dir_b / "history.csv")
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in ha] == [
        {k: v for k, v in r.items() if k not in TIMING} for r in hb
    ]
    sum_a = json.loads((dir_a / "train_summary.json").read_text())
    sum_b = json.loads((dir_b / "train_summary.json").read_text())
    assert sum_a["best_val_bound"] == sum_b["best_val_bound"] and sum_b["steps"] == sum_a["steps"]
    return hb


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_exact_resume(tmp_path, case):
    """Killed after step 11 (last checkpoint at 8) and resumed == 16 straight steps, bit for bit, for
    each configuration the profiles run: T = 2 targets per support set, the one-shot learning
    curve, a PixelCNN decoder, and CPU bf16 autocast (amp_cpu: true or auto, where the CPU has native bf16)."""
    from experiments.precision import cpu_has_fast_bf16
    from tests.experiments import make_set

    over = RESUME_CASES[case]
    if over.get("train", {}).get("amp_cpu") and not cpu_has_fast_bf16():
        pytest.skip(
            "this CPU has no native bf16 (avx512_bf16 / amx_bf16): bf16 autocast is emulated, slow and "
            "not what amp_cpu: auto would run here"
        )
    if "one_shot_curve" in over.get("train", {}):
        make_set(tmp_path / "resources" / "background.pt", n_alphabets=1)  # 3 validation characters, one alphabet
    name, models = "vhe_deconv", None
    if "model" in over:
        name, entry = over["model"]
        models = {name: entry}
    cfg = mcfg(
        tmp_path,
        name=name,
        models=models,
        train={
            "max_steps": 16,
            "checkpoint_every": 8,
            "val_every": 4,
            "log_every": 3,
            "lr_schedule": "cosine",
            "kl_anneal_steps": 5,
            "batch_size": 8,
            **over.get("train", {}),
        },
        data={"augment_dihedral": True},
    )
    straight = Trainer(cfg, tmp_path / "a")
    straight.fit()
    t1 = Trainer(cfg, tmp_path / "b")
    assert t1.fit(stop_after=11) is None
    assert read_checkpoint(tmp_path / "b" / "last.pt")["step"] == 8
    t2 = Trainer(cfg, tmp_path / "b")
    assert t2.resumed_from == 8
    t2.fit()
    hb = _assert_same_training_state(straight, t2, tmp_path / "a", tmp_path / "b")
    if case == "deconv":
        assert [int(r["step"]) for r in hb] == [3, 4, 6, 8, 9, 12, 15, 16]
    if case == "targets_per_class_2":
        assert t2.exp.train_loader.targets_per_class == 2
    if case == "one_shot_curve":
        assert {int(r["step"]) for r in hb if r["val_acc"]} == {3, 6, 9, 12, 15, 16}
    if case == "pixelcnn":
        assert type(t2.model.decoder).__name__ == "PixelCNNDecoder"
    if case == "bf16_cpu":
        assert t2.use_amp_cpu and json.loads((tmp_path / "b" / "train_summary.json").read_text())["bf16_autocast"]


#: last.pt's entries (format 2), as read back by read_checkpoint; runs written by earlier versions resume
LAST_PT_ENTRIES = {
    "version",
    "fingerprint",
    "config",
    "model",
    "optimizer",
    "scheduler",
    "train_loader",
    "rng",
    "step",
    "status",
    "best_val",
    "best_step",
    "best_val_kl",
    "last_val",
    "bad_validations",
    "history",
    "window",
    "images_seen",
    "step_time",
    "data_time",
    "elapsed",
    "wandb_id",
}


def test_last_pt_holds_the_train_state_and_an_older_one_without_window_resumes(tmp_path):
    """The on-disk layout of last.pt stays the same (every TrainState field is an entry of that
    name); a last.pt without the ``window`` entry resumes with an empty window."""
    from dataclasses import fields

    from experiments.checkpoints import save_checkpoint
    from experiments.trainer import TrainState

    cfg = mcfg(tmp_path, train={"max_steps": 4, "checkpoint_every": 2, "val_every": 2, "log_every": 3})
    out = tmp_path / "ckpt"
    assert Trainer(cfg, out).fit(stop_after=3) is None
    last = read_checkpoint(out / "last.pt")
    assert set(last) == LAST_PT_ENTRIES and {f.name for f in fields(TrainState)} <= LAST_PT_ENTRIES
    assert last["step"] == 2 and last["window"]["stats"]  # log_every 3: step 1 and 2 are in the window
    state = TrainState.from_checkpoint(last)
    assert state.step == 2 and state.to_checkpoint() == {k: last[k] for k in state.to_checkpoint()}
    del last["window"]
    save_checkpoint({k: v for k, v in last.items() if k != "version"}, out / "last.pt")
    resumed = Trainer(cfg, out)
    assert resumed.resumed_from == 2 and resumed.state.window == {
        "stats": [],
        "images": 0,
        "time": 0.0,
        "data_time": 0.0,
    }
    summary = resumed.fit()
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert [int(r["step"]) for r in read_history(out / "history.csv")] == [2, 3, 4]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = mcfg(tmp_path, train={"max_steps": 20, "checkpoint_every": 2, "val_every": 100})
    exp = build_experiment(cfg, "cpu")
    calls = {"n": 0}

    def poison(module, args, output):  # NaN log-likelihood from the 5th training call on
        if module.training:
            calls["n"] += 1
            if calls["n"] >= 5:
                return output[0], output[1] * float("nan")
        return output

    exp.model.decoder.register_forward_hook(poison)
    out = tmp_path / "ckpt"
    trainer = Trainer(cfg, out, experiment=exp)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss.*step 5.*last\.pt \(step 4\)"):
        trainer.fit()
    last = read_checkpoint(out / "last.pt")
    assert last["step"] == 4
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert not (out / "train_summary.json").exists()


def test_nan_gradient_stops(tmp_path):
    cfg = mcfg(tmp_path, train={"max_steps": 20, "checkpoint_every": 100, "val_every": 100})
    exp = build_experiment(cfg, "cpu")
    p = next(exp.model.decoder.parameters())
    p.register_hook(lambda g: g * float("inf"))
    trainer = Trainer(cfg, tmp_path / "ckpt", experiment=exp)
    with pytest.raises(TrainingDiverged, match=r"non-finite gradient.*step 1.*no checkpoint"):
        trainer.fit()
    assert not (tmp_path / "ckpt" / "last.pt").exists()


def test_early_stopping(tmp_path, monkeypatch):
    cfg = mcfg(tmp_path, train={"max_steps": 100, "val_every": 2, "patience": 2, "checkpoint_every": 50})
    bounds = iter([-10.0, -11.0, -10.5, -9.0, -9.5, -9.2] + [-100.0] * 100)
    monkeypatch.setattr(Trainer, "validate", lambda self: {"bound": next(bounds), "kl": {"c": 1.0, "z": 2.0}})
    out = tmp_path / "ckpt"
    summary = Trainer(cfg, out).fit()
    # validations at 2 (best), 4 (worse), 6 (worse: 2 without improvement = patience) -> stop
    assert summary["status"] == "early_stopped" and summary["steps"] == 6
    assert summary["best_step"] == 2 and summary["best_val_bound"] == -10.0
    assert read_checkpoint(out / "best.pt")["step"] == 2
    # an early-stopped run is not continued when started again
    assert Trainer(cfg, out).fit()["steps"] == 6


def test_config_change_starts_afresh(tmp_path):
    cfg = mcfg(tmp_path, train={"max_steps": 3, "lr_schedule": "constant"})
    out = tmp_path / "ckpt"
    Trainer(cfg, out).fit()
    assert Trainer(cfg, out).resumed_from == 3
    assert Trainer(cfg, out, max_steps=5).resumed_from == 3  # extending a run resumes it
    cos = mcfg(tmp_path, train={"max_steps": 3, "lr_schedule": "cosine"})
    Trainer(cos, tmp_path / "cos").fit()
    assert Trainer(cos, tmp_path / "cos").resumed_from == 3  # an interrupted/finished cosine run resumes...
    longer = Trainer(cos, tmp_path / "cos", max_steps=6)  # ...but a longer one has another schedule
    assert longer.resumed_from is None and longer.step == 0
    cfg["model"]["nets"]["c_dim"] = 5
    t = Trainer(cfg, out)
    assert t.resumed_from is None and t.step == 0
    assert list(out.glob("last.stale-*.pt"))


def test_schedules_and_kl_annealing(tmp_path):
    base = mcfg(tmp_path)["model"]["train"]  # schema-filled: the schedule reads no default of its own
    f = lr_lambda({**base, "max_steps": 100, "lr_schedule": "cosine"})
    assert f(0) == 1.0 and abs(f(50) - 0.5) < 1e-12 and abs(f(100)) < 1e-12
    assert lr_lambda({**base, "max_steps": 10, "lr_schedule": "constant"})(7) == 1.0
    g = lr_lambda({**base, "max_steps": 10, "lr_schedule": "step", "lr_step_size": 3, "lr_gamma": 0.5})
    assert [g(s) for s in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]
    t = Trainer(mcfg(tmp_path, train={"kl_anneal_steps": 4}), tmp_path / "ckpt")
    assert [t.kl_factor(s) for s in (0, 2, 4, 9)] == [0.0, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("model", ["vae_pixelcnn"])
def test_cli_end_to_end(tmp_path, model):
    models = {
        "vae_pixelcnn": {"experiment": "vae", "decoder": "pixelcnn"},
        "ns_pixelcnn": {"experiment": "class", "objective": "ns", "decoder": "pixelcnn"},
    }
    cfg = load_config(tiny_config(tmp_path, models=models))
    cfg_file = tmp_path / "configs" / f"{model}.json"
    dump_json_if_changed(model_config(cfg, model), cfg_file)
    out = tmp_path / "ckpt" / model
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.train",
            "--config",
            str(cfg_file),
            "--out",
            str(out),
            "--max-steps",
            "4",
            "--device",
            "cpu",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["model"] == model and summary["decoder"] == "pixelcnn"
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "completed"
    for f in ("best.pt", "last.pt", "config.json", "provenance.json", "history.csv"):
        assert (out / f).is_file()
    # a profile YAML with --model, and a config error (exit 2, naming the key)
    yml = tmp_path / "profile.yaml"
    import yaml

    raw = tiny_config(tmp_path, models=models)
    raw["train"]["lrr"] = 1
    yml.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.train",
            "--config",
            str(yml),
            "--model",
            "ns_pixelcnn",
            "--out",
            str(tmp_path / "x"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "unknown key 'lrr' in train; did you mean 'lr'?" in proc.stderr


def test_one_shot_curve_is_logged_and_leaves_training_unchanged(tmp_path):
    """val_acc every 3 steps on validation-character runs; the weights and every other column
    are those of a run without the curve (it runs under a forked RNG)."""
    from tests.experiments import make_set

    make_set(tmp_path / "resources" / "background.pt", n_alphabets=1)  # 3 validation characters, one alphabet
    curve = {"every": 3, "n_runs": 2, "n_way": 2, "method": "conditional", "n_samples": 2}
    on = Trainer(mcfg(tmp_path, train={"one_shot_curve": curve}), tmp_path / "on")
    on.fit()
    off = Trainer(mcfg(tmp_path), tmp_path / "off")
    off.fit()
    ha, hb = read_history(tmp_path / "on" / "history.csv"), read_history(tmp_path / "off" / "history.csv")
    accs = {int(r["step"]): float(r["val_acc"]) for r in ha if r["val_acc"]}
    assert set(accs) == {3, 6} and all(0.0 <= a <= 1.0 for a in accs.values())
    assert all(not r["val_acc"] for r in hb)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING | {"val_acc"}} for r in rows]  # noqa: E731
    assert strip(ha) == strip(hb)
    assert all(float(r["time_s"]) > 0 for r in ha)
    for k, v in on.model.state_dict().items():
        assert torch.equal(v, off.model.state_dict()[k]), k
    # the curve's runs are within-alphabet runs of the validation characters, fixed across measurements
    runs = on.curve_runs()
    assert len(runs) == 2 and all(r.n_way == 2 for r in runs)
    val_chars = set(on.exp.val_set.character_names)
    assert all(set(r.characters) <= val_chars for r in runs)


def test_several_targets_per_support_set_train(tmp_path):
    """T = 2 targets share a support set (resuming it: test_exact_resume[targets_per_class_2])."""
    cfg = mcfg(tmp_path, train={"targets_per_class": 2, "max_steps": 6, "batch_size": 8})
    t = Trainer(cfg, tmp_path / "t2")
    assert t.exp.train_loader.targets_per_class == 2 and t.exp.val_loader.targets_per_class == 1
    summary = t.fit()
    assert summary["status"] == "completed" and math.isfinite(summary["best_val_bound"])
    assert summary["images_seen"] == 6 * 8  # batch_size counts targets
    with pytest.raises(Exception, match="multiple of targets_per_class"):
        Trainer(mcfg(tmp_path, train={"targets_per_class": 3, "batch_size": 8}), tmp_path / "bad")


@pytest.mark.parametrize("flags, bf16", [(frozenset({"avx2"}), False), (frozenset({"avx2", "avx512_bf16"}), True)])
def test_amp_cpu_auto_follows_the_cpus_bf16_instructions(tmp_path, monkeypatch, flags, bf16):
    """amp_cpu: auto trains in bf16 only where the CPU has native bf16 (fp32 on AVX2-only CPUs,
    where bf16 autocast is several times slower), and train_summary.json says which it used."""
    monkeypatch.setattr("experiments.precision.cpu_flags", lambda *a, **k: flags)
    t = Trainer(mcfg(tmp_path, train={"amp_cpu": "auto", "max_steps": 2}), tmp_path / "auto")
    with t._autocast(training=True):
        assert torch.is_autocast_enabled("cpu") is bf16
    assert t.fit()["bf16_autocast"] is bf16


def test_bf16_autocast_on_the_cpu_trains_and_validates_in_fp32(tmp_path):
    """amp_cpu: training steps run under CPU bf16 autocast (the weights differ from an fp32 run's
    and stay fp32); the validation bound is computed in fp32 (it equals an fp32 scoring of the
    same weights)."""
    on = Trainer(mcfg(tmp_path, train={"amp_cpu": True, "max_steps": 4}), tmp_path / "bf16")
    with on._autocast(training=True):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with on._autocast():
        assert not torch.is_autocast_enabled("cpu")
    summary = on.fit()
    assert summary["status"] == "completed" and math.isfinite(summary["best_val_bound"])
    off = Trainer(mcfg(tmp_path, train={"max_steps": 4}), tmp_path / "fp32")
    off.fit()
    params_on, params_off = on.model.state_dict(), off.model.state_dict()
    assert all(v.dtype == params_off[k].dtype for k, v in params_on.items())
    assert any(not torch.equal(v, params_off[k]) for k, v in params_on.items())
    off.model.load_state_dict(params_on)  # fp32 validation of the bf16-trained weights
    assert off.validate()["bound"] == on.validate()["bound"]
