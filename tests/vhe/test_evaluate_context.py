"""The context-conditioned estimators of vhe.evaluate against closed-form ground truth.

log_marginal_given_context (log p(X | C): a new character X given a context C of other characters of
its alphabet, a ~ q(a | C)) and class_scores_given_context (log p(x | D_j, C): one-shot scores with
alphabet context), on the two-level linear-Gaussian model a -> c -> x <- z of
tests/vhe/linear_gaussian.py. Several characters of one alphabet are jointly Gaussian, so
log p(X | C) = log p(C ∪ {X}) - log p(C), p(a | C) and every estimator's limit are exact linear
algebra in float64 (the estimators accumulate log-weights in float32).

Tolerances (fixed seeds, deterministic), in the style of tests/vhe/test_evaluate_exact.py: each
log-mean-exp estimate at K = 1, 30 and 3000 must approach its limit (the mean absolute error over all
entries shrinking, by at least 3x from K = 30 to K = 3000) and at K = 3000 lie within a fixed bound,
1.4-2x the largest error measured over 8 data seeds:

* log p(X | C), exact q(a | C): 0.04 nats (measured <= 0.022); with q(c | X, a) and q(z | x, c)
  imperfect: 0.06 (<= 0.037); with q(a | C) imperfect, to its own limit log E_q(a|C) p(X | a):
  0.05 (<= 0.026), while that limit differs from log p(X | C) by 0.14-0.23 (the estimator's
  documented bias is resolved); context None (a ~ p(a)) to log p(X): 0.12 (<= 0.070).
* log p(x | D_j, C), exact q(a | C): 0.1 (<= 0.059); imperfect c, z: 0.08 (<= 0.041); imperfect
  q(a | C), to log E_q p(x, D_j | a) - log E_q p(D_j | a): 0.12 (<= 0.066); context None to
  log p(x | D_j): 0.2 (<= 0.130).

The mean of single log-weights (return_elbo, exact c and z encoders: log w = log p(X | a)) is a
mean-type estimator: R = 4000 single draws must average to E_{p(a|C)} log p(X | a) in closed form
within 4 standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from vhe.evaluate import EvaluationError, class_scores_given_context, log_marginal_given_context

from .linear_gaussian import DTYPE, AEncoder, ContextAEncoder, LinearGaussian, _mvn

K_BIG = 3000
PER = 3  # images per character
N_CTX = 3  # context characters
MAE_BIG = {"exact": 0.04, "imperfect_cz": 0.06, "imperfect_a": 0.05, "prior": 0.12}
MAE_BIG_SCORES = {"exact": 0.1, "imperfect_cz": 0.08, "imperfect_a": 0.12, "prior": 0.2}
ENCODERS = {
    "exact": {},
    "imperfect_cz": dict(mean_scale=0.9, cov_scale=1.5, a_mean_scale=1.0, a_cov_scale=1.0),
    "imperfect_a": dict(a_mean_scale=0.9, a_cov_scale=1.5),
    "prior": {},
}


def hier():
    return LinearGaussian(dc=2, dz=2, dx=3, s=0.6, hierarchical=True, da=2, tau=0.5, seed=0)


def _mae(a, b) -> float:
    return float((a.double() - b.double()).abs().mean())


def _convergence(estimate, target, bound):
    errors = []
    for k in (1, 30, K_BIG):
        torch.manual_seed(1)
        errors.append(_mae(estimate(k), target))
    assert errors[2] < errors[1] < errors[0], errors
    assert errors[2] < errors[1] / 3, errors
    assert errors[2] < bound, errors
    return errors


def _model(m, encoders):
    model = m.vhe(context_group=PER, **ENCODERS[encoders])
    return model.double() if encoders == "prior" else model  # p(a) = N(0, I) samples in the model's dtype


def _q_a(m, C, encoders):
    """(mean, cov) of the a encoder's q(a | C)."""
    mean, cov = m.a_posterior(C, PER)
    e = ENCODERS[encoders]
    return e.get("a_mean_scale", e.get("mean_scale", 1.0)) * mean, e.get("a_cov_scale", e.get("cov_scale", 1.0)) * cov


