"""Shared pieces of the structured models' evaluation (:mod:`analysis.hierarchical`,
:mod:`analysis.factorial`): loading a checkpoint, ancestral sampling, episode bounds, grid drawing
helpers and the image classifiers (texture and shape features, logistic regression, nearest
neighbour) used to score generated images."""

from __future__ import annotations

import logging
import math


import numpy as np
import torch
import torch.nn.functional as F


from .stats import mean_se, too_few_units

log = logging.getLogger(__name__)


#: the experiments analysis.structured evaluates (the others: analysis.evaluate)
STRUCTURED_EXPERIMENTS = ("hierarchical", "factorial")


# ============================================================================ plumbing
def figure_prefix(cfg) -> str:
    """Figure names carry the experiment name, or the model name when it differs (pipeline.outputs)."""
    m = cfg["model"]
    return m["experiment"] if m.get("name", m["experiment"]) == m["experiment"] else m["name"]


def load_model(cfg, checkpoint, device):
    """The VHE of ``cfg["model"]`` (``experiments.registry.build_model``: laid out as
    ``cfg["memory_format"]`` says) with the weights of a trainer checkpoint -> (model, ckpt)."""
    from experiments.checkpoints import load_weights
    from experiments.registry import build_model

    model = build_model(cfg, device)
    ckpt = load_weights(model, checkpoint, device)
    return model, ckpt


# ============================================================================ sampling and scoring
@torch.no_grad()
def ancestral(model, batch_size: int, values: dict | None = None, inputs: dict | None = None):
    """Sample from the model (``VHE.sample``): latents in ``values`` are fixed, those in ``inputs``
    come from their encoders, the rest from their priors. Returns (x (B, ...), {latent: value}),
    where x is the decoder's mean (pixel probabilities) when it has ``probs`` (deconvolutional
    decoders: independent pixels, whose binary samples look like speckle), else a sample."""
    x, lat = model.sample(inputs=inputs, values=values, batch_size=batch_size, return_latents=True)
    if hasattr(model.decoder, "probs"):
        x = model.decoder.probs(*[lat[p] for p in model.parents(model.observed)])
    return x, lat


