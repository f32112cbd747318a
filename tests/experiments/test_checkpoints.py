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
    """The tiny model config; its paths are relative to the working directory, so callers chdir to tmp_path."""
    return model_config(load_config(tiny_config(".", train=train)), "vhe_deconv")


def test_a_pickled_object_is_refused_without_the_conversion_hint(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"version": ck.CHECKPOINT_VERSION, "model": {}, "extra": Payload()}, path)
    with pytest.raises(
        ck.CheckpointFormatError,
        match=r"evil\.pt holds pickled Python objects \(builtins\.print\).*"
        r"refused and will not be converted",
    ) as e:
        ck.read_checkpoint(path)
    assert "experiments.checkpoints convert" not in str(e.value)
    assert "this ran" not in capsys.readouterr().out


def test_save_refuses_objects_that_would_need_unpickling(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\.extra is a .*Payload"):
        ck.save_checkpoint({"model": {}, "extra": Payload()}, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    ck.save_checkpoint(
        {"model": {"w": torch.ones(2)}, "loss": np.float32(1.5), "config": {"a": [1, None]}}, tmp_path / "ok.pt"
    )
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
    old = {
        **new,
        "version": 1,
        "rng": {
            **rng,
            "numpy": (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]),
            "python": (p["version"], tuple(p["internal"].tolist()), p["gauss_next"]),
        },
    }
    torch.save(old, path)


def test_format_1_is_refused_then_converted_and_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
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


# ----------------------------------------------------------------------------- hostile files
class Marker:
    """Unpickling it would create the file ``path`` (what an attacker's payload would do)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _evil(tmp_path, name="last.pt", version=1):
    """``<tmp>/run/<name>``: a checkpoint-shaped pickle with a Marker for ``<tmp>/outside/MARKER``."""
    (tmp_path / "outside").mkdir(exist_ok=True)
    path = tmp_path / "run" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"version": version, "model": {"w": torch.ones(2)}, "extra": Marker(tmp_path / "outside" / "MARKER")}, path
    )
    return path


def test_convert_refuses_an_arbitrary_pickle_without_running_it(tmp_path, capsys):
    path = _evil(tmp_path)
    before = _files(tmp_path)
    assert ck.main(["convert", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path} holds pickled Python objects" in err and "open" in err and "will not be converted" in err
    assert not (tmp_path / "outside" / "MARKER").exists()
    assert _files(tmp_path) == before  # nothing written, the file left as it was
    with pytest.raises(ck.CheckpointFormatError, match="will not be converted"):
        ck.convert(path, out=tmp_path / "run" / "converted.pt")
    assert not (tmp_path / "run" / "converted.pt").exists() and not (tmp_path / "outside" / "MARKER").exists()


@pytest.mark.parametrize("content", [b"not a checkpoint at all", "truncated"])
def test_convert_refuses_unreadable_files(tmp_path, capsys, content):
    path = tmp_path / "x.pt"
    if content == "truncated":
        torch.save({"version": 1, "model": {"w": torch.ones(1000)}}, path)
        content = path.read_bytes()[:300]
    path.write_bytes(content)
    assert ck.main(["convert", str(path), str(tmp_path / "none.pt")]) == 1
    err = capsys.readouterr().err
    assert f"{path}" in err and "none.pt does not exist" in err
    assert path.read_bytes() == content and sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]


def test_format_1_globals_are_exactly_numpys_arrays_dtypes_and_scalars(tmp_path):
    assert ck.FORMAT_1_GLOBALS >= {
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy.dtypes.UInt32DType",
    }
    assert all(g.startswith("numpy.") for g in ck.FORMAT_1_GLOBALS)
    path = tmp_path / "old.pt"
    state = np.random.get_state()
    torch.save(
        {
            "version": 1,
            "model": {"w": torch.ones(2)},
            "val_bound": np.float64(-1.5),
            "step": np.int64(7),
            "rng": {"torch": torch.get_rng_state(), "numpy": state, "python": random.getstate()},
        },
        path,
    )
    with pytest.raises(
        ck.CheckpointFormatError,
        match=r"earlier version of this project.*experiments\.checkpoints "
        r"convert",
    ):
        ck.read_checkpoint(path)
    assert ck.main(["convert", str(path)]) == 0
    new = ck.read_checkpoint(path)
    assert new["val_bound"] == -1.5 and type(new["val_bound"]) is float and new["step"] == 7
    assert np.array_equal(new["rng"]["numpy"]["keys"].numpy(), state[1].astype(np.int64))


def test_train_exits_3_on_a_refused_last_pt_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from experiments import train
    from experiments.config import dump_json_if_changed

    assert (
        len({train.EXIT_OK, train.EXIT_DIVERGED, train.EXIT_CONFIG, train.EXIT_CHECKPOINT, train.EXIT_INTERRUPTED}) == 5
    )
    monkeypatch.chdir(tmp_path)
    cfg_file = tmp_path / "configs" / "vhe_deconv.json"
    dump_json_if_changed(_cfg(tmp_path), cfg_file)
    last = _evil(tmp_path, version=ck.CHECKPOINT_VERSION)
    before = _files(tmp_path)
    status = train.main(["--config", str(cfg_file), "--out", str(last.parent), "--device", "cpu"])
    assert status == train.EXIT_CHECKPOINT == 3
    err = capsys.readouterr().err
    assert "checkpoint refused" in err and str(last) in err
    assert not (tmp_path / "outside" / "MARKER").exists()
    assert _files(tmp_path) == before  # last.pt untouched, no best.pt / summary / config