# =========================================================================== ground truth
def test_the_alphabet_ground_truth_agrees_with_itself():
    """One character: log_alphabet = log_marginal; q(a | C) with one group = AEncoder; log p(X | C) by
    the joint covariance = log E_{p(a|C)} p(X | a) by the posterior of a (two independent routes);
    and the context is informative (log p(X | C) differs from log p(X))."""
    m = hier()
    al = m.sample_alphabets(6, 1 + N_CTX, PER, seed=1)
    X, C = al[:, 0], [al[:, j] for j in range(1, 1 + N_CTX)]
    assert torch.allclose(m.log_alphabet([X]), m.log_marginal(X), atol=1e-10)
    torch.manual_seed(0)
    a = torch.randn(6, 2, dtype=DTYPE)
    assert torch.allclose(AEncoder(m)(X, a)[1], ContextAEncoder(m, PER)(X, a)[1], atol=1e-10)
    mean, cov = m.a_posterior(torch.cat(C, dim=1), PER)
    exact = m.log_given_context(X, C)
    assert torch.allclose(m.log_expected_likelihood_a(X, mean, cov), exact, atol=1e-9)
    assert (exact - m.log_marginal(X)).abs().mean() > 0.5


# =========================================================================== log p(X | C)
@pytest.mark.parametrize("encoders", list(ENCODERS))
def test_log_marginal_given_context_converges_to_its_limit(encoders):
    """exact / imperfect c, z: the limit is log p(X | C); imperfect q(a | C): log E_q(a|C) p(X | a),
    which is not log p(X | C) (the bias the docstring states); context None: log p(X)."""
    m = hier()
    al = m.sample_alphabets(16, 1 + N_CTX, PER, seed=0)
    X, C = al[:, 0], al[:, 1:].reshape(16, N_CTX * PER, -1)
    exact = m.log_given_context(X, [al[:, j] for j in range(1, 1 + N_CTX)])
    model = _model(m, encoders)
    if encoders == "prior":
        target, ctx = m.log_marginal(X), None
    elif encoders == "imperfect_a":
        target, ctx = m.log_expected_likelihood_a(X, *_q_a(m, C, encoders)), C
        assert _mae(target, exact) > 0.1
    else:
        target, ctx = exact, C
    errors = _convergence(lambda k: log_marginal_given_context(model, X, ctx, n_samples=k), target, MAE_BIG[encoders])
    if encoders == "imperfect_a":
        torch.manual_seed(1)
        assert _mae(log_marginal_given_context(model, X, ctx, n_samples=K_BIG), exact) > 3 * errors[2]


def test_chunked_estimates_agree():
    """max_elements splits classes and samples into chunks (other draws, the same quantity)."""
    m = hier()
    al = m.sample_alphabets(5, 1 + N_CTX, PER, seed=2)
    X, C = al[:, 0], al[:, 1:].reshape(5, N_CTX * PER, -1)
    model = m.vhe(context_group=PER, mean_scale=0.9, cov_scale=1.5)
    torch.manual_seed(3)
    whole = log_marginal_given_context(model, X, C, n_samples=40)
    torch.manual_seed(3)
    parts = log_marginal_given_context(model, X, C, n_samples=40, max_elements=(PER + N_CTX * PER) * 2 * 7)
    assert whole.shape == parts.shape == (5,)
    # different chunking draws in a different order: equal in distribution, close at K = 40
    assert _mae(whole, parts) < 0.5


def test_single_log_weights_average_to_the_expected_log_likelihood_under_q_a():
    """With exact q(c | X, a) and q(z | x, c), log w_s = log p(X | a_s): R single draws (return_elbo
    at K = 1) average to E_{a ~ q(a|C)} log p(X | a) = log N(X; G m, Σ) - ½ tr(Σ^-1 G S G^T)."""
    m = hier()
    al = m.sample_alphabets(4, 1 + N_CTX, PER, seed=4)
    X, C = al[:, 0], al[:, 1:].reshape(4, N_CTX * PER, -1)
    model = m.vhe(context_group=PER, a_mean_scale=0.9, a_cov_scale=1.5)
    mean, cov = _q_a(m, C, "imperfect_a")
    G = (m.W @ m.U).repeat(PER, 1)
    Sig = m.class_cov(PER, cov_c=m.tau**2 * torch.eye(m.dc, dtype=DTYPE))
    expected = _mvn(mean @ G.T, Sig).log_prob(X.reshape(4, -1)) - 0.5 * torch.trace(
        torch.linalg.solve(Sig, G @ cov @ G.T)
    )
    R = 4000
    torch.manual_seed(0)
    _, single = log_marginal_given_context(model, X.repeat(R, 1, 1), C.repeat(R, 1, 1), n_samples=1, return_elbo=True)
    single = single.double().view(R, 4)
    se = single.std(0) / math.sqrt(R)
    assert ((single.mean(0) - expected).abs() <= 4 * se + 1e-6).all(), (single.mean(0) - expected, se)
    assert se.max() < 0.05


