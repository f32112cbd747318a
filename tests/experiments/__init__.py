"""Tests of experiments/ (config, builders, trainer), on tiny synthetic Omniglot-like sets.

Helpers shared by the test modules live here: ``make_set`` writes an OmniglotSet-like .pt
file (characters of random blobs, each drawing a 1-pixel jitter of its character's
prototype) and ``tiny_config`` a config dict with tiny nets that trains in well under a
second per step on one CPU core.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn.functional as F


def make_images(n_chars: int = 12, n_per: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n_chars * n_per, 1, 28, 28) {0, 1} blobs and int64 character labels."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n_chars, 1, 28, 28, generator=g)
    smooth = F.avg_pool2d(F.pad(noise, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    protos = (smooth > smooth.flatten(1).quantile(0.8, dim=1)[:, None, None, None]).to(torch.uint8)
    images = []
    for c in range(n_chars):
        for i in range(n_per):
            dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
            img = torch.roll(protos[c], shifts=(dy, dx), dims=(1, 2)).clone()
            flip = torch.rand(1, 28, 28, generator=g) < 0.02
            img[flip] = 1 - img[flip]
            images.append(img)
    return torch.stack(images), torch.arange(n_chars).repeat_interleave(n_per)


def make_set(path, n_chars: int = 12, n_per: int = 6, n_alphabets: int = 3, seed: int = 0) -> Path:
    """Save an OmniglotSet-like dict (format 'vhe.OmniglotSet') to ``path``."""
    images, character = make_images(n_chars, n_per, seed)
    alphabet = character * n_alphabets // n_chars
    d = {
        "format": "vhe.OmniglotSet",
        "version": 1,
        "images": images,
        "character": character,
        "alphabet": alphabet,
        "drawer": torch.arange(n_per).repeat(n_chars),
        "character_names": [f"A{c * n_alphabets // n_chars}/character{c:02d}" for c in range(n_chars)],
        "alphabet_names": [f"A{a}" for a in range(n_alphabets)],
        "source": "synthetic",
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(d, path)
    return path


TINY_NETS = {
    "c_dim": 6,
    "z_dim": 3,
    "a_dim": 4,
    "t_dim": 4,
    "hidden": 16,
    "conv_channels": 4,
    "conv_layers": 2,
    "deconv_channels": 4,
    "pixelcnn": {"n_layers": 2, "channels": 4, "kernel_size": 3, "cond_channels": 2},
}
TINY_TRAIN = {
    "batch_size": 8,
    "k_shot": 3,
    "lr": 1e-3,
    "max_steps": 6,
    "val_every": 3,
    "val_batches": 2,
    "checkpoint_every": 3,
    "log_every": 2,
    "sample_every": 0,
    "patience": None,
    "num_threads": 1,
}


def below_cwd(path) -> str:
    """``path`` relative to the working directory, as config paths must be (experiments.config
    refuses absolute and '..' paths): tests chdir to their tmp_path first (tests/conftest.py)."""
    rel = os.path.relpath(path)
    if rel == ".." or rel.startswith(".." + os.sep):
        raise RuntimeError(
            f"{path} is not below the working directory {os.getcwd()}: chdir to it first (config paths are relative)"
        )
    return rel


def tiny_config(tmp_path, models=None, **overrides) -> dict:
    """A raw config dict (load it with experiments.config.load_config) on a synthetic set."""
    bg = Path(tmp_path) / "resources" / "background.pt"
    if not bg.exists():
        make_set(bg)
    cfg = {
        "run": "test",
        "seed": 0,
        "device": "cpu",
        "wandb": {"mode": "disabled"},
        "data": {"val_fraction": 0.25},
        "paths": {"background": below_cwd(bg), "results": below_cwd(Path(tmp_path) / "results")},
        "nets": copy.deepcopy(TINY_NETS),
        "train": copy.deepcopy(TINY_TRAIN),
        "models": models or {"vhe_deconv": {"experiment": "class", "objective": "vhe", "decoder": "deconv"}},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg
