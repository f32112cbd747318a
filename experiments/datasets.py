"""Reading the prepared data of a run (resources/<run>/*.pt, paths in cfg["paths"]).

``load_split(cfg, name)`` returns an :class:`vhe.data.omniglot.OmniglotSet` for the image
splits ("background", "evaluation", and "textured" when it is saved as one), a list of
:class:`OneShotRun` for "lake_runs" / "within_alphabet_runs", and otherwise the saved dict.
``data.max_characters`` is applied to image splits when the file holds more characters
(the smoke pipeline already writes reduced files; applying it again is a no-op).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["load_split", "apply_max_characters", "train_val_sets", "omniglot_set_class"]


def omniglot_set_class():
    from vhe.data.omniglot import OmniglotSet

    return OmniglotSet


def apply_max_characters(s, max_characters: int | None):
    """The first ``max_characters`` characters of an OmniglotSet (unchanged if it has no more)."""
    if max_characters is None or s.n_classes <= max_characters:
        return s
    return s.first_characters(int(max_characters))


def _path(cfg: Mapping, name: str) -> Path:
    paths = cfg.get("paths") or {}
    if name not in paths:
        raise KeyError(
            f"cfg['paths'] has no entry {name!r} (have {sorted(paths)}); load the config with "
            f"experiments.config.load_config"
        )
    return Path(paths[name])


def load_split(cfg: Mapping, name: str):
    """Load the prepared split ``name`` of this run (see the module docstring)."""
    path = _path(cfg, name)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} (paths.{name}) does not exist; prepare the data first, e.g. "
            f"`snakemake --configfile config/<profile>.yaml` or `python -m vhe.data.cli`"
        )
    raw = torch.load(path, weights_only=True)
    fmt = raw.get("format") if isinstance(raw, dict) else None
    if fmt == "vhe.OmniglotSet":
        s = omniglot_set_class().from_dict(raw, where=str(path))
        return apply_max_characters(s, (cfg.get("data") or {}).get("max_characters"))
    if fmt == "vhe.OneShotRuns":
        from vhe.data.runs import load_runs

        return load_runs(path)
    return raw


def train_val_sets(cfg: Mapping, name: str = "background"):
    """(train, validation) OmniglotSets: ``data.val_fraction`` of the characters held out, seeded by ``seed``."""
    from vhe.data.omniglot import split_validation

    s = load_split(cfg, name)
    frac = cfg["data"]["val_fraction"]
    if s.n_classes < 2:
        raise ValueError(f"{_path(cfg, name)} has {s.n_classes} character(s); need at least 2 to hold out validation")
    return split_validation(s, fraction=frac, seed=int(cfg["seed"]))