# =========================================================================== log p(x | D_j, C)
def _episodes(m, n_alphabets=3, W=4, seed=0):
    """Alphabets of W episode characters and N_CTX context characters, PER images each."""
    return m.sample_alphabets(n_alphabets, W + N_CTX, PER, seed=seed)


def _score_targets(m, al, W, mode, q_a=None):
    """(n_alphabets, Q, W) limits: log p(x | D_j, C) ("context"), log p(x | D_j) ("none"), or
    log E_q p(x, D_j | a) - log E_q p(D_j | a) for q(a | C) = N(q_a) ("q_a"); D_j = the first image of
    character j, x = the second image of character q."""
    out = []
    for b in range(al.shape[0]):
        A = al[b : b + 1]
        C = [A[:, W + j] for j in range(N_CTX)]
        rows = []
        for q in range(W):
            x = A[:, q, 1:2]
            row = []
            for j in range(W):
                Dj = A[:, j, :1]
                joint = torch.cat([Dj, x], dim=1)
                if mode == "context":
                    row.append(m.log_alphabet(C + [joint]) - m.log_alphabet(C + [Dj]))
                elif mode == "none":
                    row.append(m.log_marginal(joint) - m.log_marginal(Dj))
                else:
                    mu, S = q_a[0][b : b + 1], q_a[1]
                    row.append(m.log_expected_likelihood_a(joint, mu, S) - m.log_expected_likelihood_a(Dj, mu, S))
            rows.append(torch.cat(row))
        out.append(torch.stack(rows))
    return torch.stack(out)


@pytest.mark.parametrize("encoders", list(ENCODERS))
def test_class_scores_given_context_converge_to_their_limit(encoders):
    m = hier()
    W = 4
    al = _episodes(m, W=W)
    contexts = al[:, W:].reshape(al.shape[0], N_CTX * PER, -1)
    model = _model(m, encoders)
    if encoders == "prior":
        target = _score_targets(m, al, W, "none")
    elif encoders == "imperfect_a":
        target = _score_targets(m, al, W, "q_a", _q_a(m, contexts, encoders))
    else:
        target = _score_targets(m, al, W, "context")

    def estimate(k):
        return torch.stack(
            [
                class_scores_given_context(
                    model, al[b, :W, :1], al[b, :W, 1], None if encoders == "prior" else contexts[b], n_samples=k
                )
                for b in range(al.shape[0])
            ]
        )

    _convergence(estimate, target, MAE_BIG_SCORES[encoders])


def test_the_alphabet_context_changes_the_one_shot_scores():
    """Sanity of the comparison the hierarchical evaluation makes: with the context, the exact scores
    differ from those without it (the alphabet carries information about a new character)."""
    m = hier()
    al = _episodes(m, seed=5)
    assert _mae(_score_targets(m, al, 4, "context"), _score_targets(m, al, 4, "none")) > 0.2


# =========================================================================== what is not defined
def test_context_latents_must_be_class_level_and_determined_by_the_context():
    m = hier()
    model = m.vhe(context_group=PER)
    al = m.sample_alphabets(2, 2, PER, seed=0)
    X, C = al[:, 0], al[:, 1]
    with pytest.raises(EvaluationError, match="not latents"):
        log_marginal_given_context(model, X, C, 2, context_latents=("b",))
    with pytest.raises(EvaluationError, match="per-element"):
        log_marginal_given_context(model, X, C, 2, context_latents=("a", "c", "z"))
    with pytest.raises(EvaluationError, match="does not determine"):
        log_marginal_given_context(model, X, C, 2, context_latents=("c",))
    with pytest.raises(EvaluationError, match="names no latent"):
        log_marginal_given_context(model, X, C, 2, context_latents=())
    with pytest.raises(ValueError, match="context must be"):
        log_marginal_given_context(model, X, C[:1], 2)
    with pytest.raises(ValueError, match="context must be"):
        class_scores_given_context(model, X[:, :1], X[:, 1], torch.zeros(3, 5, dtype=DTYPE), 2)
    # a and c both from the context: the likelihood of X given the whole class C (no latent left to X)
    torch.manual_seed(0)
    both = log_marginal_given_context(model, X, C, 4, context_latents=("a", "c"))
    assert both.shape == (2,) and torch.isfinite(both).all()
