"""VAE baseline: one latent z per image, no class latent (labels {"z": range(N)}, k_shot {"z": 1})."""

from __future__ import annotations

import torch

import vhe

from . import datasets
from .sections import Nets
from .common import Experiment, image_encoder, loaders, make_decoder, model_section, require_vector_family

__all__ = ["build"]


def build(cfg, device) -> Experiment:
    m = model_section(cfg)
    nets = Nets.of(m["nets"])
    require_vector_family(nets, "vae")
    objective = vhe.get_objective(m["objective"])
    train_set, val_set = datasets.train_val_sets(cfg)
    z_dim = nets.z_dim
    encoder = image_encoder(nets, "z", z_dim)
    decoder = make_decoder(nets, m["decoder"], parents=("z",), parent_dims={"z": z_dim})
    model = vhe.VHE(encoder=[encoder], decoder=decoder).to(device)
    transforms = []
    if cfg["data"].get("augment_dihedral"):
        from .common import dihedral_transform

        transforms = [dihedral_transform(["z"])]
    train, val = loaders(
        cfg,
        train_set,
        val_set,
        labels=lambda s: {"z": torch.arange(len(s))},
        k_shot={"z": 1},
        resample={"z": True},
        device=device,
        transforms=transforms,
    )
    info = {
        "train_images": len(train_set),
        "train_characters": train_set.n_classes,
        "val_images": len(val_set),
        "val_characters": val_set.n_classes,
    }
    return Experiment(
        model=model,
        objective=objective,
        train_loader=train,
        val_loader=val,
        kl_latents=["z"],
        sample_latents=[],
        info=info,
    )
