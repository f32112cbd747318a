"""Priors p(variable | parents) over flat latent vectors.

``forward(*parents, <variable>=None) -> (value (B, latent_dim), log_prob (B,) nats)``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .base import ParentDims, VHEModule, gaussian_from_params, gaussian_sample_or_score, make_mlp

__all__ = ["GaussianConditionalPrior"]


class GaussianConditionalPrior(VHEModule):
    """p(variable | parents): diagonal Gaussian whose mean/log-std come from an MLP.

    The parents ``(B, d_p)`` are concatenated and mapped to mean and log-std
    (clamped to ``logstd_range``), e.g. p(c | a) in the hierarchical model.
    With ``parents=()`` the mean and log-std are free parameters (initialised
    to N(0, I)); then ``batch_size`` is needed for sampling without a value.

    forward(*parents, <variable>=None, batch_size=None) -> (value (B, latent_dim), log_prob (B,) nats)
    """

    def __init__(
        self,
        variable: str,
        latent_dim: int,
        parents: Sequence[str] = (),
        parent_dims: ParentDims = None,
        hidden: int = 128,
        n_hidden_layers: int = 2,
        logstd_range: tuple = (-7.0, 2.0),
        act: str = "elu",
    ):
        super().__init__(variable, parents, parent_dims)
        self.latent_dim = int(latent_dim)
        self.latent_shape = (self.latent_dim,)
        self.logstd_range = (float(logstd_range[0]), float(logstd_range[1]))
        if self.vhe_parents:
            self.mlp = make_mlp(self.parent_dim_total, hidden, 2 * self.latent_dim, n_hidden_layers, act)
        else:
            self.mlp = None
            self.params = nn.Parameter(torch.zeros(2 * self.latent_dim))

    def distribution(self, *parents: torch.Tensor, batch_size: Optional[int] = None) -> torch.distributions.Normal:
        """The prior as a ``torch.distributions.Normal`` with batch shape ``(B, latent_dim)``."""
        parents = self._check_parents(parents, batch_size)
        if self.mlp is not None:
            params = self.mlp(self._cat_parents(parents))
        else:
            if batch_size is None:
                raise ValueError(f"{self._describe()} has no parents: pass batch_size or a value")
            params = self.params.expand(batch_size, -1)
        return gaussian_from_params(params, self.logstd_range)

    def forward(self, *parents: torch.Tensor, batch_size: Optional[int] = None, **value):
        """parents (B, d_p) -> (value (B, latent_dim), log_prob (B,) nats)."""
        v = self._pop_value(value)
        if v is not None:
            b = v.shape[0] if torch.is_tensor(v) and v.dim() > 0 else None
            self._check_value(v, (b, self.latent_dim))
            batch_size = b
        elif parents and batch_size is None:
            batch_size = parents[0].shape[0] if torch.is_tensor(parents[0]) and parents[0].dim() > 0 else None
        dist = self.distribution(*parents, batch_size=batch_size)
        return gaussian_sample_or_score(dist, v)
