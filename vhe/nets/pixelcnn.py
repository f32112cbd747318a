"""Conditional gated PixelCNN decoder (van den Oord et al., 2016).

Binary images ``(B, C, S, S)`` are modelled autoregressively in raster order:
``p(x | parents) = prod_{i,j} Bernoulli(x[:, :, i, j] | x_{<(i,j)}, parents)``
(the C channels of one pixel are conditionally independent given the past).

Causality without a blind spot uses the vertical/horizontal two-stack design
with shifted convolutions instead of masks:

* vertical stack: a ``(k//2 + 1, k)`` convolution padded so that output row
  ``i`` sees input rows ``i - k//2 .. i`` (all within ``±k//2`` columns);
  its features are shifted down by one row before they feed the horizontal
  stack, so the horizontal stack only receives rows strictly above;
* horizontal stack: a ``(1, k//2 + 1)`` convolution padded on the left so that
  column ``j`` sees columns ``j - k//2 .. j`` (layers > 1, "mask B"); the first
  layer additionally shifts its input right by one so it sees only
  ``j - k//2 - 1 .. j - 1`` ("mask A", excludes the current pixel) and has no
  residual connection.

Every layer applies gated activations ``tanh(a) * sigmoid(b)`` and adds a
conditioning term: a spatial map derived from the parent latents (Linear ->
``(cond_channels, S/4, S/4)`` -> two stride-2 ConvTranspose2d -> ``S x S``),
projected to the gates by 1x1 convolutions.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import ParentDims, VHEModule, bernoulli_log_prob

__all__ = ["PixelCNNDecoder", "GatedPixelCNNLayer"]


def _gate(a: torch.Tensor) -> torch.Tensor:
    t, s = a.chunk(2, dim=1)
    return torch.tanh(t) * torch.sigmoid(s)


class GatedPixelCNNLayer(nn.Module):
    """One gated layer: (v, h, cond) -> (v', h'), all ``(B, ch, H, W)``.

    ``first=True`` gives the "mask A" layer (horizontal stack excludes the
    current pixel, no residual); otherwise "mask B" with a residual on the
    horizontal stack. ``cond`` is ``(B, cond_channels, H, W)`` or None.
    Works on any height H (rows below are never looked at), which sampling uses.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, first: bool, cond_channels: int = 0):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.first = first
        self.half = kernel_size // 2
        self.v_conv = nn.Conv2d(in_channels, 2 * channels, (self.half + 1, kernel_size))
        self.h_conv = nn.Conv2d(in_channels, 2 * channels, (1, self.half + 1))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        if cond_channels:
            self.cond_v = nn.Conv2d(cond_channels, 2 * channels, 1, bias=False)
            self.cond_h = nn.Conv2d(cond_channels, 2 * channels, 1, bias=False)
        else:
            self.cond_v = self.cond_h = None

    def vertical(self, v: torch.Tensor, cond: Optional[torch.Tensor] = None):
        """Vertical stack -> (v_out (B, ch, H, W), link (B, 2ch, H, W) to add to the horizontal gates).

        ``v_out`` at row i sees rows i-k..i; ``link`` at row i only rows < i (shifted down).
        """
        k = self.half
        v_pre = self.v_conv(F.pad(v, (k, k, k, 0)))  # row i: rows i-k..i, columns j-k..j+k
        link = self.v_to_h(F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1, :])  # shift down: rows < i only
        if self.cond_v is not None:
            if cond is None:
                raise ValueError("conditional layer called without a conditioning map")
            v_pre = v_pre + self.cond_v(cond)
        return _gate(v_pre), link

    def horizontal(self, h: torch.Tensor, link: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Horizontal stack (one or more full rows) -> h_out (B, ch, H, W)."""
        k = self.half
        if self.first:  # columns j-k-1 .. j-1 (mask A)
            h_in = F.pad(h, (k + 1, 0))[:, :, :, :-1]
        else:  # columns j-k .. j (mask B)
            h_in = F.pad(h, (k, 0))
        h_pre = self.h_conv(h_in) + link
        if self.cond_h is not None:
            if cond is None:
                raise ValueError("conditional layer called without a conditioning map")
            h_pre = h_pre + self.cond_h(cond)
        h_out = self.h_out(_gate(h_pre))
        return h_out if self.first else h_out + h

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: Optional[torch.Tensor] = None):
        v_out, link = self.vertical(v, cond)
        return v_out, self.horizontal(h, link, cond)


class PixelCNNDecoder(VHEModule):
    """Bernoulli p(x | parents) with a conditional gated PixelCNN.

    Args:
        variable, parents, parent_dims: graph declaration (``parents=()`` gives
            an unconditional model; then sampling needs ``batch_size``).
        out_channels: image channels C; image_size: S (multiple of 4).
        n_layers: gated layers (the first is mask A); channels: width per stack.
        kernel_size: odd kernel size of layers 2..n; first_kernel_size: of
            layer 1 (defaults to ``kernel_size``).
        cond_channels: channels of the latent-derived spatial conditioning map.
        out_hidden: width of the 1x1 output head (defaults to ``channels``).
        global_parents: parents that condition every gated layer directly, as a
            position-independent input (van den Oord et al.'s global conditioning:
            each layer adds a learned linear map of them to its gates) instead of
            through the spatial map, which the other parents share; e.g. the
            factorial model's style t, so that a texture reaches every layer.
            Implemented as extra, constant channels of the conditioning map that
            the layers' 1x1 conditioning convolutions read.

    forward(*parents, x=None, batch_size=None) -> (x (B, C, S, S), log_prob (B,) nats per image).
    Sampling is ancestral in raster order under no_grad: per row, the vertical
    stack runs once on the rows above, then the (cheap) horizontal stack runs once
    per pixel on that row; the returned log_prob comes from one more,
    differentiable, full pass.
    """

    def __init__(
        self,
        variable: str = "x",
        parents: Sequence[str] = ("c", "z"),
        parent_dims: ParentDims = None,
        out_channels: int = 1,
        image_size: int = 28,
        n_layers: int = 6,
        channels: int = 32,
        kernel_size: int = 5,
        cond_channels: int = 16,
        first_kernel_size: Optional[int] = None,
        out_hidden: Optional[int] = None,
        global_parents: Sequence[str] = (),
    ):
        super().__init__(variable, parents, parent_dims)
        unknown = [g for g in global_parents if g not in self.vhe_parents]
        if unknown:
            raise ValueError(
                f"global_parents {unknown} are not parents of {self._describe()} ({list(self.vhe_parents)})"
            )
        self.global_parents = tuple(p for p in self.vhe_parents if p in set(global_parents))
        self._is_global = [p in self.global_parents for p in self.vhe_parents]
        global_dim = sum(self.parent_dims[p] for p in self.global_parents)
        map_dim = self.parent_dim_total - global_dim
        image_size = int(image_size)
        if image_size < 4 or image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.out_channels = out_channels
        self.image_size = image_size
        self.n_layers = n_layers
        self.channels = channels
        self.kernel_size = kernel_size
        first_kernel_size = kernel_size if first_kernel_size is None else first_kernel_size
        out_hidden = channels if out_hidden is None else out_hidden
        self.map_channels = cond_channels if map_dim else 0
        self.cond_channels = self.map_channels + global_dim
        if map_dim:
            if cond_channels < 1:
                raise ValueError("a conditional PixelCNN needs cond_channels >= 1")
            s = image_size // 4
            self._s = s
            self.cond_fc = nn.Linear(map_dim, cond_channels * s * s)
            self.cond_up = nn.Sequential(
                nn.ELU(),
                nn.ConvTranspose2d(cond_channels, cond_channels, 4, stride=2, padding=1),
                nn.ELU(),
                nn.ConvTranspose2d(cond_channels, cond_channels, 4, stride=2, padding=1),
            )
        layers = [GatedPixelCNNLayer(out_channels, channels, first_kernel_size, True, self.cond_channels)]
        layers += [
            GatedPixelCNNLayer(channels, channels, kernel_size, False, self.cond_channels) for _ in range(n_layers - 1)
        ]
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, out_hidden, 1), nn.ReLU(), nn.Conv2d(out_hidden, out_channels, 1)
        )

    # ----------------------------------------------------------------- pieces
    def conditioning(self, *parents: torch.Tensor) -> Optional[torch.Tensor]:
        """Parents (B, d_p) -> conditioning map (B, cond_channels, S, S), or None: the spatial map
        of the non-global parents (``map_channels``), then the global parents' values, constant
        over positions."""
        if not self.vhe_parents:
            return None
        parts = []
        local = [p for p, g in zip(parents, self._is_global) if not g]
        if local:
            h = self.cond_fc(self._cat_parents(local)).view(-1, self.map_channels, self._s, self._s)
            parts.append(self.cond_up(h))
        glob = [p for p, g in zip(parents, self._is_global) if g]
        if glob:
            g = self._cat_parents(glob)
            parts.append(g[:, :, None, None].expand(-1, -1, self.image_size, self.image_size))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _logits_from(self, x: torch.Tensor, cond: Optional[torch.Tensor]) -> torch.Tensor:
        """x (B, C, H<=S, S) in {0,1}, cond cropped alike -> logits (B, C, H, S)."""
        inp = 2.0 * x - 1.0  # so zero padding differs from "no ink"
        v = h = inp
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return self.head(h)

    def _check_x(self, x: torch.Tensor, batch_size: Optional[int]) -> torch.Tensor:
        b = batch_size if batch_size is not None else (x.shape[0] if torch.is_tensor(x) and x.dim() > 0 else None)
        return self._check_value(x, (b, self.out_channels, self.image_size, self.image_size))

    def _parent_batch(self, parents) -> Optional[int]:
        return parents[0].shape[0] if parents else None

    def logits(self, x: torch.Tensor, *parents: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: x (B, C, S, S), parents (B, d_p) -> logits (B, C, S, S).

        ``logits[:, :, i, j]`` depends only on pixels strictly before (i, j) in raster order.
        """
        parents = self._check_parents(parents)
        x = self._check_x(x, self._parent_batch(parents))
        return self._logits_from(x, self.conditioning(*parents))

    @torch.no_grad()
    def sample(self, *parents: torch.Tensor, batch_size: Optional[int] = None) -> torch.Tensor:
        """Ancestral sample in raster order -> x (B, C, S, S) in {0, 1} (no gradient)."""
        parents = self._check_parents(parents, batch_size)
        b = self._parent_batch(parents) if parents else batch_size
        if b is None:
            raise ValueError(f"{self._describe()} has no parents: pass batch_size to sample")
        p0 = next(self.parameters())
        s = self.image_size
        x = torch.zeros(b, self.out_channels, s, s, device=p0.device, dtype=p0.dtype)
        cond = self.conditioning(*parents)
        for i in range(s):
            links, cond_row = self._row_context(x, cond, i)
            for j in range(s):
                logit = self._row_logits(x[:, :, i : i + 1], links, cond_row)[:, :, j]
                x[:, :, i, j] = torch.bernoulli(torch.sigmoid(logit))
        return x

    @property
    def reach(self) -> int:
        """How many rows above row i the logits of row i can depend on."""
        return 1 + sum(layer.half for layer in self.layers)

    def _row_context(self, x: torch.Tensor, cond: Optional[torch.Tensor], i: int):
        """What row i's logits need from the rows above: per-layer vertical links (B, 2ch, 1, S).

        Runs the vertical stack on rows ``[i - reach, i]`` only: no convolution looks
        downwards and none looks more than ``reach`` rows up, so this is exact. The
        contents of row i itself are not used (links only see rows < i).
        """
        a = max(0, i - self.reach)
        c = cond[:, :, a : i + 1] if cond is not None else None
        v = 2.0 * x[:, :, a : i + 1] - 1.0
        links = []
        for layer in self.layers:
            v, link = layer.vertical(v, c)
            links.append(link[:, :, -1:])
        return links, (cond[:, :, i : i + 1] if cond is not None else None)

    def _row_logits(self, x_row: torch.Tensor, links: list, cond_row: Optional[torch.Tensor]) -> torch.Tensor:
        """Horizontal stack on one row (B, C, 1, S) given its context -> logits (B, C, S).

        Column j uses only columns < j of ``x_row``, so during sampling it is exact as
        soon as the pixels left of j are filled in.
        """
        h = 2.0 * x_row - 1.0
        for layer, link in zip(self.layers, links):
            h = layer.horizontal(h, link, cond_row)
        return self.head(h)[:, :, 0]

    def forward(self, *parents: torch.Tensor, batch_size: Optional[int] = None, **value):
        """parents (B, d_p) -> (x (B, C, S, S), log_prob (B,) nats per image)."""
        x = self._pop_value(value)
        parents = self._check_parents(parents, batch_size)
        if x is None:
            x = self.sample(*parents, batch_size=batch_size)
        else:
            self._check_x(x, self._parent_batch(parents) if parents else batch_size)
        logits = self._logits_from(x.to(next(self.parameters()).dtype), self.conditioning(*parents))
        return x, bernoulli_log_prob(logits, x.to(logits.dtype))
