"""Per-job resources the rules declare (gpu, mem_mb, runtime in minutes, threads), from the cost
model (``pipeline/cost.py``) and the memory bounds in ``pipeline/rates.json``. A GPU job's runtime
comes from the measured GPU rates where ``make gpu-check`` measured them, else from
``gpu_speedup_guess`` (cost.py, assumption 8)."""

from __future__ import annotations

import math
from functools import lru_cache

from . import cost

__all__ = [
    "uses_gpu",
    "model_settings",
    "threads",
    "train_minutes",
    "eval_minutes",
    "MEM_MB",
    "FETCH_RESOURCES",
    "DATA_RESOURCES",
    "CONFIG_RESOURCES",
]

_R = cost.rates()
MEM_MB = {k: v for k, v in _R["mem_mb"].items() if not k.startswith("_")}
FETCH_RESOURCES = {"mem_mb": MEM_MB["fetch"], "runtime": _R["data_runtime_min"], "cpus_per_task": 1}
DATA_RESOURCES = {"mem_mb": MEM_MB["data"], "runtime": _R["data_runtime_min"], "cpus_per_task": 1}
#: the config rules write one small JSON each, in the Snakemake process
CONFIG_RESOURCES = {"mem_mb": 500, "runtime": 5, "cpus_per_task": 1}


def uses_gpu(device: str) -> bool:
    """True when jobs run on CUDA: device cuda[:i], or auto on a machine with a GPU (decided where
    Snakemake runs: on a cluster's login node without GPUs, set device: cuda)."""
    if device.startswith("cuda"):
        return True
    if device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


_SETTINGS: dict = {}


def model_settings(cfg: dict, name: str) -> dict:
    """The model's resolved entry (experiment, decoder, nets, train), as trained (cached per config)."""
    from experiments.config import model_config

    key = (id(cfg), name)
    if key not in _SETTINGS:
        _SETTINGS[key] = model_config(cfg, name)["model"]
    return _SETTINGS[key]


def threads(cfg: dict, name: str, gpu: bool) -> int:
    """Threads of one training/evaluation job: the model's train.num_threads when set, else 1 on
    the CPU (small convnets: parallel jobs beat intra-op threads) and 2 beside a GPU."""
    n = model_settings(cfg, name)["train"].get("num_threads")
    return int(n) if n else (2 if gpu else 1)


@lru_cache(maxsize=1)
def _flags():
    from experiments.precision import cpu_flags

    return cpu_flags()


def _seconds(cfg: dict, name: str) -> dict:
    key = (id(cfg), name, "cost")
    if key not in _SETTINGS:
        _SETTINGS[key] = cost.model_seconds(cfg, name, _flags())
    return _SETTINGS[key]


def _gpu_seconds(cfg: dict, name: str) -> dict:
    """cost.gpu_model_seconds with the default GPU-rates file (measured where it applies, else the guess)."""
    key = (id(cfg), name, "gpu")
    if key not in _SETTINGS:
        _SETTINGS[key] = cost.gpu_model_seconds(cfg, name)
    return _SETTINGS[key]


def _minutes(seconds: float, attempt: int) -> int:
    rt = _R["runtime"]
    est_min = seconds / 60
    return int(min(rt["max_min"], math.ceil(rt["start_min"] + rt["safety"] * est_min * max(1, attempt))))


def train_minutes(cfg: dict, name: str, gpu: bool, attempt: int = 1) -> int:
    """Runtime resource of model ``name``'s training job; grows with the attempt."""
    return _minutes((_gpu_seconds if gpu else _seconds)(cfg, name)["train_s"], attempt)


def eval_minutes(cfg: dict, name: str, gpu: bool, attempt: int = 1) -> int:
    """Runtime resource of model ``name``'s evaluation job (structured models: priced as a class
    model's evaluation with the same decoder, an upper estimate); grows with the attempt."""
    s = (_gpu_seconds if gpu else _seconds)(cfg, name)
    if s["experiment"] in ("hierarchical", "factorial"):
        ev = cost.evaluation_decodes(cfg, s["decoder"], "class")
        m = model_settings(cfg, name)
        if gpu:
            rate = cost.gpu_decode_rate(cfg, s["decoder"], m["nets"])[0]
        else:
            rate = cost.decode_rate(s["decoder"], m["nets"], cost.eval_setting(cfg, s["decoder"], "max_elements"))
        secs = ev / rate
    else:
        secs = s["eval_s"]
    return _minutes(secs, attempt)
