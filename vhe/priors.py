"""Default prior: an isotropic standard normal N(0, I) over one latent, as a proper module."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["NormalPrior"]


class NormalPrior(nn.Module):
    """p(v) = N(0, I) over a latent of shape ``shape`` (excluding the batch dimension).

    The location and scale are buffers, so the prior follows ``.to(device)``, dtype changes
    and ``state_dict`` round trips. When ``shape`` is not known at construction (the encoder
    declares no ``latent_shape``), it is taken from the first value scored; sampling before
    then raises an error that says how to declare it.

    forward(v=None, batch_size=None) -> (value (B, *shape), log_prob (B,) in nats)
    """

    def __init__(self, variable: str, shape=None):
        super().__init__()
        self.vhe_variable = variable
        self.vhe_parents = ()
        self.register_buffer("loc", torch.zeros(tuple(shape)) if shape is not None else None)

    @property
    def shape(self):
        return None if self.loc is None else tuple(self.loc.shape)

    def _materialise(self, shape, like: torch.Tensor) -> None:
        self.loc = torch.zeros(tuple(shape), device=like.device, dtype=like.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "loc"
        if self.loc is None and key in state_dict:
            self._materialise(state_dict[key].shape, state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, batch_size: int | None = None, **value):
        v = value.pop(self.vhe_variable, None)
        if value:
            raise TypeError(f"NormalPrior({self.vhe_variable!r}) got unexpected arguments {sorted(value)}")
        if v is None:
            if self.loc is None:
                raise RuntimeError(
                    f"the default prior of {self.vhe_variable!r} does not know the latent's shape yet: "
                    f"give its encoder a `latent_shape` attribute, pass "
                    f"VHE(..., latent_shape={{{self.vhe_variable!r}: (dim,)}}), or score a batch first"
                )
            if batch_size is None:
                raise ValueError("sampling a prior with no parents needs batch_size")
            v = torch.randn((batch_size, *self.loc.shape), device=self.loc.device, dtype=self.loc.dtype)
        elif self.loc is None:
            self._materialise(v.shape[1:], v)
        elif tuple(v.shape[1:]) != tuple(self.loc.shape):
            raise ValueError(
                f"prior of {self.vhe_variable!r} expects values of shape (B, {tuple(self.loc.shape)}), "
                f"got {tuple(v.shape)}"
            )
        log_prob = -0.5 * (v.pow(2) + math.log(2 * math.pi))
        return v, log_prob.reshape(v.shape[0], -1).sum(dim=1)
