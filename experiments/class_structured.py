"""Class-structured Omniglot: c per character, z per image, x | c, z (the paper's main experiment).

labels {"c": character, "z": range(N)}, k_shot {"c": train.k_shot, "z": 1}; the loader's
``resample`` comes from the objective ({"c": objective.resample, "z": True}; the trainer passes
``objective.rescale`` to ``score``). Encoders q(c | D) (GaussianSetEncoder) and q(z | x, c)
(GaussianImageEncoder); decoder p(x | c, z) deconv or PixelCNN. With ``nets.family: spatial`` the
paper's deformable-template family instead (experiments.common.spatial_nets, vhe.nets.spatial): c a
map with a learned prior, z the affine warp of c. With ``data.augment_dihedral``
the 8 dihedral maps of every training character are new classes (a vhe.Transform shared by
c and z: the support set and the target get the same map, and |X| stays the class size).
"""

from __future__ import annotations

import torch

import vhe

from . import datasets
from .sections import Nets, Train
from .common import (
    Experiment,
    dihedral_transform,
    image_encoder,
    loaders,
    make_decoder,
    model_section,
    set_encoder,
    spatial_nets,
)

__all__ = ["build"]


def build(cfg, device) -> Experiment:
    m = model_section(cfg)
    nets, tr = Nets.of(m["nets"]), Train.of(m["train"])
    objective = vhe.get_objective(m["objective"])
    train_set, val_set = datasets.train_val_sets(cfg)
    if nets.family == "spatial":  # c: a map, z warps it (the paper's PixelCNN model; vhe.nets.spatial)
        s = spatial_nets(nets, m["decoder"])
        model = vhe.VHE(encoder=[s.enc_c, s.enc_z], decoder=s.decoder, prior=[s.prior_c]).to(device)
    else:
        c_dim, z_dim = nets.c_dim, nets.z_dim
        enc_c = set_encoder(nets, "c", c_dim)
        enc_z = image_encoder(nets, "z", z_dim, parents=("c",), parent_dims={"c": c_dim})
        decoder = make_decoder(nets, m["decoder"], parents=("c", "z"), parent_dims={"c": c_dim, "z": z_dim})
        model = vhe.VHE(encoder=[enc_c, enc_z], decoder=decoder).to(device)
    transforms = [dihedral_transform(["c", "z"])] if cfg["data"].get("augment_dihedral") else []
    train, val = loaders(
        cfg,
        train_set,
        val_set,
        labels=lambda s: {"c": s.character, "z": torch.arange(len(s))},
        k_shot={"c": tr.k_shot, "z": 1},
        resample={"c": objective.resample, "z": True},
        device=device,
        transforms=transforms,
    )
    info = {
        "train_images": len(train_set),
        "train_characters": train_set.n_classes * (8 if transforms else 1),
        "val_images": len(val_set),
        "val_characters": val_set.n_classes,
    }
    return Experiment(
        model=model,
        objective=objective,
        train_loader=train,
        val_loader=val,
        val_set=val_set,
        kl_latents=["c", "z"],
        sample_latents=["c"],
        info=info,
    )
