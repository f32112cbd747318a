"""Decoders p(x | parents) over binary images.

``forward(*parents, x=None) -> (x (B, C, S, S) in {0, 1}, log_prob (B,) nats per image)``.
See also :class:`vhe.nets.pixelcnn.PixelCNNDecoder`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import ParentDims, VHEModule, activation, bernoulli_log_prob, make_mlp

__all__ = ["DeconvDecoder"]


class DeconvDecoder(VHEModule):
    """Bernoulli p(x | parents) with a deconvolutional (transposed conv) network.

    Parents ``(B, d_p)`` are concatenated -> MLP (``n_hidden_layers`` x
    ``hidden``) -> Linear to ``(channels, S/4, S/4)`` -> two stride-2
    ConvTranspose2d (4x4) -> 3x3 conv -> per-pixel logits ``(B, C, S, S)``.
    Pixels are conditionally independent given the parents.

    forward(*parents, x=None) -> (x (B, C, S, S), log_prob (B,) nats per image)
    """

    def __init__(
        self,
        variable: str = "x",
        parents: Sequence[str] = ("c", "z"),
        parent_dims: ParentDims = None,
        out_channels: int = 1,
        image_size: int = 28,
        hidden: int = 128,
        channels: int = 64,
        n_hidden_layers: int = 1,
        act: str = "elu",
    ):
        super().__init__(variable, parents, parent_dims)
        if not self.vhe_parents:
            raise ValueError("DeconvDecoder needs at least one parent latent")
        image_size = int(image_size)
        if image_size < 4 or image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
        self.out_channels = out_channels
        self.image_size = image_size
        self.channels = channels
        s = image_size // 4
        self._s = s
        self.mlp = nn.Sequential(
            make_mlp(self.parent_dim_total, hidden, channels * s * s, n_hidden_layers, act), activation(act)
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1),
            activation(act),
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1),
            activation(act),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )

    def logits(self, *parents: torch.Tensor) -> torch.Tensor:
        """Parents (B, d_p) -> Bernoulli logits (B, C, S, S)."""
        parents = self._check_parents(parents)
        h = self.mlp(self._cat_parents(parents)).view(-1, self.channels, self._s, self._s)
        return self.deconv(h)

    def probs(self, *parents: torch.Tensor) -> torch.Tensor:
        """Parents (B, d_p) -> pixel probabilities (B, C, S, S) in [0, 1] (for plotting)."""
        return torch.sigmoid(self.logits(*parents))

    def forward(self, *parents: torch.Tensor, **value):
        """parents (B, d_p) -> (x (B, C, S, S), log_prob (B,) nats per image)."""
        x = self._pop_value(value)
        logits = self.logits(*parents)
        if x is None:
            x = torch.bernoulli(torch.sigmoid(logits.detach()))
        else:
            self._check_value(x, tuple(logits.shape))
        return x, bernoulli_log_prob(logits, x.to(logits.dtype))
