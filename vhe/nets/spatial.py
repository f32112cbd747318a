"""Spatial-latent networks: the paper's deformable-template Omniglot model.

The paper's Omniglot PixelCNN model (Hewitt et al. 2018; original code insperatum/vhe,
``example_pixelcnn.py``) does not use a vector class latent: ``c`` is a *map* of shape
``(C, S, S)`` (C = 10 channels at 28x28 there), a per-character template, and the per-image
latent ``z`` only says how to *deform* it (an affine warp). The modules here build that family;
like every ``vhe.nets`` module each is a distribution with
``forward(self, [inputs,] *parents, <variable>=None) -> (value, log_prob (B,) nats)``.

* :class:`SpatialSetEncoder`, q(c | D): every support image aligned by a spatial transformer,
  5x5 conv + ReLU, mean over D, 5x5 conv heads for the mean and softplus scale of a diagonal
  Gaussian over the map c;
* :class:`SpatialImageEncoder`, q(z | x, c): a conv net over x with c stacked as extra channels;
* :class:`SpatialPixelCNNDecoder`, p(x | c, z): z -> MLP -> affine warp of c; the warped map's
  multi-scale features condition a gated PixelCNN; Bernoulli pixels;
* :class:`SpatialConvDecoder`, p(x | c, z): the same warp and features, a conv head, independent
  Bernoulli pixels (the cheap member of the family);
* :class:`SpatialGaussianPrior`, p(c): a learned mean and log-scale per position and channel
  (initialised to N(0, I)); with vector parents, p(c | a) whose mean/log-scale maps come from a
  (the hierarchical model);
* :class:`SpatialPixelCNNPrior`, p(c) (or p(c | a)): autoregressive over positions, a Gaussian per
  channel given the positions before it (the paper's choice).

Building blocks: :func:`warp` (``F.affine_grid`` + ``F.grid_sample``), :class:`SpatialTransformer`
(localisation net -> 2x3 affine, identity at initialisation), :class:`AffineWarp` (vector -> MLP
-> 2x3 affine, identity at initialisation), :class:`MultiScaleMap` (features of a map at S, S/2
and S/4 stacked at S).

Parents. A parent of these modules is either a vector ``(B, d)`` (``parent_dims`` value an int,
as everywhere in ``vhe.nets``) or a map ``(B, C, H, W)`` (value a shape ``(C, H, W)``), e.g.
``SpatialPixelCNNDecoder(parents=("c", "z"), parent_dims={"c": (10, 28, 28), "z": 16})``.

What the paper's code did, and where this differs (also in docs/design.md):

* q(c | D): as there (localisation Conv 7x7 (8) - MaxPool - ReLU - Conv 5x5 (10) - MaxPool -
  ReLU - Linear 90->32 - ReLU - Linear 32->6; 5x5 conv + ReLU; mean; 5x5 conv heads, softplus
  scale), except that both localisation convs are ``stn_channels`` wide, the 5x5 convolutions are
  padded symmetrically (there: 4 rows/columns on the top-left, which shifts the template by 2
  pixels) and the scale has a floor ``min_scale``.
* q(z | x): there a conv net over x alone with a 10x3x3 z; here ``z`` is a flat vector of any
  size (10x3x3 = 90 flattened is the paper's) and the conv net also sees c (stacked channels):
  the warp that aligns c with x is easier to infer when c is seen.
* p(x | c, z): there the warped map went through three 5x5 convolutions (28x28, then stride 2 to
  14x14 and 7x7) whose outputs conditioned a PixelCNN++ (4 resnet blocks x 40 filters, down- and
  up-sampling streams) at the matching resolutions. Here a *single-resolution* gated PixelCNN
  (:class:`vhe.nets.PixelCNNDecoder`'s layers) is conditioned at every layer on a multi-scale
  feature stack of the warped map (:class:`MultiScaleMap`: the same three 5x5 convolutions at
  28, 14 and 7, with ELUs, upsampled back to 28x28 and mixed by a 1x1 convolution). Conditioning
  never looks at x, so causality is the gated PixelCNN's own (tested).
* p(c): there a PixelCNN++ with Gaussian outputs at half the decoder's size. Here both a learned
  per-position Gaussian (:class:`SpatialGaussianPrior`, cheap, exact sampling) and a gated
  PixelCNN with a Gaussian per channel (:class:`SpatialPixelCNNPrior`, the paper's choice) are
  provided and tested (causality by perturbation, log-prob against ``torch.distributions.Normal``,
  sampling consistent with scoring). The PixelCNN prior starts as exactly N(0, I) (zero-initialised
  output layer) and its channels at one position are independent given the positions before it,
  as in the code's ``gaussian`` mode (there the scale was a softplus, here exp of a clamped log-std).

All Gaussian and Bernoulli log-probabilities are computed in float32 even under autocast, and the
warps run in float32 (bf16 grid coordinates are off by ~0.05 pixel).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import VHEModule, _normalise_parent_dims, activation, bernoulli_log_prob, make_mlp
from .encoders import ConvFeatures
from .pixelcnn import GatedPixelCNNLayer, PixelCNNDecoder

__all__ = [
    "warp",
    "identity_theta",
    "SpatialTransformer",
    "AffineWarp",
    "MultiScaleMap",
    "SpatialSetEncoder",
    "SpatialImageEncoder",
    "SpatialPixelCNNDecoder",
    "SpatialConvDecoder",
    "SpatialGaussianPrior",
    "SpatialPixelCNNPrior",
]

#: the 2x3 identity affine matrix, row-major (what every warp is initialised to)
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


# --------------------------------------------------------------------------- warps
def identity_theta(batch_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``batch_size`` copies of the identity affine matrix -> (B, 2, 3)."""
    return torch.tensor(_IDENTITY, device=device, dtype=dtype).view(1, 2, 3).expand(batch_size, 2, 3).clone()


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp maps ``(N, C, H, W)`` by affine matrices ``theta`` ``(N, 2, 3)`` (or ``(N, 6)``).

    ``F.affine_grid`` + bilinear ``F.grid_sample`` with ``align_corners=False`` (so the identity
    matrix returns the input exactly, up to float rounding) and zero padding (outside the map is
    "no ink" / a zero template). Runs in float32 (float64 stays float64) with autocast off; the
    result has the dtype of ``images``.
    """
    if images.dim() != 4:
        raise ValueError(f"warp: images must be (N, C, H, W), got {tuple(images.shape)}")
    dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    theta = theta.reshape(-1, 2, 3)
    if theta.shape[0] != images.shape[0]:
        raise ValueError(f"warp: {theta.shape[0]} affine matrices for {images.shape[0]} maps")
    with torch.autocast(device_type=images.device.type, enabled=False):
        x, t = images.to(dtype), theta.to(dtype)
        grid = F.affine_grid(t, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(images.dtype) if images.is_floating_point() else out


def _identity_init(linear: nn.Linear) -> None:
    """Zero weights and identity bias: the layer outputs the identity affine matrix for any input."""
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor(_IDENTITY, dtype=linear.bias.dtype))


class SpatialTransformer(nn.Module):
    """Spatial transformer (Jaderberg et al. 2015) that aligns images: ``(N, C, S, S) -> (N, C, S, S)``.

    Localisation net as in the paper's code: Conv 7x7 (``channels``) - MaxPool 2 - ReLU - Conv 5x5
    (``channels``) - MaxPool 2 - ReLU (28x28 -> 3x3; larger images are average-pooled to 3x3) -
    Linear (9 ``channels`` -> ``hidden``) - ReLU - Linear (``hidden`` -> 6) = the 2x3 affine
    matrix. The last layer has zero weights and the identity as its bias, so at initialisation the
    transform is the identity whatever the image; :func:`warp` applies it.
    """

    def __init__(self, in_channels: int = 1, channels: int = 8, image_size: int = 28, hidden: int = 32):
        super().__init__()
        image_size = int(image_size)
        if image_size < 18:
            raise ValueError(
                f"SpatialTransformer needs images of at least 18x18 (valid 7x7 and 5x5 convs, two "
                f"poolings), got {image_size}"
            )
        self.localization = nn.Sequential(
            nn.Conv2d(in_channels, channels, 7),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(3),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(channels * 9, hidden), nn.ReLU(), nn.Linear(hidden, 6))
        _identity_init(self.fc[-1])

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, S, S)`` -> affine matrices ``(N, 2, 3)`` (the identity at initialisation)."""
        return self.fc(self.localization(x)).view(-1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, S, S)`` -> aligned images ``(N, C, S, S)``."""
        return warp(x, self.theta(x))


class AffineWarp(nn.Module):
    """Warp a map by an affine matrix computed from a vector: ``(map (N, C, H, W), v (N, d)) -> map``.

    ``v`` -> Linear (``hidden``) - ReLU - Linear (6) (zero weights, identity bias: the identity warp
    at initialisation), as the paper's decoder turned z into the warp of c.
    """

    def __init__(self, in_dim: int, hidden: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 6))
        _identity_init(self.mlp[-1])

    def theta(self, v: torch.Tensor) -> torch.Tensor:
        """Vectors ``(N, d)`` -> affine matrices ``(N, 2, 3)``."""
        return self.mlp(v).view(-1, 2, 3)

    def forward(self, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return warp(m, self.theta(v))


class MultiScaleMap(nn.Module):
    """Features of a map at three resolutions, stacked at full resolution: ``(N, C, S, S) -> (N, out, S, S)``.

    ``h1 = act(conv_k(m))`` at S, ``h2 = act(conv_k, stride 2)(h1)`` at S/2, ``h3 = act(conv_k,
    stride 2)(h2)`` at S/4 (the paper's 28/14/7 conditioning blocks), ``h2`` and ``h3`` upsampled
    (bilinear) back to S, concatenated with ``h1`` and mixed by a 1x1 convolution to ``out``
    channels. ``S`` must be a multiple of 4.
    """

    def __init__(self, in_channels: int, channels: int, out_channels: int, kernel_size: int = 5, act: str = "elu"):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        p = kernel_size // 2
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size, padding=p)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, stride=2, padding=p)
        self.conv3 = nn.Conv2d(channels, channels, kernel_size, stride=2, padding=p)
        self.act = activation(act)
        self.mix = nn.Conv2d(3 * channels, out_channels, 1)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        size = tuple(m.shape[-2:])
        h1 = self.act(self.conv1(m))
        h2 = self.act(self.conv2(h1))
        h3 = self.act(self.conv3(h2))
        up = [F.interpolate(h, size=size, mode="bilinear", align_corners=False) for h in (h2, h3)]
        return self.mix(torch.cat([h1, *up], dim=1))


# --------------------------------------------------------------------------- parents
def _is_int(d) -> bool:
    return isinstance(d, numbers.Integral) and not isinstance(d, bool)


def _shape_of(d) -> tuple:
    if _is_int(d):
        return (int(d),)
    if isinstance(d, (tuple, list, torch.Size)) and d and all(_is_int(v) for v in d):
        return tuple(int(v) for v in d)
    raise ValueError(f"a parent dim must be an int (vector) or a shape such as (C, H, W) (map), got {d!r}")


def _flat_dims(parent_dims):
    """``parent_dims`` with every shape replaced by its number of elements (for VHEModule's checks)."""
    if parent_dims is None:
        return None
    if isinstance(parent_dims, Mapping):
        return {k: math.prod(_shape_of(v)) for k, v in parent_dims.items()}
    if _is_int(parent_dims):
        raise ValueError(f"parent_dims must be a mapping or a sequence, got {parent_dims!r}")
    return [math.prod(_shape_of(v)) for v in parent_dims]


class _ShapedParents:
    """Mixin for VHEModule subclasses whose parents are vectors ``(B, d)`` or maps ``(B, C, H, W)``.

    Call :meth:`_init_shapes` right after ``VHEModule.__init__(..., _flat_dims(parent_dims))``.
    """

    def _init_shapes(self, parent_dims) -> None:
        if isinstance(parent_dims, Mapping):
            raw = {p: parent_dims[p] for p in self.vhe_parents}
        else:
            raw = dict(zip(self.vhe_parents, parent_dims or ()))
        shapes = {p: _shape_of(raw[p]) for p in self.vhe_parents}
        for p, s in shapes.items():
            if len(s) not in (1, 3):
                raise ValueError(
                    f"{self._describe()}: parent {p!r} must be a vector (d) or a map (C, H, W), got shape {s}"
                )
        self.parent_shapes: dict = shapes

    @property
    def vector_parents(self) -> tuple:
        """Names of the parents that are vectors ``(B, d)``, in call order."""
        return tuple(p for p, s in self.parent_shapes.items() if len(s) == 1)

    @property
    def map_parents(self) -> tuple:
        """Names of the parents that are maps ``(B, C, H, W)``, in call order."""
        return tuple(p for p, s in self.parent_shapes.items() if len(s) == 3)

    def _expected_parents(self) -> str:
        if not self.vhe_parents:
            return "no parents"
        return ", ".join(f"{p}: (B, {', '.join(map(str, s))})" for p, s in self.parent_shapes.items())

    def _check_parents(self, parents: Sequence, batch_size: Optional[int] = None) -> list:
        """Validate the positional parents: each ``(B, *parent_shapes[name])`` with a common B."""
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
            shape = self.parent_shapes[name]
            b = batch_size if batch_size is not None else (p.shape[0] if p.dim() > 0 else None)
            if p.dim() != 1 + len(shape) or tuple(p.shape[1:]) != shape or (b is not None and p.shape[0] != b):
                exp_b = batch_size if batch_size is not None else "B"
                raise ValueError(
                    f"{self._describe()}: parent {name!r} must have shape "
                    f"({exp_b}, {', '.join(map(str, shape))}), got {tuple(p.shape)} "
                    f"(expected {self._expected_parents()})"
                )
            if batch_size is None:
                batch_size = p.shape[0]
        return parents

    def _split_parents(self, parents: Sequence[torch.Tensor]):
        """(map parents list, concatenated vector parents (B, sum d) or None), in call order."""
        maps = [p for n, p in zip(self.vhe_parents, parents) if len(self.parent_shapes[n]) == 3]
        vecs = [p for n, p in zip(self.vhe_parents, parents) if len(self.parent_shapes[n]) == 1]
        return maps, (torch.cat(vecs, dim=-1) if len(vecs) > 1 else vecs[0] if vecs else None)

    def _vector_dim(self) -> int:
        return sum(s[0] for s in self.parent_shapes.values() if len(s) == 1)

    def _map_channels(self, size: Optional[tuple] = None) -> int:
        """Total channels of the map parents (each must be ``size`` = (H, W) when given)."""
        total = 0
        for p in self.map_parents:
            c, h, w = self.parent_shapes[p]
            if size is not None and (h, w) != tuple(size):
                raise ValueError(f"{self._describe()}: map parent {p!r} is {h}x{w}, expected {size[0]}x{size[1]}")
            total += c
        return total


def _check_size4(image_size) -> int:
    image_size = int(image_size)
    if image_size < 4 or image_size % 4:
        raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
    return image_size


def _gaussian(mean: torch.Tensor, log_std: torch.Tensor, logstd_range: tuple) -> torch.distributions.Normal:
    """A float32 (float64 stays) diagonal Normal with the log-std clamped to ``logstd_range``."""
    dtype = torch.float64 if mean.dtype == torch.float64 else torch.float32
    log_std = log_std.to(dtype).clamp(min=logstd_range[0], max=logstd_range[1])
    return torch.distributions.Normal(mean.to(dtype), log_std.exp())


def _sample_or_score(dist: torch.distributions.Normal, value: Optional[torch.Tensor]):
    """(value, log_prob (B,) summed over every non-batch dim): rsample when value is None."""
    if value is None:
        value = dist.rsample()
    return value, dist.log_prob(value.to(dist.loc.dtype)).flatten(1).sum(dim=1)


class _MapFromVector(nn.Module):
    """Vector ``(N, d)`` -> map ``(N, out, S, S)``: Linear to (channels, S/4, S/4), act, two stride-2
    ConvTranspose2d (4x4), act, 3x3 conv (as :class:`vhe.nets.DeconvDecoder`'s upsampling)."""

    def __init__(self, in_dim: int, channels: int, out_channels: int, image_size: int, act: str = "elu"):
        super().__init__()
        self.s = _check_size4(image_size) // 4
        self.channels = channels
        self.fc = nn.Sequential(nn.Linear(in_dim, channels * self.s * self.s), activation(act))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1),
            activation(act),
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1),
            activation(act),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.up(self.fc(v).view(-1, self.channels, self.s, self.s))


