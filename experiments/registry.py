"""``build_experiment(cfg, device)``: dispatch on ``cfg["model"]["experiment"]``.

Builders are imported lazily, so a missing one only fails when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping


from .common import Experiment, apply_memory_format, model_section, resolve_device

__all__ = ["BUILDERS", "build_experiment", "load_checkpoint"]

#: experiment name -> module under experiments/ exposing build(cfg, device) -> Experiment
BUILDERS = {
    "vae": "experiments.vae",
    "class": "experiments.class_structured",
    "hierarchical": "experiments.hierarchical",
    "factorial": "experiments.factorial",
}


def build_experiment(cfg: Mapping, device=None) -> Experiment:
    """Build the model, objective and loaders of ``cfg["model"]`` on ``device`` (default: cfg["device"]),
    its weights laid out as ``cfg["memory_format"]`` says."""
    m = model_section(cfg)
    name = m.get("experiment")
    if name not in BUILDERS:
        raise ValueError(f"model.experiment is {name!r}; choose one of {sorted(BUILDERS)}")
    device = resolve_device(device if device is not None else cfg.get("device", "auto"))
    try:
        module = importlib.import_module(BUILDERS[name])
    except ModuleNotFoundError as e:
        if e.name == BUILDERS[name]:
            raise NotImplementedError(
                f"experiment {name!r} needs {BUILDERS[name].replace('.', '/')}.py, which does not exist"
            ) from e
        raise
    exp = module.build(cfg, device)
    if not isinstance(exp, Experiment):
        raise TypeError(f"{BUILDERS[name]}.build returned {type(exp).__name__}, not an Experiment")
    apply_memory_format(exp.model, cfg)
    return exp


def load_checkpoint(path, device=None, cfg: Mapping | None = None):
    """Rebuild the model of a trainer checkpoint (best.pt / last.pt) -> (model in eval mode, cfg, checkpoint).

    ``cfg`` defaults to the config stored in the checkpoint (the resolved per-model config).
    """
    from .config import load_config

    from .checkpoints import load_weights, read_checkpoint

    stored = read_checkpoint(path)
    cfg = load_config(cfg if cfg is not None else stored["config"])
    device = resolve_device(device if device is not None else cfg.get("device", "auto"))
    exp = build_experiment(cfg, device)
    ckpt = load_weights(exp.model, path, device)
    return exp.model, cfg, ckpt
