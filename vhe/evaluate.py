"""Importance-sampled likelihoods, conditional likelihoods, KL(c) and few-shot classification.

For a class of N elements X = {x_1..x_N} the latents split into *class-level* ones (one
value for the whole class: c, and a for the hierarchical model), inferred from X with their
encoders, and *per-element* ones (z), inferred from each x_i given the class-level values.
With K samples from that proposal,

    log w = sum_class [log p(k | pa) - log q(k | X, pa)]
          + sum_i [log p(x_i | ...) + sum_elem (log p(z_i | pa) - log q(z_i | x_i, pa))]
    log p(X) ≈ logsumexp_K(log w) - log K          (a stochastic lower bound, tight as K → ∞)
    ELBO(X)  = mean_K(log w)                        (the single-sample bound, averaged)

All quantities are in nats per class (divide by N for nats per image).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from .model import VHE

__all__ = ["log_marginal", "log_conditional", "kl_class", "classify", "eval_mode", "EvaluationError"]


class EvaluationError(ValueError):
    """The requested quantity is not defined for this model's graph."""


@contextmanager
def eval_mode(model):
    """Evaluation mode without gradients inside the block; the training flag is restored after."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def _split_latents(model: VHE, per_element):
    elem = [k for k in model.order if k in set(per_element)]
    cls = [k for k in model.order if k not in elem]
    for k in cls:
        bad = model.parents_of[k] & set(elem)
        if bad:
            raise EvaluationError(
                f"class-level latent {k!r} depends on per-element latent(s) {sorted(bad)}: "
                f"log p(X) with one {k!r} per class is not defined for this graph"
            )
    return cls, elem


def _log_weights(model: VHE, X: torch.Tensor, n: int, cls, elem) -> torch.Tensor:
    """log w for n proposal samples of every class of X (B, N, ...) -> (n, B)."""
    B, N = X.shape[:2]
    Xr = X.unsqueeze(0).expand(n, *X.shape).reshape(n * B, *X.shape[1:])
    values, logw = {}, torch.zeros(n * B, device=X.device)
    for k in cls:
        v, log_q = model._enc[k](Xr, parents=values)
        _, log_p = model._pri[k](parents=values, value=v)
        logw = logw + (log_p - log_q).float()
        values[k] = v
    xe = Xr.reshape(n * B * N, 1, *X.shape[2:])
    evalues = {k: v.repeat_interleave(N, dim=0) for k, v in values.items()}
    le = torch.zeros(n * B * N, device=X.device)
    for k in elem:
        v, log_q = model._enc[k](xe, parents=evalues)
        _, log_p = model._pri[k](parents=evalues, value=v)
        le = le + (log_p - log_q).float()
        evalues[k] = v
    _, log_px = model._dec(parents=evalues, value=xe[:, 0])
    le = le + log_px.float()
    return (logw + le.view(n * B, N).sum(dim=1)).view(n, B)


def log_marginal(model: VHE, X: torch.Tensor, n_samples: int = 1000, per_element=("z",),
                 max_elements: int = 8192, return_elbo: bool = False, progress: bool = False):
    """Importance-sampled estimate of log p(X) for each class in a batch.

    Args:
        model: a VHE; latents named in ``per_element`` get one value per element, the rest one
            per class, inferred from the whole class X with their encoders.
        X: (B, N, ...) B classes of N elements each.
        n_samples: K, the number of importance samples.
        max_elements: bound on elements decoded at once (memory); K is processed in chunks.
        return_elbo: also return mean_K log w, the evidence lower bound.
    Returns: (B,) log p(X) estimates in nats per class (and the (B,) ELBO).
    """
    if X.dim() < 3:
        raise ValueError(f"X must be (classes, elements, ...), got shape {tuple(X.shape)}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    cls, elem = _split_latents(model, per_element)
    B, N = X.shape[:2]
    class_batch = max(1, min(B, max_elements // max(N, 1)))
    est, elbo = [], []
    with eval_mode(model):
        for b0 in tqdm(range(0, B, class_batch), disable=not progress, desc="log p(X)", leave=False):
            Xb = X[b0:b0 + class_batch]
            chunk = max(1, max_elements // (len(Xb) * N))
            lw = torch.cat([_log_weights(model, Xb, min(chunk, n_samples - s), cls, elem)
                            for s in range(0, n_samples, chunk)], dim=0)
            est.append(torch.logsumexp(lw, dim=0) - math.log(n_samples))
            elbo.append(lw.mean(dim=0))
    est = torch.cat(est)
    return (est, torch.cat(elbo)) if return_elbo else est


def _require_class_latent(model, per_element):
    cls, _ = _split_latents(model, per_element)
    if not cls:
        raise EvaluationError(
            "conditional likelihoods need a class-level latent shared by x and D; this model's "
            f"latents {model.order} are all per-element"
        )


def log_conditional(model: VHE, x: torch.Tensor, D: torch.Tensor, n_samples: int = 100,
                    per_element=("z",), max_elements: int = 8192) -> torch.Tensor:
    """log p(x | D) = log p({x} ∪ D) - log p(D), each importance-sampled (nats per query).

    x: (B, ...) one query per row; D: (B, k, ...) its support set. Returns (B,).
    """
    _require_class_latent(model, per_element)
    joint = torch.cat([D, x.unsqueeze(1)], dim=1)
    return (log_marginal(model, joint, n_samples, per_element, max_elements)
            - log_marginal(model, D, n_samples, per_element, max_elements))


def classify(model: VHE, support: torch.Tensor, query: torch.Tensor, n_samples: int = 50,
             per_element=("z",), max_elements: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Few-shot classification by conditional likelihood.

    support: (W, S, ...) W classes with S examples each; query: (Q, ...).
    Scores every (query, class) pair with log p(q | D_j) and predicts the argmax.
    Returns (predictions (Q,) int64, scores (Q, W) in nats).
    """
    _require_class_latent(model, per_element)
    W, S = support.shape[:2]
    Q = query.shape[0]
    log_pD = log_marginal(model, support, n_samples, per_element, max_elements)  # (W,)
    pairs = torch.cat([support.unsqueeze(0).expand(Q, *support.shape),
                       query.unsqueeze(1).unsqueeze(1).expand(Q, W, 1, *query.shape[1:])], dim=2)
    log_joint = log_marginal(model, pairs.reshape(Q * W, S + 1, *support.shape[2:]), n_samples,
                             per_element, max_elements).view(Q, W)
    scores = log_joint - log_pD[None, :]
    return scores.argmax(dim=1), scores