def _check_images(module, inputs, in_channels, image_size, single: bool = False) -> torch.Tensor:
    shape = (in_channels, image_size, image_size)
    if not torch.is_tensor(inputs) or inputs.dim() != 5 or tuple(inputs.shape[2:]) != shape or inputs.shape[1] < 1:
        got = tuple(inputs.shape) if torch.is_tensor(inputs) else type(inputs).__name__
        raise ValueError(
            f"{module._describe()}: inputs must have shape (B, k>=1, {', '.join(map(str, shape))}), got {got}"
        )
    if single and inputs.shape[1] != 1:
        raise ValueError(
            f"{module._describe()}: per-image encoder needs inputs of shape (B, 1, "
            f"{', '.join(map(str, shape))}), got {tuple(inputs.shape)}"
        )
    return inputs


# --------------------------------------------------------------------------- encoders
class SpatialSetEncoder(_ShapedParents, VHEModule):
    """q(variable | D, parents): a diagonal Gaussian over a map ``(channels, S, S)`` from a support set.

    Every image of ``inputs`` ``(B, k, C_in, S, S)`` is aligned by its own
    :class:`SpatialTransformer` pass (identity at initialisation; ``align=False`` skips it), then a
    ``kernel_size`` conv (``feature_channels``) + ReLU; the embeddings are averaged over the set
    (order invariant, any k >= 1). Vector parents (e.g. the alphabet latent a) are turned into a
    map (Linear to ``(parent_channels, S/4, S/4)``, two stride-2 ConvTranspose2d, 3x3 conv) and added
    to the average. Two ``kernel_size``
    convs give the mean and the scale ``softplus(.) + min_scale`` of the Gaussian.

    forward(inputs, *parents, <variable>=None) -> (value (B, channels, S, S), log_prob (B,) nats)
    """

    is_encoder = True

    def __init__(
        self,
        variable: str = "c",
        channels: int = 10,
        parents: Sequence[str] = (),
        parent_dims=None,
        in_channels: int = 1,
        image_size: int = 28,
        feature_channels: Optional[int] = None,
        stn_channels: int = 8,
        stn_hidden: int = 32,
        kernel_size: int = 5,
        align: bool = True,
        min_scale: float = 1e-3,
        parent_channels: int = 32,
        act: str = "elu",
    ):
        super().__init__(variable, parents, _flat_dims(parent_dims))
        self._init_shapes(parent_dims)
        if self.map_parents:
            raise ValueError(
                f"{self._describe()}: map parents are not supported (got {self.map_parents}); vector parents only"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.channels = int(channels)
        self.in_channels = int(in_channels)
        self.image_size = _check_size4(image_size)
        self.latent_shape = (self.channels, self.image_size, self.image_size)
        self.min_scale = float(min_scale)
        feature_channels = self.channels if feature_channels is None else int(feature_channels)
        p = kernel_size // 2
        self.stn = SpatialTransformer(in_channels, stn_channels, image_size, stn_hidden) if align else None
        self.embed = nn.Sequential(nn.Conv2d(in_channels, feature_channels, kernel_size, padding=p), nn.ReLU())
        self.parent_map = (
            _MapFromVector(self._vector_dim(), parent_channels, feature_channels, image_size, act)
            if self.vector_parents
            else None
        )
        self.mean_head = nn.Conv2d(feature_channels, self.channels, kernel_size, padding=p)
        self.scale_head = nn.Conv2d(feature_channels, self.channels, kernel_size, padding=p)

    def _check_inputs(self, inputs):
        return _check_images(self, inputs, self.in_channels, self.image_size)

    def aligned(self, inputs: torch.Tensor) -> torch.Tensor:
        """The support images after the spatial transformer, ``(B, k, C_in, S, S)`` (for plotting)."""
        inputs = self._check_inputs(inputs)
        b, k = inputs.shape[:2]
        x = inputs.reshape(b * k, *inputs.shape[2:]).to(self.mean_head.weight.dtype)
        return (self.stn(x) if self.stn is not None else x).view(b, k, *inputs.shape[2:])

    def distribution(self, inputs: torch.Tensor, *parents: torch.Tensor) -> torch.distributions.Normal:
        """The posterior as a ``torch.distributions.Normal`` with batch shape ``(B, channels, S, S)``."""
        inputs = self._check_inputs(inputs)
        b, k = inputs.shape[:2]
        parents = self._check_parents(parents, b)
        x = self.aligned(inputs).reshape(b * k, *inputs.shape[2:])
        h = self.embed(x)
        h = h.view(b, k, *h.shape[1:]).mean(dim=1)
        if self.parent_map is not None:
            h = h + self.parent_map(self._split_parents(parents)[1])
        mean = self.mean_head(h)
        scale = F.softplus(self.scale_head(h).float()) + self.min_scale
        dtype = torch.float64 if mean.dtype == torch.float64 else torch.float32
        return torch.distributions.Normal(mean.to(dtype), scale.to(dtype))

    def forward(self, inputs: torch.Tensor, *parents: torch.Tensor, **value):
        """inputs (B, k, C_in, S, S), parents -> (value (B, channels, S, S), log_prob (B,) nats)."""
        v = self._pop_value(value)
        dist = self.distribution(inputs, *parents)
        if v is not None:
            self._check_value(v, (inputs.shape[0], *self.latent_shape))
        return _sample_or_score(dist, v)


class SpatialImageEncoder(_ShapedParents, VHEModule):
    """q(variable | x, parents): a diagonal Gaussian over a vector from one image and (map) parents.

    The image ``(B, 1, C_in, S, S)`` and every map parent (``(B, C, S, S)``, e.g. the class
    template c) are stacked as channels and go through :class:`vhe.nets.ConvFeatures`
    (``n_conv_layers`` 3x3 convs, ``channels`` wide, two of stride 2, Linear to ``hidden``);
    vector parents are concatenated to those features; an MLP gives the mean and log-std (clamped
    to ``logstd_range``) of ``latent_dim`` dims.

    forward(inputs, *parents, <variable>=None) -> (value (B, latent_dim), log_prob (B,) nats)
    """

    is_encoder = True

    def __init__(
        self,
        variable: str = "z",
        latent_dim: int = 16,
        parents: Sequence[str] = ("c",),
        parent_dims=None,
        in_channels: int = 1,
        image_size: int = 28,
        channels: int = 32,
        n_conv_layers: int = 4,
        hidden: int = 128,
        n_hidden_layers: int = 1,
        logstd_range: tuple = (-7.0, 2.0),
        act: str = "elu",
    ):
        super().__init__(variable, parents, _flat_dims(parent_dims))
        self._init_shapes(parent_dims)
        self.latent_dim = int(latent_dim)
        self.latent_shape = (self.latent_dim,)
        self.in_channels = int(in_channels)
        self.image_size = _check_size4(image_size)
        self.logstd_range = (float(logstd_range[0]), float(logstd_range[1]))
        map_ch = self._map_channels((self.image_size, self.image_size))
        self.features = ConvFeatures(self.in_channels + map_ch, channels, n_conv_layers, hidden, image_size, act=act)
        self.mlp = make_mlp(hidden + self._vector_dim(), hidden, 2 * self.latent_dim, n_hidden_layers, act)

    def distribution(self, inputs: torch.Tensor, *parents: torch.Tensor) -> torch.distributions.Normal:
        """The posterior as a ``torch.distributions.Normal`` with batch shape ``(B, latent_dim)``."""
        inputs = _check_images(self, inputs, self.in_channels, self.image_size, single=True)
        parents = self._check_parents(parents, inputs.shape[0])
        maps, vec = self._split_parents(parents)
        dtype = self.mlp[-1].weight.dtype
        x = torch.cat([inputs[:, 0].to(dtype), *[m.to(dtype) for m in maps]], dim=1)
        h = self.features(x)
        if vec is not None:
            h = torch.cat([h, vec.to(h.dtype)], dim=-1)
        mean, log_std = self.mlp(h).chunk(2, dim=-1)
        return _gaussian(mean, log_std, self.logstd_range)

    def forward(self, inputs: torch.Tensor, *parents: torch.Tensor, **value):
        """inputs (B, 1, C_in, S, S), parents -> (value (B, latent_dim), log_prob (B,) nats)."""
        v = self._pop_value(value)
        dist = self.distribution(inputs, *parents)
        if v is not None:
            self._check_value(v, (inputs.shape[0], self.latent_dim))
        return _sample_or_score(dist, v)


# --------------------------------------------------------------------------- decoders
class _WarpedMap:
    """Mixin of the decoders: exactly one map parent, warped by the vector parents (if any)."""

    def _init_warp(self, image_size: int, warp_hidden: int) -> int:
        if len(self.map_parents) != 1:
            raise ValueError(
                f"{self._describe()}: needs exactly one map parent (C, S, S), got "
                f"{ {p: self.parent_shapes[p] for p in self.vhe_parents} }"
            )
        map_ch = self._map_channels((image_size, image_size))
        self.warper = AffineWarp(self._vector_dim(), warp_hidden) if self.vector_parents else None
        return map_ch

    def warped(self, *parents: torch.Tensor) -> torch.Tensor:
        """The map parent warped by the affine matrix of the vector parents -> (B, C, S, S)."""
        parents = self._check_parents(parents)
        (m,), vec = self._split_parents(parents)
        return m if self.warper is None else self.warper(m, vec)


class SpatialConvDecoder(_WarpedMap, _ShapedParents, VHEModule):
    """Bernoulli p(x | map, vectors) with conditionally independent pixels (the cheap spatial decoder).

    The map parent (``(B, C, S, S)``, the template c) is warped by :class:`AffineWarp` of the
    concatenated vector parents (z; identity at initialisation; no warp without vector parents),
    then :class:`MultiScaleMap` (``channels`` wide, 5x5, scales S, S/2, S/4) - act - 3x3 conv -
    act - 1x1 conv -> per-pixel logits.

    forward(*parents, x=None) -> (x (B, C_out, S, S), log_prob (B,) nats per image)
    """

    def __init__(
        self,
        variable: str = "x",
        parents: Sequence[str] = ("c", "z"),
        parent_dims=None,
        out_channels: int = 1,
        image_size: int = 28,
        channels: int = 64,
        warp_hidden: int = 32,
        act: str = "elu",
    ):
        super().__init__(variable, parents, _flat_dims(parent_dims))
        self._init_shapes(parent_dims)
        self.out_channels = int(out_channels)
        self.image_size = _check_size4(image_size)
        map_ch = self._init_warp(self.image_size, warp_hidden)
        self.features = MultiScaleMap(map_ch, channels, channels, act=act)
        self.head = nn.Sequential(
            activation(act),
            nn.Conv2d(channels, channels, 3, padding=1),
            activation(act),
            nn.Conv2d(channels, self.out_channels, 1),
        )

    def logits(self, *parents: torch.Tensor) -> torch.Tensor:
        """Parents -> Bernoulli logits (B, C_out, S, S)."""
        return self.head(self.features(self.warped(*parents)))

    def probs(self, *parents: torch.Tensor) -> torch.Tensor:
        """Parents -> pixel probabilities (B, C_out, S, S) (for plotting)."""
        return torch.sigmoid(self.logits(*parents))

    def forward(self, *parents: torch.Tensor, **value):
        x = self._pop_value(value)
        logits = self.logits(*parents).float()
        if x is None:
            x = torch.bernoulli(torch.sigmoid(logits.detach()))
        else:
            self._check_value(x, tuple(logits.shape))
        return x, bernoulli_log_prob(logits, x.to(logits.dtype))


class SpatialPixelCNNDecoder(_WarpedMap, _ShapedParents, PixelCNNDecoder):
    """Bernoulli p(x | map, vectors) with a gated PixelCNN conditioned on the warped map.

    The map parent (the template c, ``(B, C, S, S)``) is warped by :class:`AffineWarp` of the
    vector parents (z) and turned into a ``cond_channels`` conditioning map by
    :class:`MultiScaleMap` (``channels`` wide: features at S, S/2 and S/4 stacked at S); every
    layer of a :class:`vhe.nets.PixelCNNDecoder` stack (``n_layers`` gated layers, the first
    mask A) adds it to its gates through 1x1 convolutions. The conditioning never sees x, so pixel
    (i, j)'s logit depends on x only through the pixels before it in raster order.
    Teacher-forced :meth:`logits`, sampling and scoring are :class:`vhe.nets.PixelCNNDecoder`'s.

    forward(*parents, x=None) -> (x (B, C_out, S, S), log_prob (B,) nats per image)
    """

    def __init__(
        self,
        variable: str = "x",
        parents: Sequence[str] = ("c", "z"),
        parent_dims=None,
        out_channels: int = 1,
        image_size: int = 28,
        n_layers: int = 6,
        channels: int = 32,
        kernel_size: int = 5,
        cond_channels: int = 16,
        first_kernel_size: Optional[int] = None,
        out_hidden: Optional[int] = None,
        warp_hidden: int = 32,
        act: str = "elu",
    ):
        if isinstance(parents, str):
            parents = (parents,)
        # The vector conditioning network PixelCNNDecoder builds from its parents is replaced below
        # (dummy dims keep it tiny); the gated layers are built with cond_channels as usual.
        super().__init__(
            variable,
            tuple(parents),
            {p: 1 for p in parents},
            out_channels,
            image_size,
            n_layers,
            channels,
            kernel_size,
            cond_channels,
            first_kernel_size,
            out_hidden,
        )
        del self.cond_fc, self.cond_up
        self.parent_dims = _normalise_parent_dims(self.vhe_parents, _flat_dims(parent_dims))
        self._init_shapes(parent_dims)
        map_ch = self._init_warp(self.image_size, warp_hidden)
        self.cond_net = MultiScaleMap(map_ch, channels, cond_channels, act=act)

    def conditioning(self, *parents: torch.Tensor) -> torch.Tensor:
        """Parents -> conditioning map (B, cond_channels, S, S) from the warped map parent."""
        return self.cond_net(self.warped(*parents))

    def forward(self, *parents: torch.Tensor, batch_size: Optional[int] = None, **value):
        """parents -> (x (B, C_out, S, S), log_prob (B,) nats per image), the log-prob in float32."""
        x = self._pop_value(value)
        parents = self._check_parents(parents, batch_size)
        if x is None:
            x = self.sample(*parents)
        else:
            self._check_x(x, parents[0].shape[0])
        logits = self._logits_from(x.to(next(self.parameters()).dtype), self.conditioning(*parents)).float()
        return x, bernoulli_log_prob(logits, x.to(logits.dtype))


# --------------------------------------------------------------------------- priors
class SpatialGaussianPrior(_ShapedParents, VHEModule):
    """p(variable | parents): a diagonal Gaussian over a map ``shape = (C, H, W)``.

    Without parents the mean and log-scale are free parameters of that shape (one per position and
    channel), initialised to N(0, I). With vector parents (e.g. p(c | a) in the hierarchical model)
    an upsampling net (Linear to ``(channels, H/4, W/4)``, two stride-2 ConvTranspose2d, 3x3 conv;
    last layer zero-initialised) maps them to mean and log-scale offsets added to those free
    parameters. Log-scales are clamped to ``logstd_range``.

    forward(*parents, <variable>=None, batch_size=None) -> (value (B, C, H, W), log_prob (B,) nats)
    """

    def __init__(
        self,
        variable: str = "c",
        shape: Sequence[int] = (10, 28, 28),
        parents: Sequence[str] = (),
        parent_dims=None,
        channels: int = 32,
        logstd_range: tuple = (-7.0, 2.0),
        act: str = "elu",
    ):
        super().__init__(variable, parents, _flat_dims(parent_dims))
        self._init_shapes(parent_dims)
        shape = _shape_of(tuple(shape))
        if len(shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {shape}")
        if self.map_parents:
            raise ValueError(f"{self._describe()}: map parents are not supported (got {self.map_parents})")
        self.latent_shape = shape
        self.logstd_range = (float(logstd_range[0]), float(logstd_range[1]))
        self.loc = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))
        if self.vector_parents:
            c, h, w = shape
            if h != w:
                raise ValueError(f"a conditional SpatialGaussianPrior needs a square map, got {shape}")
            self.parent_net = _MapFromVector(self._vector_dim(), channels, 2 * c, h, act)
            with torch.no_grad():
                self.parent_net.up[-1].weight.zero_()
                self.parent_net.up[-1].bias.zero_()
        else:
            self.parent_net = None

    def distribution(self, *parents: torch.Tensor, batch_size: Optional[int] = None) -> torch.distributions.Normal:
        """The prior as a ``torch.distributions.Normal`` with batch shape ``(B, C, H, W)``."""
        parents = self._check_parents(parents, batch_size)
        if self.parent_net is not None:
            out = self.parent_net(self._split_parents(parents)[1])
            d_loc, d_ls = out.chunk(2, dim=1)
            return _gaussian(self.loc + d_loc, self.log_scale + d_ls, self.logstd_range)
        if batch_size is None:
            raise ValueError(f"{self._describe()} has no parents: pass batch_size or a value")
        shape = (batch_size, *self.latent_shape)
        return _gaussian(self.loc.expand(shape), self.log_scale.expand(shape), self.logstd_range)

    def forward(self, *parents: torch.Tensor, batch_size: Optional[int] = None, **value):
        """parents -> (value (B, C, H, W), log_prob (B,) nats)."""
        v = self._pop_value(value)
        if v is not None:
            b = v.shape[0] if torch.is_tensor(v) and v.dim() > 0 else None
            self._check_value(v, (b, *self.latent_shape))
            batch_size = b
        elif parents and batch_size is None:
            batch_size = parents[0].shape[0] if torch.is_tensor(parents[0]) and parents[0].dim() > 0 else None
        return _sample_or_score(self.distribution(*parents, batch_size=batch_size), v)


