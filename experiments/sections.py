"""Typed, read-only views of the validated config sections: ``nets``, ``train``, ``evaluation``.

Built from a schema-filled section (:func:`experiments.config.load_config` fills every default),
so every field is present. The dataclasses hold **no defaults**: ``experiments/schema.json`` is the
only place a default lives. A section with a key the dataclass lacks, or without one it has, is a
:class:`~experiments.config.ConfigError` naming the keys, and a typo in code (``train.lr_schedul``)
is an ``AttributeError``, not a silent fallback. ``tests/experiments/test_sections.py`` checks
that the fields are exactly the schema's properties.

    from experiments.sections import Train
    tr = Train.of(cfg["model"]["train"])
    tr.max_steps, tr.lr_schedule
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .config import ConfigError

__all__ = ["Nets", "Train", "Evaluation"]


class _Section:
    """Mixin: construction from a mapping with exactly the dataclass's fields, and back."""

    SECTION = ""

    @classmethod
    def of(cls, d: Mapping):
        """The typed view of the schema-filled section ``d`` (an instance is returned as is)."""
        if isinstance(d, cls):
            return d
        if not isinstance(d, Mapping):
            raise ConfigError(f"{cls.SECTION}: expected a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = sorted(names - set(d)), sorted(set(d) - names)
        if missing or unknown:
            parts = (
                [
                    f"missing {', '.join(cls.SECTION + '.' + k for k in missing)} (load the config with "
                    f"experiments.config.load_config, which fills the schema's defaults)"
                ]
                if missing
                else []
            )
            parts += [f"unknown {', '.join(cls.SECTION + '.' + k for k in unknown)}"] if unknown else []
            raise ConfigError("; ".join(parts))
        return cls(**{k: d[k] for k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Nets(_Section):
    """Network sizes (``nets``): latent dimensions, MLP width, encoder/decoder convolutions, PixelCNN,
    and the network family (``vector`` or ``spatial``, with the spatial family's sizes)."""

    SECTION = "nets"
    c_dim: int
    z_dim: int
    a_dim: int
    t_dim: int
    hidden: int
    conv_channels: int
    conv_layers: int
    deconv_channels: int
    pixelcnn: Mapping[str, Any]  # sizes (int) and global_parents (list of latent names)
    family: str
    spatial: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Train(_Section):
    """Training settings (``train``); steps count optimiser steps, ``batch_size`` targets per step."""

    SECTION = "train"
    batch_size: int
    k_shot: int
    k_shot_alphabet: int
    lr: float
    lr_schedule: str
    lr_step_size: int
    lr_gamma: float
    grad_clip: float | None
    max_steps: int
    val_every: int
    val_batches: int
    patience: int | None
    kl_anneal_steps: int
    checkpoint_every: int
    log_every: int
    sample_every: int
    amp: bool
    amp_cpu: bool | str
    num_threads: int | None
    targets_per_class: int
    one_shot_curve: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Evaluation(_Section):
    """Evaluation settings (``evaluation``): K for likelihoods and classification, which runs and
    episodes, the estimators, chunk size, seed, the structured models' settings and per-decoder overrides."""

    SECTION = "evaluation"
    n_samples: int
    max_classes: int | None
    classification_samples: int
    lake_runs: bool
    within_alphabet_runs: int
    episodes: Mapping[str, Any]
    seed: int
    max_runs: int | None
    estimators: list
    validation_runs: Mapping[str, int]
    max_elements: int
    structured: Mapping[str, int | None]  # the hierarchical alphabet measures' settings (analysis.structured)
    per_decoder: Mapping[str, Mapping[str, int | None]]

    def for_decoder(self, decoder: str | None) -> Evaluation:
        """These settings with ``per_decoder[decoder]``'s non-null overrides applied
        (``experiments.config.evaluation_for``, the one place that rule lives)."""
        from .config import evaluation_for

        resolved = evaluation_for({"per_decoder": self.per_decoder}, decoder)
        return dataclasses.replace(self, **resolved)