def kl_class(model: VHE, D: torch.Tensor, latent: str = "c", n_samples: int = 100,
             per_element=("z",)) -> torch.Tensor:
    """Monte Carlo estimate of KL(q(latent | D) || p(latent | parents)) in nats, per class.

    D: (B, k, ...). The latent's class-level parents are drawn from their own encoders given D
    (one draw per sample). Returns (B,).
    """
    if latent not in model.order:
        raise EvaluationError(f"the model has no latent {latent!r} (latents: {model.order})")
    needed = {latent}
    for k in reversed(model.order):
        if k in needed:
            needed |= model.parents_of[k]
    bad = needed & set(per_element)
    if bad:
        raise EvaluationError(f"KL of {latent!r} given a class depends on per-element latent(s) {sorted(bad)}")
    B = D.shape[0]
    with eval_mode(model):
        Dr = D.unsqueeze(0).expand(n_samples, *D.shape).reshape(n_samples * B, *D.shape[1:])
        values = {}
        for k in model.order:
            if k not in needed:
                continue
            v, log_q = model._enc[k](Dr, parents=values)
            values[k] = v
            if k == latent:
                _, log_p = model._pri[k](parents=values, value=v)
                return (log_q - log_p).view(n_samples, B).mean(dim=0)
    raise AssertionError("unreachable")
