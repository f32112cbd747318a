"""Factorial textured Omniglot: content c (character) x style t (texture) -> image (the paper's section 5.3).

Graph: q(c | D_c) over images of the same character (rendered in other textures) and q(t | D_t)
over images in the same texture (other characters), both GaussianSetEncoders with N(0, I)
priors; a per-image latent z with q(z | x, c, t) (GaussianImageEncoder) and p(z) = N(0, I);
decoder p(x | c, t, z), deconv or PixelCNN. c and t are both parents of x (and of q(z)).

Why z: each textured image crops its texture at a random offset and renders one particular
drawing of the character; neither is shared by any group, so without z the decoder can only
blur them (a grey silhouette). z carries this per-image variation; its KL is divided by 1, while
KL(c) and KL(t) are divided by their (larger) group sizes, so the objective prefers to put
what a group shares in c and t. In sample grids z is drawn from p(z).

Data: the TexturedSet of ``paths.textured`` (``python -m vhe.data.cli textured``, built from
the background set), split by character like the other models (``data.val_fraction`` of the
characters held out, seeded by ``seed``; texture labels keep their global ids).
labels {"c": character, "t": texture, "z": range(N)}; k_shot {"c": min(train.k_shot, M - 1)
(M = images per character, so D_c need not contain the target), "t": train.k_shot, "z": 1},
each lowered to the smallest group of a loader's set; sizes |X_c| = images of the character
(``textures.n_per_character``), |X_t| = images in the texture, |X_z| = 1. ``resample`` is
{"c": objective.resample, "t": objective.resample, "z": True}. ``data.augment_dihedral`` is
ignored here (a rotated grating is another texture).
"""

from __future__ import annotations

import torch

import vhe
from vhe.data.textures import TexturedSet

from . import datasets
from .sections import Nets
from .common import Experiment, image_encoder, make_decoder, model_section, require_vector_family, set_encoder
from .hierarchical import episode_loaders

__all__ = [
    "build",
    "make_model",
    "labels_of",
    "wanted_k_shot",
    "load_textured",
    "subset_textured",
    "split_textured",
    "train_val_textured",
]


def make_model(cfg, device=None) -> vhe.VHE:
    """The factorial VHE of ``cfg["model"]`` (no data needed)."""
    m = model_section(cfg)
    nets = Nets.of(m["nets"])
    require_vector_family(nets, "factorial")
    c_dim, t_dim, z_dim = nets.c_dim, nets.t_dim, nets.z_dim
    enc_c = set_encoder(nets, "c", c_dim)
    enc_t = set_encoder(nets, "t", t_dim)
    enc_z = image_encoder(nets, "z", z_dim, parents=("c", "t"), parent_dims={"c": c_dim, "t": t_dim})
    decoder = make_decoder(
        nets, m["decoder"], parents=("c", "t", "z"), parent_dims={"c": c_dim, "t": t_dim, "z": z_dim}
    )
    model = vhe.VHE(encoder=[enc_c, enc_t, enc_z], decoder=decoder)
    return model.to(device) if device is not None else model


def labels_of(s) -> dict:
    """Loader labels of a TexturedSet: character, texture, image."""
    return {"c": s.character, "t": s.texture, "z": torch.arange(len(s))}


def wanted_k_shot(cfg, s=None) -> dict:
    """k_shot before capping; with a set ``s``, k_c <= (images per character) - 1 when that is >= 1."""
    k = int(model_section(cfg)["train"]["k_shot"])
    k_c = k
    if s is not None and len(s):
        m_min = int(torch.bincount(s.character).clamp(min=1).min())
        if m_min > 1:
            k_c = min(k, m_min - 1)
    return {"c": k_c, "t": k, "z": 1}


def load_textured(cfg) -> TexturedSet:
    """The run's TexturedSet (``paths.textured``)."""
    raw = datasets.load_split(cfg, "textured")
    if isinstance(raw, TexturedSet):
        return raw
    if isinstance(raw, dict) and raw.get("format") == "vhe.TexturedSet":
        return TexturedSet(**{k: raw[k] for k in TexturedSet.__dataclass_fields__ if k in raw})
    raise ValueError(
        f"{cfg['paths']['textured']} is not a saved TexturedSet; build it with `python -m vhe.data.cli textured`"
    )


def subset_textured(s: TexturedSet, index) -> TexturedSet:
    """Images ``index`` of ``s``; characters re-labelled 0..C'-1 in order, texture/alphabet ids kept."""
    idx = torch.as_tensor(index, dtype=torch.int64).flatten()
    chars, new_char = torch.unique(s.character[idx], sorted=True, return_inverse=True)
    return TexturedSet(
        images=s.images[idx].clone(),
        character=new_char.to(torch.int64),
        alphabet=s.alphabet[idx].clone(),
        texture=s.texture[idx].clone(),
        image=torch.arange(len(idx), dtype=torch.int64),
        source_index=s.source_index[idx].clone(),
        offset=s.offset[idx].clone(),
        textures=s.textures,
        character_names=[s.character_names[i] for i in chars.tolist()],
        alphabet_names=list(s.alphabet_names),
        texture_names=list(s.texture_names),
        dilate=s.dilate,
        seed=s.seed,
    )


def split_textured(s: TexturedSet, fraction: float, seed: int = 0) -> tuple[TexturedSet, TexturedSet]:
    """(train, val) by character, as ``vhe.data.omniglot.split_validation``: the held-out characters are
    the first round(fraction * C) (at least 1) of ``randperm(C)`` under ``seed``."""
    C = s.n_classes
    if C < 2:
        raise ValueError(f"the textured set has {C} character(s); need at least 2 to hold out validation")
    n_val = min(C - 1, max(1, int(round(fraction * C))))
    g = torch.Generator().manual_seed(int(seed))
    val_chars = torch.randperm(C, generator=g)[:n_val]
    is_val = torch.isin(s.character, val_chars)
    return subset_textured(s, (~is_val).nonzero().flatten()), subset_textured(s, is_val.nonzero().flatten())


def train_val_textured(cfg) -> tuple[TexturedSet, TexturedSet]:
    return split_textured(load_textured(cfg), cfg["data"]["val_fraction"], seed=int(cfg["seed"]))


def build(cfg, device) -> Experiment:
    m = model_section(cfg)
    objective = vhe.get_objective(m["objective"])
    train_set, val_set = train_val_textured(cfg)
    model = make_model(cfg, device)
    train, val, k_shot = episode_loaders(
        cfg,
        train_set,
        val_set,
        labels=labels_of,
        k_shot=wanted_k_shot(cfg, train_set),
        resample={"c": objective.resample, "t": objective.resample, "z": True},
        device=device,
    )
    info = {
        "train_images": len(train_set),
        "train_characters": train_set.n_classes,
        "val_images": len(val_set),
        "val_characters": val_set.n_classes,
        "textures": train_set.n_textures,
        "k_shot": k_shot,
    }
    return Experiment(
        model=model,
        objective=objective,
        train_loader=train,
        val_loader=val,
        kl_latents=["c", "t", "z"],
        sample_latents=["c", "t"],
        info=info,
    )
