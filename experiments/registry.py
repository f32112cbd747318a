"""``build_experiment(cfg, device)`` and ``build_model(cfg, device)``: dispatch on
``cfg["model"]["experiment"]``. Both lay the model's weights out as ``cfg["memory_format"]`` says
(the one place that does).

Builders are imported lazily, so a missing one only fails when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping


from .common import Experiment, apply_memory_format, model_section, resolve_device

__all__ = ["BUILDERS", "build_experiment", "build_model", "load_checkpoint"]

#: experiment name -> module under experiments/ exposing build(cfg, device) -> Experiment, and
#: optionally make_model(cfg, device) -> the model alone (without loading training data)
BUILDERS = {
    "vae": "experiments.vae",
    "class": "experiments.class_structured",
    "hierarchical": "experiments.hierarchical",
    "factorial": "experiments.factorial",
}


def _builder(cfg: Mapping, device):
    """(builder module of ``cfg["model"]["experiment"]``, resolved device)."""
    name = model_section(cfg).get("experiment")
    if name not in BUILDERS:
        raise ValueError(f"model.experiment is {name!r}; choose one of {sorted(BUILDERS)}")
    device = resolve_device(device if device is not None else cfg.get("device", "auto"))
    try:
        return importlib.import_module(BUILDERS[name]), device
    except ModuleNotFoundError as e:
        if e.name == BUILDERS[name]:
            raise NotImplementedError(
                f"experiment {name!r} needs {BUILDERS[name].replace('.', '/')}.py, which does not exist"
            ) from e
        raise


def build_experiment(cfg: Mapping, device=None) -> Experiment:
    """Build the model, objective and loaders of ``cfg["model"]`` on ``device`` (default: cfg["device"]),
    its weights laid out as ``cfg["memory_format"]`` says."""
    module, device = _builder(cfg, device)
    exp = module.build(cfg, device)
    if not isinstance(exp, Experiment):
        raise TypeError(f"{module.__name__}.build returned {type(exp).__name__}, not an Experiment")
    apply_memory_format(exp.model, cfg)
    return exp


def build_model(cfg: Mapping, device=None):
    """The model of ``cfg["model"]`` alone on ``device`` (default: cfg["device"]), laid out as
    ``cfg["memory_format"]`` says: the builder's ``make_model`` where it has one (no training data
    loaded), else the model of :func:`build_experiment`."""
    module, device = _builder(cfg, device)
    if not hasattr(module, "make_model"):
        return build_experiment(cfg, device).model
    return apply_memory_format(module.make_model(cfg, device), cfg)


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
