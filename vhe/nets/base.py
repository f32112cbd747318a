"""Shared plumbing for every `vhe` distribution module.

Every distribution is an ``nn.Module`` whose ``forward`` returns
``(value, log_prob)``: it samples ``value`` when the variable is not given and
scores it otherwise. ``log_prob`` has shape ``(B,)`` and is in nats, summed
over all of the variable's dimensions.

A module declares its place in the factor graph with two attributes:

* ``vhe_variable`` (str): the variable it generates, e.g. ``"c"``;
* ``vhe_parents`` (tuple of str): the parent latents, in call order.

Calling conventions (used by the library):

* encoders: ``module(inputs, *parent_values, **{variable: value_or_None})``
  with ``inputs`` the support set, shape ``(B, k, C, H, W)``, ``k >= 1``;
* priors and decoders: ``module(*parent_values, **{variable: value_or_None})``.

Parents are flat latent vectors of shape ``(B, d_parent)``.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import torch
from torch import nn

__all__ = [
    "VHEModule",
    "ParentDims",
    "make_mlp",
    "activation",
    "normal_log_prob",
    "bernoulli_log_prob",
    "gaussian_from_params",
    "gaussian_sample_or_score",
]

ParentDims = Union[None, Mapping[str, int], Sequence[int]]


def _normalise_parent_dims(parents: tuple, parent_dims: ParentDims) -> dict:
    """Return ``{parent name: dim}`` for every declared parent (in order)."""
    if not parents:
        if parent_dims:
            extra = list(parent_dims.keys()) if isinstance(parent_dims, Mapping) else list(parent_dims)
            raise ValueError(f"parent_dims {extra!r} given but no parents declared")
        return {}
    if parent_dims is None:
        raise ValueError(f"parents {parents!r} declared but parent_dims is missing")
    if isinstance(parent_dims, Mapping):
        missing = [p for p in parents if p not in parent_dims]
        extra = [p for p in parent_dims if p not in parents]
        if missing or extra:
            raise ValueError(
                f"parent_dims keys {sorted(parent_dims)} do not match parents {parents!r}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unknown {extra})" if extra else "")
            )
        dims = {p: int(parent_dims[p]) for p in parents}
    else:
        dims_seq = [int(d) for d in parent_dims]
        if len(dims_seq) != len(parents):
            raise ValueError(f"{len(dims_seq)} parent_dims given for {len(parents)} parents {parents!r}")
        dims = dict(zip(parents, dims_seq))
    for p, d in dims.items():
        if d < 1:
            raise ValueError(f"parent {p!r} has non-positive dim {d}")
    return dims


class VHEModule(nn.Module):
    """Base class: graph declaration and argument checking for `vhe` modules.

    Args:
        variable: name of the generated variable (``vhe_variable``).
        parents: names of the parent latents, in call order (``vhe_parents``).
        parent_dims: ``{name: dim}`` or a sequence aligned with ``parents``;
            each parent is a tensor of shape ``(B, dim)``.

    Subclasses call :meth:`_pop_value` and :meth:`_check_parents` at the start
    of ``forward``; these raise ``TypeError`` on unexpected keyword arguments
    and ``ValueError`` (stating the expected shapes) on a wrong number of
    parents or a wrongly shaped tensor.
    """

    #: whether ``forward`` takes an ``inputs`` support set first
    is_encoder: bool = False

    def __init__(self, variable: str, parents: Sequence[str] = (), parent_dims: ParentDims = None):
        super().__init__()
        if not isinstance(variable, str) or not variable:
            raise ValueError(f"variable must be a non-empty string, got {variable!r}")
        if isinstance(parents, str):
            parents = (parents,)
        parents = tuple(parents)
        if len(set(parents)) != len(parents):
            raise ValueError(f"duplicate parent names in {parents!r}")
        if variable in parents:
            raise ValueError(f"variable {variable!r} cannot be its own parent")
        self.vhe_variable: str = variable
        self.vhe_parents: tuple = parents
        self.parent_dims: dict = _normalise_parent_dims(parents, parent_dims)

    # ------------------------------------------------------------------ helpers
    @property
    def parent_dim_total(self) -> int:
        """Sum of the parents' dims (width of the concatenated parent vector)."""
        return sum(self.parent_dims.values())

    def _describe(self) -> str:
        lhs = self.vhe_variable
        rhs = (["D"] if self.is_encoder else []) + list(self.vhe_parents)
        kind = "q" if self.is_encoder else "p"
        return f"{type(self).__name__}[{kind}({lhs}" + (f" | {', '.join(rhs)})" if rhs else ")") + "]"

    def _pop_value(self, kwargs: dict) -> Optional[torch.Tensor]:
        """Pop ``self.vhe_variable`` from ``kwargs``; TypeError on anything else."""
        value = kwargs.pop(self.vhe_variable, None)
        if kwargs:
            raise TypeError(
                f"{self._describe()}.forward() got unexpected keyword argument(s) "
                f"{sorted(kwargs)}; the only accepted keyword is {self.vhe_variable!r}"
            )
        return value

    def _expected_parents(self) -> str:
        if not self.vhe_parents:
            return "no parents"
        return ", ".join(f"{p}: (B, {d})" for p, d in self.parent_dims.items())

    def _check_parents(self, parents: Sequence, batch_size: Optional[int] = None) -> list:
        """Validate the positional parent tensors; returns them as a list.

        Each parent must be a tensor of shape ``(B, parent_dims[name])`` with a
        common ``B`` (equal to ``batch_size`` when given).
        """
        parents = list(parents)
        if len(parents) != len(self.vhe_parents):
            got = [tuple(p.shape) if torch.is_tensor(p) else type(p).__name__ for p in parents]
            raise ValueError(
                f"{self._describe()} expects {len(self.vhe_parents)} parent(s) "
                f"({self._expected_parents()}), got {len(parents)}: {got}"
            )
        for name, p in zip(self.vhe_parents, parents):
            if not torch.is_tensor(p):
                raise ValueError(f"{self._describe()}: parent {name!r} must be a tensor, got {type(p).__name__}")
            d = self.parent_dims[name]
            b = batch_size if batch_size is not None else p.shape[0] if p.dim() > 0 else None
            if p.dim() != 2 or p.shape[1] != d or (b is not None and p.shape[0] != b):
                exp_b = batch_size if batch_size is not None else "B"
                raise ValueError(
                    f"{self._describe()}: parent {name!r} must have shape ({exp_b}, {d}), "
                    f"got {tuple(p.shape)} (expected {self._expected_parents()})"
                )
            if batch_size is None:
                batch_size = p.shape[0]
        return parents

    def _cat_parents(self, parents: Sequence[torch.Tensor]) -> Optional[torch.Tensor]:
        """Concatenate parents along the last dim -> ``(B, parent_dim_total)``, or None."""
        if not parents:
            return None
        return torch.cat(list(parents), dim=-1) if len(parents) > 1 else parents[0]

    def _check_value(self, value: torch.Tensor, shape: tuple) -> torch.Tensor:
        """Check that a given value has exactly ``shape`` (use ``"B"`` in docs)."""
        if not torch.is_tensor(value):
            raise ValueError(f"{self._describe()}: {self.vhe_variable!r} must be a tensor, got {type(value).__name__}")
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"{self._describe()}: {self.vhe_variable!r} must have shape {tuple(shape)}, got {tuple(value.shape)}"
            )
        return value

    def extra_repr(self) -> str:
        return f"variable={self.vhe_variable!r}, parents={self.vhe_parents!r}, parent_dims={self.parent_dims}"


