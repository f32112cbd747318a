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

__all__ = [
    "log_marginal",
    "log_conditional",
    "log_predictive",
    "kl_class",
    "classify",
    "class_scores",
    "class_scores_many",
    "log_marginal_given_context",
    "class_scores_given_context",
    "CLASSIFY_METHODS",
    "eval_mode",
    "EvaluationError",
]

#: few-shot classification estimators of :func:`classify` (formulas and costs in its docstring)
CLASSIFY_METHODS = ("marginal_ratio", "conditional", "ns_kl", "symmetric")


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
    return _log_weights_given(model, X, n, {}, cls, elem)


def log_marginal(
    model: VHE,
    X: torch.Tensor,
    n_samples: int = 1000,
    per_element=("z",),
    max_elements: int = 8192,
    return_elbo: bool = False,
    progress: bool = False,
):
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
            Xb = X[b0 : b0 + class_batch]
            chunk = max(1, max_elements // (len(Xb) * N))
            lw = torch.cat(
                [_log_weights(model, Xb, min(chunk, n_samples - s), cls, elem) for s in range(0, n_samples, chunk)],
                dim=0,
            )
            est.append(torch.logsumexp(lw, dim=0) - math.log(n_samples))
            elbo.append(lw.mean(dim=0))
    est = torch.cat(est)
    return (est, torch.cat(elbo)) if return_elbo else est


def log_conditional(
    model: VHE, x: torch.Tensor, D: torch.Tensor, n_samples: int = 100, per_element=("z",), max_elements: int = 8192
) -> torch.Tensor:
    """The marginal-ratio estimator log p(x | D) = log p({x} ∪ D) - log p(D), each
    importance-sampled with :func:`log_marginal` (nats per query); see :func:`log_predictive` for
    the lower-variance conditional estimator.

    x: (B, ...) one query per row; D: (B, k, ...) its support set. Returns (B,).
    """
    _class_latents(model, per_element)
    joint = torch.cat([D, x.unsqueeze(1)], dim=1)
    return log_marginal(model, joint, n_samples, per_element, max_elements) - log_marginal(
        model, D, n_samples, per_element, max_elements
    )


def _class_latents(model: VHE, per_element):
    cls, elem = _split_latents(model, per_element)
    if not cls:
        raise EvaluationError(
            "conditional likelihoods need a class-level latent shared by x and D; this model's "
            f"latents {model.order} are all per-element"
        )
    return cls, elem


def _encode_classes(model: VHE, D: torch.Tensor, cls) -> dict:
    """One draw of every class-level latent from its encoder given the sets D (n, k, ...)."""
    values = {}
    for k in cls:
        values[k], _ = model._enc[k](D, parents=values)
    return values


def _log_px_given_class(model: VHE, x: torch.Tensor, values: dict, elem) -> torch.Tensor:
    """log p̂(x | class latents), z importance-sampled once: log p(x|c,z) + log p(z|c) - log q(z|x,c)
    with z ~ q(z | x, c). x: (n, ...), values: {latent: (n, ...)} -> (n,) nats."""
    xe = x.unsqueeze(1)
    vals, lw = dict(values), torch.zeros(len(x), device=x.device)
    for k in elem:
        v, log_q = model._enc[k](xe, parents=vals)
        _, log_p = model._pri[k](parents=vals, value=v)
        lw = lw + (log_p - log_q).float()
        vals[k] = v
    _, log_px = model._dec(parents=vals, value=x)
    return lw + log_px.float()


def log_predictive(
    model: VHE, x: torch.Tensor, D: torch.Tensor, n_samples: int = 10, per_element=("z",), max_elements: int = 8192
) -> torch.Tensor:
    """The conditional estimator of log p(x | D), nats per query.

        log p̂(x | D) = log (1/S) sum_s p(x | c_s, z_s) p(z_s | c_s) / q(z_s | x, c_s),
        c_s ~ q(c | D) (every class-level latent from its encoder given D), z_s ~ q(z | x, c_s)

    q(c | D) stands in for the posterior p(c | D), which is what the VHE objective trains it to
    approximate; as S grows this converges to log E_{q(c|D)} p(x | c) (exactly log p(x | D) when
    q(c | D) is the true posterior). Cost: S decoder evaluations and S encodings of D per query.

    x: (B, ...) one query per row; D: (B, k, ...) its support set. Returns (B,).
    """
    cls, elem = _class_latents(model, per_element)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    B = x.shape[0]
    chunk = max(1, max_elements // max(B, 1))
    out = []
    with eval_mode(model):
        for s0 in range(0, n_samples, chunk):
            n = min(chunk, n_samples - s0)
            Dr = D.unsqueeze(0).expand(n, *D.shape).reshape(n * B, *D.shape[1:])
            xr = x.unsqueeze(0).expand(n, *x.shape).reshape(n * B, *x.shape[1:])
            out.append(_log_px_given_class(model, xr, _encode_classes(model, Dr, cls), elem).view(n, B))
    lw = torch.cat(out)
    return torch.logsumexp(lw, dim=0) - math.log(n_samples)


def _check_classify_inputs(support: torch.Tensor, query: torch.Tensor, n_samples: int, methods) -> None:
    for method in methods:
        if method not in CLASSIFY_METHODS:
            raise ValueError(f"unknown classification method {method!r}; choose one of {CLASSIFY_METHODS}")
    if support.dim() < 3:
        raise ValueError(f"support must be (classes, shots, ...), got shape {tuple(support.shape)}")
    if query.shape[1:] != support.shape[2:]:
        raise ValueError(
            f"query elements {tuple(query.shape[1:])} and support elements {tuple(support.shape[2:])} differ in shape"
        )
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")


def class_scores(
    model: VHE,
    support: torch.Tensor,
    query: torch.Tensor,
    method: str = "conditional",
    n_samples: int = 10,
    per_element=("z",),
    max_elements: int = 8192,
) -> torch.Tensor:
    """Scores (Q, W) of every query against every class (higher = more likely); see :func:`classify`."""
    return class_scores_many(model, support, query, (method,), n_samples, per_element, max_elements)[method]


def class_scores_many(
    model: VHE,
    support: torch.Tensor,
    query: torch.Tensor,
    methods=CLASSIFY_METHODS,
    n_samples: int = 10,
    per_element=("z",),
    max_elements: int = 8192,
) -> dict[str, torch.Tensor]:
    """Scores (Q, W) in nats of every estimator in ``methods`` (see :func:`classify`) from shared draws.

    Each estimator is computed as :func:`class_scores` computes it alone, but what two of them
    need is drawn once: the conditional scores log p̂(x | D_j) serve both ``conditional`` and
    the forward half of ``symmetric``, and log p̂(D_j) (one importance-sampled marginal per
    support set) serves both ``marginal_ratio`` and ``symmetric``. Every estimator therefore has
    the distribution it has alone (only the correlation between estimators changes); with the
    four estimators on 1-shot runs a pair costs K (2S + 2) decoder evaluations instead of
    K (2S + 3). Returns {method: scores} for the requested methods.
    """
    methods = tuple(dict.fromkeys(methods))
    _check_classify_inputs(support, query, n_samples, methods)
    cls, elem = _class_latents(model, per_element)
    W, S = support.shape[:2]
    Q = query.shape[0]
    out = {}
    with eval_mode(model):
        if "ns_kl" in methods:
            out["ns_kl"] = _ns_kl_scores(model, support, query, n_samples, cls)
        if "conditional" in methods or "symmetric" in methods:
            forward = _conditional_scores(model, support, query, n_samples, cls, elem, max_elements)
            if "conditional" in methods:
                out["conditional"] = forward
    log_pD = None
    if "marginal_ratio" in methods or "symmetric" in methods:
        log_pD = log_marginal(model, support, n_samples, per_element, max_elements)  # (W,), once per support set
    if "symmetric" in methods:
        with eval_mode(model):
            reverse = _reverse_conditional_scores(model, support, query, n_samples, cls, elem, max_elements)
        out["symmetric"] = 0.5 * (forward + reverse - log_pD[None, :])
    if "marginal_ratio" in methods:
        pairs = torch.cat(
            [
                support.unsqueeze(0).expand(Q, *support.shape),
                query.unsqueeze(1).unsqueeze(1).expand(Q, W, 1, *query.shape[1:]),
            ],
            dim=2,
        )
        log_joint = log_marginal(
            model, pairs.reshape(Q * W, S + 1, *support.shape[2:]), n_samples, per_element, max_elements
        ).view(Q, W)
        out["marginal_ratio"] = log_joint - log_pD[None, :]
    return {m: out[m] for m in methods}


def _ns_kl_scores(model: VHE, support, query, n_samples, cls) -> torch.Tensor:
    """-KL(q(c | x) || q(c | D_j)) for every query and class (Q, W) nats: c_s ~ q(c | x) shared by
    all classes (common random numbers), scored under each q(c | D_j)."""
    W = support.shape[0]
    Q = query.shape[0]
    xq = query.unsqueeze(1).unsqueeze(0).expand(n_samples, Q, 1, *query.shape[1:])
    xq = xq.reshape(n_samples * Q, 1, *query.shape[1:])
    values, log_qx = {}, torch.zeros(n_samples * Q, device=query.device)
    for k in cls:
        v, lq = model._enc[k](xq, parents=values)
        values[k] = v
        log_qx = log_qx + lq.float()
    scores = torch.empty(Q, W, device=query.device)
    for j in range(W):
        Dj = support[j].unsqueeze(0).expand(n_samples * Q, *support.shape[1:])
        log_qD = torch.zeros(n_samples * Q, device=query.device)
        for k in cls:
            _, lq = model._enc[k](Dj, parents=values, value=values[k])
            log_qD = log_qD + lq.float()
        scores[:, j] = -(log_qx - log_qD).view(n_samples, Q).mean(dim=0)
    return scores


def _conditional_scores(model: VHE, support, query, n_samples, cls, elem, max_elements) -> torch.Tensor:
    """log p̂(x_q | D_j) for every query and class (Q, W) nats: c_{j,s} ~ q(c | D_j) once per class
    and sample, shared by all queries; z importance-sampled once per (query, c_{j,s})."""
    W = support.shape[0]
    Q = query.shape[0]
    Dr = support.unsqueeze(0).expand(n_samples, *support.shape).reshape(n_samples * W, *support.shape[1:])
    values = _encode_classes(model, Dr, cls)  # (n_samples * W, ...), sample-major
    rows = n_samples * W
    q_chunk = max(1, max_elements // rows)
    scores = []
    for q0 in range(0, Q, q_chunk):
        qs = query[q0 : q0 + q_chunk]
        n = len(qs)
        xr = qs.unsqueeze(1).expand(n, rows, *qs.shape[1:]).reshape(n * rows, *qs.shape[1:])
        vr = {k: v.unsqueeze(0).expand(n, *v.shape).reshape(n * rows, *v.shape[1:]) for k, v in values.items()}
        lw = _log_px_given_class(model, xr, vr, elem).view(n, n_samples, W)
        scores.append(torch.logsumexp(lw, dim=1) - math.log(n_samples))
    return torch.cat(scores)


def _reverse_conditional_scores(model: VHE, support, query, n_samples, cls, elem, max_elements) -> torch.Tensor:
    """log p̂(D_j | x_q) = log (1/K) sum_s prod_i p̂(d_ji | c_s), c_s ~ q(c | {x_q}) once per query and
    sample, shared by all classes; z importance-sampled once per (support element, c_s). (Q, W) nats."""
    W, S = support.shape[:2]
    Q = query.shape[0]
    Xq = query.unsqueeze(1)  # (Q, 1, ...): each query as a one-element set
    Xr = Xq.unsqueeze(0).expand(n_samples, *Xq.shape).reshape(n_samples * Q, *Xq.shape[1:])
    values = _encode_classes(model, Xr, cls)  # (n_samples * Q, ...), sample-major
    rows = n_samples * Q
    elements = support.reshape(W * S, *support.shape[2:])
    e_chunk = max(1, max_elements // rows)
    parts = []
    for e0 in range(0, W * S, e_chunk):
        es = elements[e0 : e0 + e_chunk]
        n = len(es)
        xr = es.unsqueeze(1).expand(n, rows, *es.shape[1:]).reshape(n * rows, *es.shape[1:])
        vr = {k: v.unsqueeze(0).expand(n, *v.shape).reshape(n * rows, *v.shape[1:]) for k, v in values.items()}
        parts.append(_log_px_given_class(model, xr, vr, elem).view(n, rows))
    lw = torch.cat(parts).T.reshape(n_samples, Q, W, S).sum(dim=3)  # prod over the elements of D_j
    return torch.logsumexp(lw, dim=0) - math.log(n_samples)


def classify(
    model: VHE,
    support: torch.Tensor,
    query: torch.Tensor,
    n_samples: int = 10,
    per_element=("z",),
    max_elements: int = 8192,
    method: str = "conditional",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Few-shot classification: predict, for every query, the class that scores it highest.

    support: (W, S, ...) W classes with S examples each (D_j = support[j]); query: (Q, ...).
    ``method`` (n_samples = K importance samples or S posterior samples):

    * ``"marginal_ratio"``: log p̂(D_j ∪ {x}) - log p̂(D_j), two importance-sampled marginals
      (:func:`log_marginal`, c ~ q(c | set)); the difference of two noisy estimates loses most
      of the signal at small K. Cost: K (S + 1) decoder evaluations per (query, class) pair,
      plus K S per class.
    * ``"conditional"``: log p̂(x | D_j) = log (1/K) sum_s p̂(x | c_s), c_s ~ q(c | D_j), z
      importance-sampled once per c_s (:func:`log_predictive`). Cost: K decoder evaluations
      per pair (the K draws of c per class are shared by all queries).
    * ``"ns_kl"``: the Neural Statistician's rule, -KL(q(c | x) || q(c | D_j)), estimated as
      mean_s [log q(c_s | D_j) - log q(c_s | x)], c_s ~ q(c | x) (the same draws for every class).
      Cost: no decoder evaluation; K encoder scorings per pair.
    * ``"symmetric"``: the mean of two estimators of log p(x | D_j) up to a constant that is the
      same for every class: the conditional log p̂(x | D_j) above, and log p̂(D_j | x) - log p̂(D_j),
      where log p(D_j | x) - log p(D_j) = log p(x | D_j) - log p(x) exactly. The second reads the
      pair the other way round (c_s ~ q(c | {x}), log p̂(D_j | x) = log (1/K) sum_s prod_i
      p̂(d_ji | c_s), z importance-sampled; log p̂(D_j) by :func:`log_marginal`), so the errors of
      q(c | D_j) and of q(c | x) partly average out. Scores are ½ [log p̂(x | D_j) + log p̂(D_j | x)
      - log p̂(D_j)]. Cost: K (1 + S) decoder evaluations per pair, plus K S per class.

    Returns (predictions (Q,) int64, scores (Q, W): nats, higher = more likely).
    """
    scores = class_scores(
        model, support, query, method=method, n_samples=n_samples, per_element=per_element, max_elements=max_elements
    )
    return scores.argmax(dim=1), scores


def kl_class(model: VHE, D: torch.Tensor, latent: str = "c", n_samples: int = 100, per_element=("z",)) -> torch.Tensor:
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


# =========================================================================== context-conditioned likelihoods
def _context_split(model: VHE, cls, elem, context_latents) -> tuple[list, list]:
    """(context latents, other class-level latents), both in the model's order; checks that the
    context latents are class-level and that the context alone determines them (their parents are
    context latents too)."""
    want = set(context_latents)
    unknown = sorted(want - set(model.order))
    if unknown:
        raise EvaluationError(f"context latent(s) {unknown} are not latents of this model {model.order}")
    ctx = [k for k in model.order if k in want]
    if not ctx:
        raise EvaluationError("context_latents names no latent: the context would condition nothing")
    for k in ctx:
        if k in elem:
            raise EvaluationError(f"context latent {k!r} is per-element; a context set fixes class-level latents")
        outside = model.parents_of[k] - want
        if outside:
            raise EvaluationError(
                f"context latent {k!r} depends on {sorted(outside)}, which the context does not determine; "
                f"name them in context_latents too"
            )
    return ctx, [k for k in cls if k not in want]


def _draw_context(model: VHE, context, n: int, B: int, ctx) -> dict:
    """n draws of every context latent for each of B classes ((n * B, ...), sample-major): from its
    encoder given the context sets (B, M, ...), or from its prior when ``context`` is None."""
    values = {}
    if context is None:
        for k in ctx:
            values[k] = model._sample_prior(k, values, n * B)
        return values
    Cr = context.unsqueeze(0).expand(n, *context.shape).reshape(n * B, *context.shape[1:])
    for k in ctx:
        values[k], _ = model._enc[k](Cr, parents=values)
    return values


def _log_weights_given(model: VHE, X: torch.Tensor, n: int, values: dict, cls, elem) -> torch.Tensor:
    """log w of :func:`_log_weights` with the latents in ``values`` ((n * B, ...) each, sample-major)
    already drawn; they add no term. The class-level latents ``cls`` come from their encoders given
    X, the per-element ones ``elem`` from theirs given each element. X (B, N, ...) -> (n, B)."""
    B, N = X.shape[:2]
    Xr = X.unsqueeze(0).expand(n, *X.shape).reshape(n * B, *X.shape[1:])
    values, logw = dict(values), torch.zeros(n * B, device=X.device)
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


def log_marginal_given_context(
    model: VHE,
    X: torch.Tensor,
    context: torch.Tensor | None,
    n_samples: int = 1000,
    context_latents=("a",),
    per_element=("z",),
    max_elements: int = 8192,
    return_elbo: bool = False,
    progress: bool = False,
):
    """log p(X | C): the likelihood of a class X given a context set C that shares some of its
    latents (the hierarchical model: X a new character, C images of *other* characters of its
    alphabet, the shared latent the alphabet a). Nats per class.

    The context latents (``context_latents``, e.g. a) are drawn from their encoders given C and
    nothing else; the remaining class-level latents (c) from their encoders given X and the drawn
    context latents, and the per-element ones (z) as :func:`log_marginal` does:

        a_s ~ q(a | C),  c_s ~ q(c | X, a_s),  z_si ~ q(z | x_i, c_s)
        w_s = p(c_s | a_s) / q(c_s | X, a_s) * prod_i p(x_i | c_s, z_si) p(z_si | c_s) / q(z_si | x_i, c_s)
        log p̂(X | C) = logsumexp_s log w_s - log K

    Given a_s, w_s is an unbiased estimate of p(X | a_s) (c and z are importance-weighted), so the
    mean of the w_s is unbiased for E_{q(a|C)} p(X | a), and log p̂ converges to

        log E_{q(a | C)} p(X | a)        as K -> inf,

    from below in expectation at every K (Jensen: a stochastic lower bound on that limit, as
    log_marginal's is on log p(X)). q(a | C) stands in for the posterior p(a | C) without the weight
    p(a | C) / q(a | C) (unknown), so the limit is log p(X | C) = log ∫ p(X | a) p(a | C) da exactly
    when q(a | C) = p(a | C) (X and C independent given a), and otherwise differs from it by
    log E_q p(X | a) - log E_{p(a|C)} p(X | a), of either sign: the value is the likelihood the model
    gives X after inferring a from C *with its encoder*, the inference its generative use relies on
    (a ~ q(a | D), c ~ p(c | a)). The imperfection of q(c | X, a) and q(z | x, c) costs variance only.

    ``context=None`` draws the context latents from their priors instead (a ~ p(a)): an honest
    importance sampler of log p(X) itself (no bias beyond Jensen's), with a higher variance than
    :func:`log_marginal`'s proposal q(a | X).

    Args:
        X: (B, N, ...) B classes of N elements; context: (B, M, ...) one context set per class, or None.
        context_latents: class-level latents inferred from the context; their parents must be
            context latents too.
        return_elbo: also return mean_K log w (<= the estimate's limit in expectation).
    Returns: (B,) estimates in nats per class (and the (B,) mean log-weights).
    """
    if X.dim() < 3:
        raise ValueError(f"X must be (classes, elements, ...), got shape {tuple(X.shape)}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    cls, elem = _split_latents(model, per_element)
    ctx, rest = _context_split(model, cls, elem, context_latents)
    B, N = X.shape[:2]
    M = 0
    if context is not None:
        if context.dim() < 3 or context.shape[0] != B:
            raise ValueError(
                f"context must be (classes, elements, ...) with the {B} classes of X, got shape {tuple(context.shape)}"
            )
        M = context.shape[1]
    per_class = N + M
    class_batch = max(1, min(B, max_elements // max(per_class, 1)))
    est, elbo = [], []
    with eval_mode(model):
        for b0 in tqdm(range(0, B, class_batch), disable=not progress, desc="log p(X | C)", leave=False):
            Xb = X[b0 : b0 + class_batch]
            Cb = None if context is None else context[b0 : b0 + class_batch]
            chunk = max(1, max_elements // (len(Xb) * per_class))
            parts = []
            for s in range(0, n_samples, chunk):
                n = min(chunk, n_samples - s)
                parts.append(_log_weights_given(model, Xb, n, _draw_context(model, Cb, n, len(Xb), ctx), rest, elem))
            lw = torch.cat(parts, dim=0)
            est.append(torch.logsumexp(lw, dim=0) - math.log(n_samples))
            elbo.append(lw.mean(dim=0))
    est = torch.cat(est)
    return (est, torch.cat(elbo)) if return_elbo else est


def class_scores_given_context(
    model: VHE,
    support: torch.Tensor,
    query: torch.Tensor,
    context: torch.Tensor | None,
    n_samples: int = 10,
    context_latents=("a",),
    per_element=("z",),
    max_elements: int = 8192,
) -> torch.Tensor:
    """Few-shot scores log p̂(x_q | D_j, C) (Q, W), nats: every class D_j = support[j] and the query
    share the context C (one set for the whole episode: e.g. other characters of the alphabet).

    Self-normalised importance sampling over the context draws: a_s ~ q(a | C) (or p(a) when
    ``context`` is None), one per sample and shared by every class and query (common random
    numbers); c_js ~ q(c | D_j, a_s); z importance-sampled once per element and c_js. With
    v_js = p(c_js | a_s) p̂(D_j | c_js) / q(c_js | D_j, a_s) (an unbiased estimate of p(D_j | a_s)),

        log p̂(x | D_j, C) = log sum_s v_js p̂(x | c_js) - log sum_s v_js.

    The numerator estimates E_{q(a|C)} p(x, D_j | a) and the denominator E_{q(a|C)} p(D_j | a) (up to
    the same factor K), so the score converges to log E_q p(x, D_j | a) - log E_q p(D_j | a): exactly
    log p(x | D_j, C) when q(a | C) = p(a | C), whatever q(c | D, a) and q(z | x, c) are (they cost
    variance); the ratio has an O(1/K) bias. The weights v let D_j update the context's a: the
    score conditions on C and D_j jointly, as p(x | D_j, C) does. With ``context=None`` it converges
    to log p(x | D_j), a ~ p(a) (no context). Cost per episode: K context encodings, K W class
    encodings, K (Q + S) W decoder evaluations.

    support: (W, S, ...); query: (Q, ...); context: (M, ...) or None. Returns (Q, W).
    """
    _check_classify_inputs(support, query, n_samples, ("conditional",))
    cls, elem = _class_latents(model, per_element)
    ctx, rest = _context_split(model, cls, elem, context_latents)
    if context is not None and (context.dim() < 2 or context.shape[1:] != support.shape[2:]):
        raise ValueError(
            f"context must be (M, ...) with elements like the support's {tuple(support.shape[2:])}, "
            f"got shape {tuple(context.shape)}"
        )
    W, S = support.shape[:2]
    Q = query.shape[0]
    rows_per_sample = W
    s_chunk = max(1, max_elements // max(W * (S + 1), 1))
    num, den = [], []
    with eval_mode(model):
        for s0 in range(0, n_samples, s_chunk):
            n = min(s_chunk, n_samples - s0)
            cvals = _draw_context(model, None if context is None else context.unsqueeze(0), n, 1, ctx)
            values = {k: v.repeat_interleave(rows_per_sample, dim=0) for k, v in cvals.items()}  # (n * W): (s, j)
            Dr = support.unsqueeze(0).expand(n, *support.shape).reshape(n * W, *support.shape[1:])
            log_v = torch.zeros(n * W, device=support.device)
            for k in rest:
                v, log_q = model._enc[k](Dr, parents=values)
                _, log_p = model._pri[k](parents=values, value=v)
                log_v = log_v + (log_p - log_q).float()
                values[k] = v
            rows = n * W
            # p̂(D_j | c_js): every support element under every (s, j) row of its own class
            elements = Dr.reshape(rows * S, *support.shape[2:])
            vr = {k: v.repeat_interleave(S, dim=0) for k, v in values.items()}
            log_v = log_v + _log_px_given_class(model, elements, vr, elem).view(rows, S).sum(dim=1)
            q_chunk = max(1, max_elements // rows)
            lq = []
            for q0 in range(0, Q, q_chunk):
                qs = query[q0 : q0 + q_chunk]
                m = len(qs)
                xr = qs.unsqueeze(1).expand(m, rows, *qs.shape[1:]).reshape(m * rows, *qs.shape[1:])
                vq = {k: v.unsqueeze(0).expand(m, *v.shape).reshape(m * rows, *v.shape[1:]) for k, v in values.items()}
                lq.append(_log_px_given_class(model, xr, vq, elem).view(m, n, W))
            lv = log_v.view(n, W)
            num.append(torch.cat(lq) + lv[None])  # (Q, n, W)
            den.append(lv)  # (n, W)
    num = torch.logsumexp(torch.cat(num, dim=1), dim=1)
    den = torch.logsumexp(torch.cat(den, dim=0), dim=0)
    return num - den[None, :]
