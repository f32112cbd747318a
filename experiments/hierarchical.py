"""Hierarchical Omniglot: alphabet a -> character c -> image, with p(c | a) (the paper's section 5.2).

Graph: q(a | D_a) (GaussianSetEncoder) with prior p(a) = N(0, I); q(c | D_c, a) (GaussianSetEncoder
with parent a) with the learned prior p(c | a) (GaussianConditionalPrior); q(z | x, c)
(GaussianImageEncoder) with p(z) = N(0, I); decoder p(x | c, z), deconv or PixelCNN. With
``nets.family: spatial``, c is a map (experiments.common.spatial_nets): q(c | D_c, a)
(SpatialSetEncoder with the vector parent a), p(c | a) a SpatialGaussianPrior whose per-position
mean and log-scale come from a (or, with ``nets.spatial.prior: pixelcnn``, a SpatialPixelCNNPrior
conditioned on a), q(z | x, c) and the spatial decoders.

labels {"a": alphabet, "c": character, "z": range(N)}, k_shot {"a": train.k_shot_alphabet (10 images drawn
from the whole alphabet, across its characters), "c": train.k_shot, "z": 1}; so batch.sizes are
|X_a| = images of the target's alphabet, |X_c| = images of its character (20 in Omniglot),
|X_z| = 1, and each KL is divided by its own group size (``rescale``). A k_shot larger than the
smallest group of a loader's set is lowered to that size for that loader (the validation
characters of a small alphabet may be fewer than 10 images); ``info["k_shot"]`` records both.
The loader's ``resample`` is {"a": objective.resample, "c": objective.resample, "z": True}.
With ``data.augment_dihedral`` the 8 dihedral maps make new alphabets, characters and images
(one vhe.Transform shared by a, c and z, like ``augment_dihedral(new_alphabets=True)``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

import vhe
from vhe.loader import encode_labels
from vhe.nets import GaussianConditionalPrior

from . import datasets
from .sections import Nets, Train
from .common import (
    Experiment,
    dihedral_transform,
    image_encoder,
    make_decoder,
    model_section,
    set_encoder,
    spatial_nets,
)

__all__ = ["build", "make_model", "labels_of", "wanted_k_shot", "capped_k_shot", "episode_loaders"]

#: |D_a|: images drawn from the target's alphabet (across its characters) for q(a | D_a)


def make_model(cfg, device=None) -> vhe.VHE:
    """The hierarchical VHE of ``cfg["model"]`` (no data needed)."""
    m = model_section(cfg)
    nets = Nets.of(m["nets"])
    a_dim, c_dim, z_dim = nets.a_dim, nets.c_dim, nets.z_dim
    enc_a = set_encoder(nets, "a", a_dim)
    if nets.family == "spatial":  # a -> spatial c -> x: q(c | D, a) and p(c | a) over the map c
        s = spatial_nets(nets, m["decoder"], class_parents={"a": a_dim})
        model = vhe.VHE(encoder=[enc_a, s.enc_c, s.enc_z], decoder=s.decoder, prior=[s.prior_c])
        return model.to(device) if device is not None else model
    enc_c = set_encoder(nets, "c", c_dim, parents=("a",), parent_dims={"a": a_dim})
    enc_z = image_encoder(nets, "z", z_dim, parents=("c",), parent_dims={"c": c_dim})
    prior_c = GaussianConditionalPrior("c", c_dim, parents=("a",), parent_dims={"a": a_dim}, hidden=nets.hidden)
    decoder = make_decoder(nets, m["decoder"], parents=("c", "z"), parent_dims={"c": c_dim, "z": z_dim})
    model = vhe.VHE(encoder=[enc_a, enc_c, enc_z], decoder=decoder, prior=[prior_c])
    return model.to(device) if device is not None else model


def labels_of(s) -> dict:
    """Loader labels of an OmniglotSet: alphabet, character, image."""
    return {"a": s.alphabet, "c": s.character, "z": torch.arange(len(s))}


def wanted_k_shot(cfg) -> dict:
    tr = Train.of(model_section(cfg)["train"])
    return {"a": int(tr.k_shot_alphabet), "c": int(tr.k_shot), "z": 1}


def capped_k_shot(labels: Mapping, wanted: Mapping) -> dict:
    """``wanted[k]`` lowered to the smallest group of ``labels[k]`` (at least 1)."""
    out = {}
    for k, lab in labels.items():
        counts = torch.bincount(torch.as_tensor(encode_labels(lab)))
        out[k] = max(1, min(int(wanted[k]), int(counts.min())))
    return out


def episode_loaders(cfg, train_set, val_set, labels, k_shot: Mapping, resample, device, transforms=()):
    """Like ``experiments.common.loaders`` but with k_shot capped per set (see the module docstring).

    Returns (train loader, validation loader, {"train": k_shot, "val": k_shot}).
    """
    tr = Train.of(model_section(cfg)["train"])
    seed = int(cfg["seed"])
    common = dict(batch_size=tr.batch_size, resample=resample, device=device, dtype=torch.float32)
    k_train = capped_k_shot(labels(train_set), k_shot)
    k_val = capped_k_shot(labels(val_set), k_train)
    train = vhe.DataLoader(
        train_set.images,
        labels=labels(train_set),
        k_shot=k_train,
        transforms=list(transforms),
        shuffle=True,
        drop_last=len(train_set) >= tr.batch_size,
        seed=seed,
        targets_per_class=tr.targets_per_class,
        group="c",
        **common,
    )
    val = vhe.DataLoader(
        val_set.images, labels=labels(val_set), k_shot=k_val, shuffle=True, drop_last=False, seed=seed + 1, **common
    )
    return train, val, {"train": k_train, "val": k_val}


def build(cfg, device) -> Experiment:
    m = model_section(cfg)
    objective = vhe.get_objective(m["objective"])
    train_set, val_set = datasets.train_val_sets(cfg)
    model = make_model(cfg, device)
    transforms = [dihedral_transform(["a", "c", "z"])] if cfg["data"].get("augment_dihedral") else []
    train, val, k_shot = episode_loaders(
        cfg,
        train_set,
        val_set,
        labels=labels_of,
        k_shot=wanted_k_shot(cfg),
        resample={"a": objective.resample, "c": objective.resample, "z": True},
        device=device,
        transforms=transforms,
    )
    n_aug = 8 if transforms else 1
    info = {
        "train_images": len(train_set),
        "train_characters": train_set.n_classes * n_aug,
        "train_alphabets": int(train_set.alphabet.unique().numel()) * n_aug,
        "val_images": len(val_set),
        "val_characters": val_set.n_classes,
        "val_alphabets": int(val_set.alphabet.unique().numel()),
        "k_shot": k_shot,
    }
    return Experiment(
        model=model,
        objective=objective,
        train_loader=train,
        val_loader=val,
        val_set=val_set,
        kl_latents=["a", "c", "z"],
        sample_latents=["a"],
        info=info,
    )