@torch.no_grad()
def episode_scores(model, loader, targets: torch.Tensor, rescale: bool, batch_size: int = 64, seed: int = 0):
    """The training objective (kl_factor 1) for episodes with the given targets, per target.

    Returns (bounds (n,) float64 numpy, {latent: KL(q || p) of every target's draw (n,) float64 numpy,
    unweighted nats}).
    """
    model.eval()
    gen_state = loader.generator.get_state()
    loader.generator.manual_seed(int(seed))
    bounds, kls = [], {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for i in range(0, len(targets), batch_size):
            b = loader.episode(targets[i : i + batch_size])
            bound, kl = model.score(
                b.inputs, b.sizes, x=b.target, kl_factor=1.0, rescale=rescale, return_kl=True, reduction="none"
            )
            bounds.append(bound.double().cpu())
            for k, v in kl.items():
                kls.setdefault(k, []).append(v.double().cpu().expand(len(bound)))
    loader.generator.set_state(gen_state)
    return torch.cat(bounds).numpy(), {k: torch.cat(v).numpy() for k, v in kls.items()}


@torch.no_grad()
def episode_bounds(model, loader, targets: torch.Tensor, rescale: bool, batch_size: int = 64, seed: int = 0):
    """The training objective (kl_factor 1) for episodes with the given targets.

    Returns (per-target bounds (n,) float64 numpy, {latent: mean KL nats}).
    """
    bounds, kls = episode_scores(model, loader, targets, rescale, batch_size, seed)
    return bounds, {k: float(v.sum()) / len(targets) for k, v in kls.items()}


def bootstrap_interval(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of the mean of per-unit ``values`` (units resampled with
    replacement ``n_boot`` times, numpy generator seeded by ``seed``); None from fewer than 2 units
    (the analysis.stats rule)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if too_few_units(v.size):
        return None
    rng = np.random.default_rng(int(seed))
    means = v[rng.integers(0, v.size, size=(int(n_boot), v.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def _mean_se(a) -> tuple[float | None, float | None]:
    """Mean and standard error over units (:func:`analysis.stats.mean_se`: the SE is None from fewer
    than 2 units; :func:`se_reasons` then records why)."""
    return mean_se(a)


def se_reasons(d: dict) -> dict:
    """Add ``<key>_reason`` next to every null standard error ``<name>_se`` of ``d`` (nested dicts
    too) whose value (``<name>`` or ``<name>_per_image``) was measured: the analysis.stats rule, an
    interval from fewer than 2 units is undefined (an SE is None only then). Returns ``d``."""
    for key, v in list(d.items()):
        if isinstance(v, dict):
            se_reasons(v)
        elif key.endswith("_se") and v is None:
            name = key[:-3]
            measured = d.get(name, d.get(f"{name}_per_image"))
            if measured is not None:
                d[f"{key}_reason"] = too_few_units(1)
    return d


# ============================================================================ drawing helpers
def _offsets(n: int, size: int, pad: int, gaps) -> list[int]:
    """Start of each of n cells along one axis; a gap index adds a band before that cell."""
    extra = 3 * pad + 2
    out, y = [], pad
    for i in range(n):
        if i in gaps:
            y += extra
        out.append(y)
        y += size + pad
    return out


def _tile(rows, pad: int = 1, gap_rows=(), gap_cols=(), fill=0.6) -> np.ndarray:
    """rows: list of lists of images ((1, H, W) tensors in [0, 1], ink = 1) or None (blank).

    Returns a float (H', W') array, ink black on white, grey padding; ``gap_rows`` /
    ``gap_cols`` (indices) get an extra band of padding before them.
    """
    h, w = next(im.shape[-2:] for r in rows for im in r if im is not None)
    n_cols = max(len(r) for r in rows)
    ys = _offsets(len(rows), h, pad, set(gap_rows))
    xs = _offsets(n_cols, w, pad, set(gap_cols))
    out = np.full((ys[-1] + h + pad, xs[-1] + w + pad), fill, dtype=np.float32)
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            y, x = ys[i], xs[j]
            if im is None:
                out[y : y + h, x : x + w] = 1.0
            else:
                out[y : y + h, x : x + w] = 1.0 - im.detach().float().cpu().reshape(h, w).clamp(0, 1).numpy()
    return out


def _centres(n: int, size: int = 28, pad: int = 1, gaps=()) -> list[float]:
    """Pixel centres of the cells of ``_tile`` along one axis (for tick labels)."""
    return [o + size / 2 - 0.5 for o in _offsets(n, size, pad, set(gaps))]


def _short(name: str, n: int = 28) -> str:
    name = name.replace("_", " ")
    return name if len(name) <= n else name[: n - 1] + "…"


# ============================================================================ factorial: classifiers
def texture_features(x: torch.Tensor) -> torch.Tensor:
    """Translation-invariant texture features: log Fourier magnitude of the image, DC removed,
    each image's spectrum normalised to unit norm. x (N, 1, H, W) -> (N, H*W)."""
    x = x.float().reshape(x.shape[0], *x.shape[-2:])
    mag = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)).abs()
    mag = mag / mag.flatten(1).norm(dim=1).clamp(min=1e-6)[:, None, None]
    return torch.log1p(50.0 * mag).flatten(1)


def _gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def shape_features(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Texture-blind silhouette features: the image blurred (Gaussian, ``sigma`` px), centred and
    L2-normalised. x (N, 1, H, W) -> (N, H*W)."""
    x = x.float().reshape(x.shape[0], 1, *x.shape[-2:])
    r = int(math.ceil(3 * sigma))
    k = _gaussian_kernel(sigma, r).to(x.device)
    y = F.conv2d(F.pad(x, (r, r, 0, 0)), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r)), k.view(1, 1, -1, 1))
    y = y.flatten(1)
    y = y - y.mean(dim=1, keepdim=True)
    return y / y.norm(dim=1, keepdim=True).clamp(min=1e-6)


def fit_logistic(X: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float = 1e-3, steps: int = 200):
    """Multinomial logistic regression (standardised features, L2, LBFGS) -> predict(X) -> labels."""
    X = X.double()
    mu, sd = X.mean(0), X.std(0).clamp(min=1e-6)
    Z = (X - mu) / sd
    W = torch.zeros(Z.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    yt = y.long()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(Z @ W + b, yt) + l2 * W.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    W, b = W.detach(), b.detach()

    def predict(Xn: torch.Tensor) -> torch.Tensor:
        return (((Xn.double() - mu) / sd) @ W + b).argmax(dim=1)

    return predict


def _nearest(query: torch.Tensor, ref: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    sim = query @ ref.T
    if exclude_self:
        sim.fill_diagonal_(-float("inf"))
    return sim.argmax(dim=1)
