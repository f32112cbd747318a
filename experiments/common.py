"""Shared pieces of the experiment builders: the ``Experiment`` bundle, devices and nets."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

import vhe
from vhe.nets import DeconvDecoder, GaussianImageEncoder, GaussianSetEncoder, PixelCNNDecoder

from .sections import Nets, Train

__all__ = ["Experiment", "resolve_device", "model_section", "set_encoder", "image_encoder", "make_decoder"]


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
    """"auto" -> cuda if available else cpu; anything else as torch.device."""
    if isinstance(spec, torch.device):
        return spec
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available; use device: auto or cpu")
    return dev


def model_section(cfg: Mapping) -> dict:
    """``cfg["model"]`` (a per-model config from experiments.config.model_config)."""
    if "model" not in cfg:
        raise KeyError("this config has no 'model' section: build it with experiments.config.model_config(cfg, "
                       "name) (or pass --model NAME to experiments.train)")
    return cfg["model"]


def _trunk_kwargs(nets) -> dict:
    nets = Nets.of(nets)
    return {"hidden": nets.hidden, "channels": nets.conv_channels, "n_conv_layers": nets.conv_layers}


def set_encoder(nets, variable: str, latent_dim: int, parents: Sequence[str] = (),
                parent_dims: Mapping | None = None) -> GaussianSetEncoder:
    """q(variable | D, parents) sized by the ``nets`` section."""
    return GaussianSetEncoder(variable, latent_dim, parents=tuple(parents), parent_dims=parent_dims or None,
                              **_trunk_kwargs(nets))


def image_encoder(nets, variable: str, latent_dim: int, parents: Sequence[str] = (),
                  parent_dims: Mapping | None = None) -> GaussianImageEncoder:
    """q(variable | x, parents) sized by the ``nets`` section."""
    return GaussianImageEncoder(variable, latent_dim, parents=tuple(parents), parent_dims=parent_dims or None,
                                **_trunk_kwargs(nets))


def make_decoder(nets, decoder: str, parents: Sequence[str], parent_dims: Mapping, variable: str = "x",
                 out_channels: int = 1):
    """p(x | parents): ``deconv`` (DeconvDecoder) or ``pixelcnn`` (gated PixelCNNDecoder)."""
    nets = Nets.of(nets)
    if decoder == "deconv":
        return DeconvDecoder(variable, parents=tuple(parents), parent_dims=dict(parent_dims), out_channels=out_channels,
                             hidden=nets.hidden, channels=nets.deconv_channels)
    if decoder == "pixelcnn":
        p = nets.pixelcnn
        return PixelCNNDecoder(variable, parents=tuple(parents), parent_dims=dict(parent_dims),
                               out_channels=out_channels, n_layers=p["n_layers"], channels=p["channels"],
                               kernel_size=p["kernel_size"], cond_channels=p["cond_channels"])
    raise ValueError(f"unknown decoder {decoder!r}; choose deconv or pixelcnn")


def loaders(cfg: Mapping, train_set, val_set, labels, k_shot: Mapping, resample, device, transforms=()):
    """Train and validation episode loaders over two OmniglotSets.

    ``labels(s) -> {latent: labels (N,)}`` is applied to each set. The training loader shuffles,
    drops the last incomplete batch, is seeded with ``seed`` and serves ``train.targets_per_class``
    targets per support set; the validation loader (no transforms, one target per support set, so
    validation bounds compare across T) with ``seed + 1``. Images stay uint8 on ``device`` and come out float32.
    """
    tr = Train.of(model_section(cfg)["train"])
    seed = int(cfg["seed"])
    common = dict(k_shot=dict(k_shot), batch_size=tr.batch_size, resample=resample, device=device,
                  dtype=torch.float32)
    train = vhe.DataLoader(train_set.images, labels=labels(train_set), transforms=list(transforms), shuffle=True,
                           drop_last=len(train_set) >= tr.batch_size, seed=seed,
                           targets_per_class=tr.targets_per_class, **common)
    val = vhe.DataLoader(val_set.images, labels=labels(val_set), shuffle=True, drop_last=False, seed=seed + 1,
                         **common)
    return train, val


def dihedral_transform(share_labels: Sequence[str]) -> vhe.Transform:
    """The 8 dihedral maps as a loader transform; with all latents shared they make new classes."""
    from vhe.data.omniglot import dihedral

    return vhe.Transform(dihedral, list(range(8)), share_labels=list(share_labels))
