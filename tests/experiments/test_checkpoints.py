"""experiments.checkpoints: checkpoints load with weights_only=True; pickled objects are refused;
format-1 checkpoints get a clear error and convert; a resumed run after conversion is exact."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from experiments import checkpoints as ck
from experiments.config import load_config, model_config
from experiments.trainer import Trainer
from tests.experiments import tiny_config


class Payload:
    """An object whose unpickling would run code (here: nothing harmful)."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def _cfg(tmp_path, **train):
    return model_config(load_config(tiny_config(tmp_path, train=train)), "vhe_deconv")


def test_a_pickled_object_is_refused_with_the_fix(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"version": ck.CHECKPOINT_VERSION, "model": {}, "extra": Payload()}, path)
    with pytest.raises(ck.CheckpointFormatError, match="experiments.checkpoints convert"):
        ck.read_checkpoint(path)
    assert "this ran" not in capsys.readouterr().out


def test_save_refuses_objects_that_would_need_unpickling(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\.extra is a .*Payload"):
        ck.save_checkpoint({"model": {}, "extra": Payload()}, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    ck.save_checkpoint({"model": {"w": torch.ones(2)}, "loss": np.float32(1.5), "config": {"a": [1, None]}},
                       tmp_path / "ok.pt")
    back = ck.read_checkpoint(tmp_path / "ok.pt")
    assert back["loss"] == 1.5 and type(back["loss"]) is float and back["config"] == {"a": [1, None]}
    assert back["version"] == ck.CHECKPOINT_VERSION


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ck.read_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ck.CheckpointFormatError, match="no 'model' weights"):
        ck.read_checkpoint(tmp_path / "foreign.pt")


def test_rng_state_round_trip():
    state = ck.rng_state(torch.device("cpu"))
    a = (torch.rand(3), np.random.rand(3), random.random())
    ck.set_rng_state(state, torch.device("cpu"))
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def _as_format_1(path):
    """Rewrite a format-2 last.pt the way earlier versions stored it (pickled numpy/Python RNG tuples)."""
    new = ck.read_checkpoint(path)
    rng = new["rng"]
    n, p = rng["numpy"], rng["python"]
    old = {**new, "version": 1, "rng": {**rng, "numpy": (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                                                          n["has_gauss"], n["cached_gaussian"]),
                                        "python": (p["version"], tuple(p["internal"].tolist()), p["gauss_next"])}}
    torch.save(old, path)


def test_format_1_is_refused_then_converted_and_resumes_exactly(tmp_path):
    train = {"max_steps": 8, "checkpoint_every": 4, "val_every": 4, "log_every": 2}
    straight = Trainer(_cfg(tmp_path, **train), tmp_path / "a")
    straight.fit()
    assert Trainer(_cfg(tmp_path, **train), tmp_path / "b").fit(stop_after=5) is None  # killed after step 5
    _as_format_1(tmp_path / "b" / "last.pt")
    with pytest.raises(ck.CheckpointFormatError, match="convert"):
        ck.read_checkpoint(tmp_path / "b" / "last.pt")
    with pytest.raises(ck.CheckpointFormatError):  # the trainer does not throw the run away
        Trainer(_cfg(tmp_path, **train), tmp_path / "b").fit()
    assert ck.main(["convert", str(tmp_path / "b" / "last.pt")]) == 0
    assert ck.read_checkpoint(tmp_path / "b" / "last.pt")["step"] == 4
    resumed = Trainer(_cfg(tmp_path, **train), tmp_path / "b")
    assert resumed._maybe_resume() == 4
    resumed.fit()
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert math.isfinite(ck.read_checkpoint(tmp_path / "b" / "best.pt")["val_bound"])
