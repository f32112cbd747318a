"""Encoders q(variable | D, parents): convolutional set and image encoders.

All encoders return ``(value, log_prob)`` with ``value`` of shape
``(B, latent_dim)`` and ``log_prob`` of shape ``(B,)`` in nats (diagonal
Gaussian, summed over latent dims). Sampling is reparameterised (rsample).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .base import (
    ParentDims,
    VHEModule,
    activation,
    gaussian_from_params,
    gaussian_sample_or_score,
    make_mlp,
)

__all__ = ["ConvFeatures", "GaussianSetEncoder", "GaussianImageEncoder"]


def _check_image_size(image_size: int) -> int:
    image_size = int(image_size)
    if image_size < 4 or image_size % 4:
        raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
    return image_size


class ConvFeatures(nn.Module):
    """Conv trunk: images ``(N, C, S, S)`` -> feature vectors ``(N, out_dim)``.

    ``n_layers`` 3x3 convolutions (``channels`` wide); two of them have stride 2
    (the last of each half), so the map is ``(channels, S/4, S/4)`` before a
    flatten -> Linear -> activation. BatchNorm is off by default so that sets of
    size 1 and train/eval modes behave identically.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 32,
        n_layers: int = 4,
        out_dim: int = 128,
        image_size: int = 28,
        batch_norm: bool = False,
        act: str = "elu",
    ):
        super().__init__()
        if n_layers < 2:
            raise ValueError(f"ConvFeatures needs n_layers >= 2 (two stride-2 layers), got {n_layers}")
        self.in_channels = in_channels
        self.image_size = _check_image_size(image_size)
        self.out_dim = out_dim
        strided = {n_layers // 2 - 1, n_layers - 1}
        layers: list = []
        c = in_channels
        for i in range(n_layers):
            stride = 2 if i in strided else 1
            layers.append(nn.Conv2d(c, channels, 3, stride=stride, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(activation(act))
            c = channels
        self.convs = nn.Sequential(*layers)
        s = self.image_size // 4
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(channels * s * s, out_dim), activation(act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` images -> ``(N, out_dim)`` features."""
        return self.fc(self.convs(x))


class GaussianSetEncoder(VHEModule):
    """q(variable | D, parents): diagonal Gaussian from a support set.

    Each element of ``inputs`` ``(B, k, C, S, S)`` goes through a shared
    :class:`ConvFeatures`; features are pooled over the set dim (``"mean"`` or
    ``"max"``; order invariant, any ``k >= 1``), concatenated with the parent
    vectors ``(B, d_parent)`` and mapped by an MLP to mean and log-std (clamped
    to ``logstd_range``).

    forward(inputs, *parents, <variable>=None) -> (value (B, latent_dim), log_prob (B,) nats)
    """

    is_encoder = True

    def __init__(
        self,
        variable: str,
        latent_dim: int,
        parents: Sequence[str] = (),
        parent_dims: ParentDims = None,
        in_channels: int = 1,
        image_size: int = 28,
        hidden: int = 128,
        pool: str = "mean",
        channels: int = 32,
        n_conv_layers: int = 4,
        feature_dim: Optional[int] = None,
        n_hidden_layers: int = 2,
        logstd_range: tuple = (-7.0, 2.0),
        batch_norm: bool = False,
        act: str = "elu",
    ):
        super().__init__(variable, parents, parent_dims)
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}")
        self.latent_dim = int(latent_dim)
        self.latent_shape = (self.latent_dim,)
        self.in_channels = in_channels
        self.image_size = _check_image_size(image_size)
        self.pool = pool
        self.logstd_range = (float(logstd_range[0]), float(logstd_range[1]))
        feature_dim = hidden if feature_dim is None else feature_dim
        self.features = ConvFeatures(in_channels, channels, n_conv_layers, feature_dim, image_size, batch_norm, act)
        self.mlp = make_mlp(feature_dim + self.parent_dim_total, hidden, 2 * self.latent_dim, n_hidden_layers, act)

    def _check_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        shape = (self.in_channels, self.image_size, self.image_size)
        if not torch.is_tensor(inputs) or inputs.dim() != 5 or tuple(inputs.shape[2:]) != shape or inputs.shape[1] < 1:
            got = tuple(inputs.shape) if torch.is_tensor(inputs) else type(inputs).__name__
            raise ValueError(
                f"{self._describe()}: inputs must have shape (B, k>=1, {', '.join(map(str, shape))}), got {got}"
            )
        return inputs

    def distribution(self, inputs: torch.Tensor, *parents: torch.Tensor) -> torch.distributions.Normal:
        """The posterior as a ``torch.distributions.Normal`` with batch shape ``(B, latent_dim)``."""
        inputs = self._check_inputs(inputs)
        b, k = inputs.shape[:2]
        parents = self._check_parents(parents, b)
        if not inputs.is_floating_point():  # e.g. uint8 / bool images
            inputs = inputs.to(self.mlp[-1].weight.dtype)
        feats = self.features(inputs.reshape(b * k, *inputs.shape[2:])).view(b, k, -1)
        pooled = feats.mean(dim=1) if self.pool == "mean" else feats.amax(dim=1)
        h = pooled if not parents else torch.cat([pooled, *parents], dim=-1)
        return gaussian_from_params(self.mlp(h), self.logstd_range)

    def forward(self, inputs: torch.Tensor, *parents: torch.Tensor, **value):
        """inputs (B, k, C, S, S), parents (B, d_p) -> (value (B, latent_dim), log_prob (B,) nats)."""
        v = self._pop_value(value)
        dist = self.distribution(inputs, *parents)
        if v is not None:
            self._check_value(v, (inputs.shape[0], self.latent_dim))
        return gaussian_sample_or_score(dist, v)


class GaussianImageEncoder(GaussianSetEncoder):
    """q(variable | x, parents): :class:`GaussianSetEncoder` for a single image.

    ``inputs`` must have shape ``(B, 1, C, S, S)`` (a support set of size 1),
    e.g. q(z | x, c) with ``parents=("c",)``.
    """

    def _check_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = super()._check_inputs(inputs)
        if inputs.shape[1] != 1:
            raise ValueError(
                f"{self._describe()}: per-image encoder needs inputs of shape (B, 1, C, S, S), got {tuple(inputs.shape)}"
            )
        return inputs