class SpatialPixelCNNPrior(_ShapedParents, VHEModule):
    """p(variable | parents): an autoregressive Gaussian over a map ``shape = (C, H, W)``.

    ``p(c) = prod_{i,j} prod_k N(c[k, i, j] | mu_k(c_{<(i,j)}), sigma_k(c_{<(i,j)}))``, positions in
    raster order, the C channels of one position independent given the positions before it. The
    means and log-std (clamped to ``logstd_range``) come from a gated PixelCNN (``n_layers``
    :class:`vhe.nets.GatedPixelCNNLayer`, ``channels`` wide, the first mask A, so position (i, j)
    never sees itself or later positions) and a 1x1 head to 2C channels whose last layer is
    zero-initialised: at initialisation the prior is exactly N(0, I). Vector parents (p(c | a))
    condition every layer through a map (Linear to ``(cond_channels, H/4, W/4)``, two stride-2
    ConvTranspose2d), as in :class:`vhe.nets.PixelCNNDecoder`.

    Scoring is one teacher-forced pass; sampling (:meth:`sample`, no gradient) is ancestral in
    raster order (the vertical stack once per row, the horizontal stack once per position).

    forward(*parents, <variable>=None, batch_size=None) -> (value (B, C, H, W), log_prob (B,) nats)
    """

    def __init__(
        self,
        variable: str = "c",
        shape: Sequence[int] = (10, 28, 28),
        parents: Sequence[str] = (),
        parent_dims=None,
        n_layers: int = 4,
        channels: int = 16,
        kernel_size: int = 5,
        cond_channels: int = 8,
        logstd_range: tuple = (-7.0, 2.0),
    ):
        super().__init__(variable, parents, _flat_dims(parent_dims))
        self._init_shapes(parent_dims)
        shape = _shape_of(tuple(shape))
        if len(shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {shape}")
        if self.map_parents:
            raise ValueError(f"{self._describe()}: map parents are not supported (got {self.map_parents})")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.latent_shape = shape
        self.logstd_range = (float(logstd_range[0]), float(logstd_range[1]))
        c, h, w = shape
        self.cond_channels = int(cond_channels) if self.vector_parents else 0
        if self.vector_parents:
            if h != w or h % 4:
                raise ValueError(
                    f"a conditional SpatialPixelCNNPrior needs a square map with a size that is a "
                    f"multiple of 4, got {shape}"
                )
            self._s = h // 4
            self.cond_fc = nn.Linear(self._vector_dim(), self.cond_channels * self._s * self._s)
            self.cond_up = nn.Sequential(
                nn.ELU(),
                nn.ConvTranspose2d(self.cond_channels, self.cond_channels, 4, stride=2, padding=1),
                nn.ELU(),
                nn.ConvTranspose2d(self.cond_channels, self.cond_channels, 4, stride=2, padding=1),
            )
        layers = [GatedPixelCNNLayer(c, channels, kernel_size, True, self.cond_channels)]
        layers += [
            GatedPixelCNNLayer(channels, channels, kernel_size, False, self.cond_channels) for _ in range(n_layers - 1)
        ]
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, 2 * c, 1))
        with torch.no_grad():
            self.head[-1].weight.zero_()
            self.head[-1].bias.zero_()

    @property
    def reach(self) -> int:
        """How many rows above row i the parameters of row i can depend on."""
        return 1 + sum(layer.half for layer in self.layers)

    def conditioning(self, *parents: torch.Tensor) -> Optional[torch.Tensor]:
        """Vector parents -> conditioning map (B, cond_channels, H, W), or None without parents."""
        if not self.vector_parents:
            return None
        vec = self._split_parents(parents)[1]
        return self.cond_up(self.cond_fc(vec).view(-1, self.cond_channels, self._s, self._s))

    def _params_from(self, c: torch.Tensor, cond: Optional[torch.Tensor]):
        v = h = c
        for layer in self.layers:
            v, h = layer(v, h, cond)
        mean, log_std = self.head(h).chunk(2, dim=1)
        return mean, log_std

    def params(self, c: torch.Tensor, *parents: torch.Tensor):
        """Teacher-forced (mean, log_std), each (B, C, H, W), unclamped: position (i, j) depends on
        c only through the positions before (i, j) in raster order."""
        b = c.shape[0] if torch.is_tensor(c) and c.dim() > 0 else None
        parents = self._check_parents(parents, b)
        self._check_value(c, (b, *self.latent_shape))
        return self._params_from(c.to(self.head[-1].weight.dtype), self.conditioning(*parents))

    def distribution(self, c: torch.Tensor, *parents: torch.Tensor) -> torch.distributions.Normal:
        """The conditionals of every position given the positions of ``c`` before it, as one Normal
        with batch shape (B, C, H, W) (its log_prob at ``c`` sums to log p(c))."""
        mean, log_std = self.params(c, *parents)
        return _gaussian(mean, log_std, self.logstd_range)

    @torch.no_grad()
    def sample(self, *parents: torch.Tensor, batch_size: Optional[int] = None) -> torch.Tensor:
        """Ancestral sample in raster order -> c (B, C, H, W) (no gradient)."""
        parents = self._check_parents(parents, batch_size)
        b = parents[0].shape[0] if parents else batch_size
        if b is None:
            raise ValueError(f"{self._describe()} has no parents: pass batch_size to sample")
        p0 = self.head[-1].weight
        C, H, W = self.latent_shape
        c = torch.zeros(b, C, H, W, device=p0.device, dtype=p0.dtype)
        cond = self.conditioning(*parents)
        for i in range(H):
            a = max(0, i - self.reach)
            v = c[:, :, a : i + 1]
            cv = cond[:, :, a : i + 1] if cond is not None else None
            links = []
            for layer in self.layers:
                v, link = layer.vertical(v, cv)
                links.append(link[:, :, -1:])
            cond_row = cond[:, :, i : i + 1] if cond is not None else None
            for j in range(W):
                h = c[:, :, i : i + 1]
                for layer, link in zip(self.layers, links):
                    h = layer.horizontal(h, link, cond_row)
                mean, log_std = self.head(h)[:, :, 0, j].chunk(2, dim=1)
                log_std = log_std.clamp(min=self.logstd_range[0], max=self.logstd_range[1])
                c[:, :, i, j] = mean + log_std.exp() * torch.randn_like(mean)
        return c

    def forward(self, *parents: torch.Tensor, batch_size: Optional[int] = None, **value):
        """parents -> (value (B, C, H, W), log_prob (B,) nats)."""
        v = self._pop_value(value)
        if v is None:
            parents_checked = self._check_parents(parents, batch_size)
            v = self.sample(*parents_checked, batch_size=batch_size)
        dist = self.distribution(v, *parents)
        return v, dist.log_prob(v.to(dist.loc.dtype)).flatten(1).sum(dim=1)