# ---------------------------------------------------------------------- utils
_ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def activation(name: str) -> nn.Module:
    """Activation module by name (elu, relu, leaky_relu, tanh, gelu)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}") from None


def make_mlp(in_dim: int, hidden: int, out_dim: int, n_hidden_layers: int = 2, act: str = "elu") -> nn.Sequential:
    """MLP ``in_dim -> hidden (x n_hidden_layers) -> out_dim`` (no output activation)."""
    layers: list = []
    d = in_dim
    for _ in range(n_hidden_layers):
        layers += [nn.Linear(d, hidden), activation(act)]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def normal_log_prob(dist: torch.distributions.Normal, value: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log density summed over the last dim: (B, d) -> (B,) nats."""
    return dist.log_prob(value).sum(dim=-1)


def bernoulli_log_prob(logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Bernoulli log-likelihood from logits, summed over all but the batch dim -> (B,) nats."""
    nll = nn.functional.binary_cross_entropy_with_logits(logits, value, reduction="none")
    return -nll.flatten(1).sum(dim=1)


def gaussian_from_params(params: torch.Tensor, logstd_range: tuple = (-7.0, 2.0)) -> torch.distributions.Normal:
    """Split ``(B, 2d)`` into mean and log-std (clamped to ``logstd_range``) -> diagonal Normal."""
    mean, log_std = params.chunk(2, dim=-1)
    log_std = log_std.clamp(min=logstd_range[0], max=logstd_range[1])
    return torch.distributions.Normal(mean, log_std.exp())


def gaussian_sample_or_score(dist: torch.distributions.Normal, value: Optional[torch.Tensor]):
    """``(value, log_prob)``: rsample when ``value`` is None, else score it; log_prob (B,) nats."""
    if value is None:
        value = dist.rsample()
    return value, normal_log_prob(dist, value)
