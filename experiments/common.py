"""Shared pieces of the experiment builders: the ``Experiment`` bundle, devices and nets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

import vhe
from vhe.nets import (
    DeconvDecoder,
    GaussianImageEncoder,
    GaussianSetEncoder,
    PixelCNNDecoder,
    SpatialConvDecoder,
    SpatialGaussianPrior,
    SpatialImageEncoder,
    SpatialPixelCNNDecoder,
    SpatialPixelCNNPrior,
    SpatialSetEncoder,
)

from .sections import Nets, Train

__all__ = [
    "Experiment",
    "resolve_device",
    "MEMORY_FORMATS",
    "apply_memory_format",
    "model_section",
    "set_encoder",
    "image_encoder",
    "make_decoder",
    "SpatialNets",
    "spatial_nets",
    "require_vector_family",
    "SPATIAL_EXPERIMENTS",
]

#: experiments whose builders build the spatial family (``nets.family: spatial``)
SPATIAL_EXPERIMENTS = ("class", "hierarchical")


@dataclass
class Experiment:
    """What a builder returns and the trainer consumes (docs/INTERFACES.md).

    model: the VHE; objective: its vhe.Objective (the loader already uses ``resample``; the
    trainer passes ``rescale`` to ``model.score``); train_loader / val_loader: episode loaders
    (the validation one with a fixed seed); kl_latents: latents whose KL is reported.
    Optional: sample_latents: latents conditioned on support sets in sample grids (None: all
    but "z"); info: free-form facts about the data (sizes), saved in the train summary;
    val_set: the validation OmniglotSet, from which the trainer builds the one-shot runs of its
    learning curve (``train.one_shot_curve``; None: no curve).
    """

    model: vhe.VHE
    objective: vhe.Objective
    train_loader: vhe.DataLoader
    val_loader: vhe.DataLoader
    kl_latents: list[str]
    sample_latents: list[str] | None = None
    info: dict = field(default_factory=dict)
    val_set: object | None = None


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """ "auto" -> cuda if available else cpu; anything else as torch.device."""
    if isinstance(spec, torch.device):
        return spec
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available; use device: auto or cpu")
    return dev


#: config value of ``memory_format`` -> torch.memory_format
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def apply_memory_format(model: torch.nn.Module, cfg: Mapping) -> torch.nn.Module:
    """Lay out ``model``'s 4-D parameters and buffers as ``cfg["memory_format"]`` says (a loaded
    config has it: experiments.config.load_config fills the schema's default), in place; returns
    ``model``.

    Convolutions follow their weights' layout, so with ``channels_last`` the activations are NHWC
    too and inputs need no conversion; other tensors keep their shapes and values.
    """
    if "memory_format" not in cfg:
        raise KeyError("the config has no memory_format: load it with experiments.config.load_config")
    name = cfg["memory_format"]
    if name not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {sorted(MEMORY_FORMATS)}, got {name!r}")
    return model.to(memory_format=MEMORY_FORMATS[name])


def model_section(cfg: Mapping) -> dict:
    """``cfg["model"]`` (a per-model config from experiments.config.model_config)."""
    if "model" not in cfg:
        raise KeyError(
            "this config has no 'model' section: build it with experiments.config.model_config(cfg, "
            "name) (or pass --model NAME to experiments.train)"
        )
    return cfg["model"]


def _trunk_kwargs(nets) -> dict:
    nets = Nets.of(nets)
    return {"hidden": nets.hidden, "channels": nets.conv_channels, "n_conv_layers": nets.conv_layers}


def set_encoder(
    nets, variable: str, latent_dim: int, parents: Sequence[str] = (), parent_dims: Mapping | None = None
) -> GaussianSetEncoder:
    """q(variable | D, parents) sized by the ``nets`` section."""
    return GaussianSetEncoder(
        variable, latent_dim, parents=tuple(parents), parent_dims=parent_dims or None, **_trunk_kwargs(nets)
    )


def image_encoder(
    nets, variable: str, latent_dim: int, parents: Sequence[str] = (), parent_dims: Mapping | None = None
) -> GaussianImageEncoder:
    """q(variable | x, parents) sized by the ``nets`` section."""
    return GaussianImageEncoder(
        variable, latent_dim, parents=tuple(parents), parent_dims=parent_dims or None, **_trunk_kwargs(nets)
    )


def make_decoder(
    nets, decoder: str, parents: Sequence[str], parent_dims: Mapping, variable: str = "x", out_channels: int = 1
):
    """p(x | parents): ``deconv`` (DeconvDecoder) or ``pixelcnn`` (gated PixelCNNDecoder)."""
    nets = Nets.of(nets)
    if decoder == "deconv":
        return DeconvDecoder(
            variable,
            parents=tuple(parents),
            parent_dims=dict(parent_dims),
            out_channels=out_channels,
            hidden=nets.hidden,
            channels=nets.deconv_channels,
        )
    if decoder == "pixelcnn":
        p = nets.pixelcnn
        return PixelCNNDecoder(
            variable,
            parents=tuple(parents),
            parent_dims=dict(parent_dims),
            out_channels=out_channels,
            n_layers=p["n_layers"],
            channels=p["channels"],
            kernel_size=p["kernel_size"],
            cond_channels=p["cond_channels"],
            global_parents=tuple(p.get("global_parents") or ()),
        )
    raise ValueError(f"unknown decoder {decoder!r}; choose deconv or pixelcnn")


@dataclass
class SpatialNets:
    """The spatial family's modules for a class latent c (``nets.family: spatial``):
    q(c | D[, a]), p(c[ | a]), q(z | x, c) and p(x | c, z)."""

    enc_c: SpatialSetEncoder
    prior_c: SpatialGaussianPrior | SpatialPixelCNNPrior
    enc_z: SpatialImageEncoder
    decoder: SpatialPixelCNNDecoder | SpatialConvDecoder


def spatial_nets(
    nets, decoder: str, class_parents: Mapping[str, int] | None = None, image_size: int = 28, in_channels: int = 1
) -> SpatialNets:
    """The spatial family sized by the ``nets`` section (vhe.nets.spatial; docs/design.md).

    c is a ``nets.spatial.c_channels`` x S x S map; ``class_parents`` ({name: dim}, e.g. {"a": a_dim}
    in the hierarchical model) are vector parents of both q(c | D, a) and p(c | a). ``decoder``:
    ``pixelcnn`` (SpatialPixelCNNDecoder with the ``nets.pixelcnn`` sizes) or ``deconv``
    (SpatialConvDecoder, ``deconv_channels`` wide). ``nets.spatial.prior``: ``gaussian``
    (SpatialGaussianPrior) or ``pixelcnn`` (SpatialPixelCNNPrior with the decoder's kernel size and
    cond_channels).
    """
    nets = Nets.of(nets)
    sp, px = nets.spatial, nets.pixelcnn
    cp = dict(class_parents or {})
    shape = (int(sp["c_channels"]), int(image_size), int(image_size))
    z_dim = int(sp["z_dim"])
    enc_c = SpatialSetEncoder(
        "c",
        shape[0],
        parents=tuple(cp),
        parent_dims=cp or None,
        in_channels=in_channels,
        image_size=image_size,
        feature_channels=sp["enc_channels"],
        stn_channels=sp["stn_channels"],
        stn_hidden=sp["warp_hidden"],
        parent_channels=nets.deconv_channels,
    )
    if sp["prior"] == "gaussian":
        prior_c = SpatialGaussianPrior(
            "c", shape, parents=tuple(cp), parent_dims=cp or None, channels=nets.deconv_channels
        )
    elif sp["prior"] == "pixelcnn":
        prior_c = SpatialPixelCNNPrior(
            "c",
            shape,
            parents=tuple(cp),
            parent_dims=cp or None,
            n_layers=sp["prior_layers"],
            channels=sp["prior_channels"],
            kernel_size=px["kernel_size"],
            cond_channels=px["cond_channels"],
        )
    else:
        raise ValueError(f"unknown nets.spatial.prior {sp['prior']!r}; choose gaussian or pixelcnn")
    enc_z = SpatialImageEncoder(
        "z",
        z_dim,
        parents=("c",),
        parent_dims={"c": shape},
        in_channels=in_channels,
        image_size=image_size,
        channels=nets.conv_channels,
        n_conv_layers=nets.conv_layers,
        hidden=nets.hidden,
    )
    dims = {"c": shape, "z": z_dim}
    if decoder == "pixelcnn":
        dec = SpatialPixelCNNDecoder(
            "x",
            parents=("c", "z"),
            parent_dims=dims,
            out_channels=in_channels,
            image_size=image_size,
            n_layers=px["n_layers"],
            channels=px["channels"],
            kernel_size=px["kernel_size"],
            cond_channels=px["cond_channels"],
            warp_hidden=sp["warp_hidden"],
        )
    elif decoder == "deconv":
        dec = SpatialConvDecoder(
            "x",
            parents=("c", "z"),
            parent_dims=dims,
            out_channels=in_channels,
            image_size=image_size,
            channels=nets.deconv_channels,
            warp_hidden=sp["warp_hidden"],
        )
    else:
        raise ValueError(f"unknown decoder {decoder!r}; choose deconv or pixelcnn")
    return SpatialNets(enc_c=enc_c, prior_c=prior_c, enc_z=enc_z, decoder=dec)


def require_vector_family(nets, experiment: str) -> None:
    """ValueError unless ``nets.family`` is ``vector`` (for builders without a spatial family)."""
    family = Nets.of(nets).family
    if family != "vector":
        raise ValueError(
            f"nets.family: {family} is built for the {' and '.join(SPATIAL_EXPERIMENTS)} experiments "
            f"only; the {experiment} experiment uses the vector family (set nets.family: vector)"
        )


def loaders(cfg: Mapping, train_set, val_set, labels, k_shot: Mapping, resample, device, transforms=()):
    """Train and validation episode loaders over two OmniglotSets.

    ``labels(s) -> {latent: labels (N,)}`` is applied to each set. The training loader shuffles,
    drops the last incomplete batch, is seeded with ``seed`` and serves ``train.targets_per_class``
    targets per support set; the validation loader (no transforms, one target per support set, so
    validation bounds compare across T) with ``seed + 1``. Images stay uint8 on ``device`` and come out float32.
    """
    tr = Train.of(model_section(cfg)["train"])
    seed = int(cfg["seed"])
    common = dict(k_shot=dict(k_shot), batch_size=tr.batch_size, resample=resample, device=device, dtype=torch.float32)
    train = vhe.DataLoader(
        train_set.images,
        labels=labels(train_set),
        transforms=list(transforms),
        shuffle=True,
        drop_last=len(train_set) >= tr.batch_size,
        seed=seed,
        targets_per_class=tr.targets_per_class,
        **common,
    )
    val = vhe.DataLoader(val_set.images, labels=labels(val_set), shuffle=True, drop_last=False, seed=seed + 1, **common)
    return train, val


def dihedral_transform(share_labels: Sequence[str]) -> vhe.Transform:
    """The 8 dihedral maps as a loader transform; with all latents shared they make new classes."""
    from vhe.data.omniglot import dihedral

    return vhe.Transform(dihedral, list(range(8)), share_labels=list(share_labels))
