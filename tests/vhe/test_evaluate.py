"""Importance-sampled log p(X) on a model whose likelihood is exact."""

import pytest
import torch

from vhe import VHE
from vhe.evaluate import (
    CLASSIFY_METHODS,
    EvaluationError,
    classify,
    kl_class,
    log_conditional,
    log_marginal,
    log_predictive,
)

from .toy_models import LinearPx, Px, Qc, Qz, ScaledQc, exact_log_marginal, exact_posterior_qc, sample_classes


def test_exact_posterior_gives_exact_likelihood_for_any_k():
    X = sample_classes(8, 5)
    model = VHE(encoder=[exact_posterior_qc(5)], decoder=LinearPx())
    est = log_marginal(model, X, n_samples=3, per_element=())
    assert torch.allclose(est, exact_log_marginal(X), atol=1e-3)


def test_estimate_is_below_exact_and_converges_as_k_grows():
    torch.manual_seed(0)
    X = sample_classes(512, 5, seed=123)
    exact = exact_log_marginal(X)
    model = VHE(encoder=[ScaledQc(a=0.12, log_s=-0.3)], decoder=LinearPx())  # a poor proposal
    gaps = []
    for k in (1, 10, 100, 1000):
        gap = exact - log_marginal(model, X, n_samples=k, per_element=(), max_elements=1 << 16)
        gaps.append(gap.mean().item())
        assert gap.mean() > 0, (k, gap.mean())  # a lower bound on average
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3]
    assert gaps[-1] < 0.1 * gaps[0]


def test_elbo_and_chunking_agree():
    torch.manual_seed(0)
    X = sample_classes(4, 3)
    model = VHE(encoder=[ScaledQc()], decoder=LinearPx())
    torch.manual_seed(1)
    a, elbo = log_marginal(model, X, n_samples=50, per_element=(), return_elbo=True)
    torch.manual_seed(1)
    b = log_marginal(model, X, n_samples=50, per_element=(), max_elements=1000)
    assert torch.allclose(a, b, atol=1e-4) and (elbo <= a).all()


def test_with_per_element_z_and_classification():
    torch.manual_seed(0)
    model = VHE(encoder=[Qc(), Qz()], decoder=Px())
    X = torch.randn(3, 4, 2)
    assert log_marginal(model, X, n_samples=7).shape == (3,)
    assert log_conditional(model, X[:, 0], X[:, 1:], n_samples=5).shape == (3,)
    pred, scores = classify(model, torch.randn(5, 1, 2), torch.randn(6, 2), n_samples=4)
    assert pred.shape == (6,) and scores.shape == (6, 5)
    assert kl_class(model, X, "c", n_samples=10).shape == (3,)


def test_classification_on_the_exact_model():
    torch.manual_seed(0)
    means = 3 * torch.randn(5, 2)
    support = means[:, None] + 0.5 * torch.randn(5, 1, 2)
    query = means + 0.5 * torch.randn(5, 2)
    model = VHE(encoder=[exact_posterior_qc(2)], decoder=LinearPx())
    pred, _ = classify(model, support, query, n_samples=200, per_element=())
    assert (pred == torch.arange(5)).float().mean() >= 0.8


def test_kl_of_exact_posterior():
    X = sample_classes(6, 4)
    model = VHE(encoder=[exact_posterior_qc(4)], decoder=LinearPx())
    kl = kl_class(model, X, "c", n_samples=4000)
    # analytic KL(N(m, s^2 I) || N(0, I)) in 2-D
    q = model.encoder["c"]
    m, s2 = q.a * X.sum(1), (2 * q.log_s).exp()
    exact = 0.5 * (s2 * 2 + (m**2).sum(1) - 2 - 2 * torch.log(s2)).detach()
    assert torch.allclose(kl, exact, atol=0.1)


def test_errors_where_undefined():
    model = VHE(encoder=[Qc(), Qz()], decoder=Px())
    with pytest.raises(EvaluationError, match="per-element"):
        classify(model, torch.randn(2, 1, 2), torch.randn(2, 2), per_element=("c", "z"))
    with pytest.raises(EvaluationError, match="no latent 'a'"):
        kl_class(model, torch.randn(2, 2, 2), "a")
    with pytest.raises(ValueError, match="classes, elements"):
        log_marginal(model, torch.randn(2, 2))


def _exact_log_conditional(x, D):
    """log p(x | D) = log p(D ∪ {x}) - log p(D), exactly, for the linear-Gaussian class model."""
    return exact_log_marginal(torch.cat([D, x[:, None]], dim=1)) - exact_log_marginal(D)


@pytest.mark.parametrize("method", ["marginal_ratio", "conditional"])
def test_classification_estimators_converge_to_the_exact_conditional(method):
    """(a) the marginal ratio and (b) the conditional estimator approach log p(x | D) as K grows.

    q(c | D) is the exact posterior for |D| = 3 (so (b) is consistent); for the marginal ratio the
    same encoder is only a proposal (inexact for |D| + 1 = 4), which K importance samples correct.
    """
    torch.manual_seed(0)
    X = sample_classes(6, 4, seed=7)
    D, x = X[:, :3], X[:, 3]
    model = VHE(encoder=[exact_posterior_qc(3)], decoder=LinearPx())
    support = D  # 6 classes, 3 shots
    query = x
    exact = torch.stack([_exact_log_conditional(q.expand(6, *q.shape), D) for q in query])  # (Q, W)
    errors = []
    for k in (1, 10, 1000):
        torch.manual_seed(1)
        _, scores = classify(model, support, query, n_samples=k, per_element=(), method=method, max_elements=1 << 16)
        errors.append((scores - exact).abs().mean().item())
    assert errors[2] < errors[0]
    assert errors[2] < 0.05 * max(1.0, exact.abs().mean().item()), errors


def test_conditional_estimator_is_exact_with_the_true_posterior_and_one_sample_is_a_lower_bound():
    torch.manual_seed(0)
    X = sample_classes(200, 4, seed=3)
    D, x = X[:, :3], X[:, 3]
    model = VHE(encoder=[exact_posterior_qc(3)], decoder=LinearPx())
    exact = _exact_log_conditional(x, D)
    one = log_predictive(model, x, D, n_samples=1, per_element=())
    many = log_predictive(model, x, D, n_samples=2000, per_element=(), max_elements=1 << 20)
    assert (exact - one).mean() > 0  # Jensen: the 1-sample estimator is low on average
    assert (many - exact).abs().mean() < 0.02


def test_symmetric_estimator_converges_to_the_exact_conditional_up_to_a_per_query_constant():
    """symmetric = ½ [log p̂(x | D) + log p̂(D | x) - log p̂(D)] -> log p(x | D) - ½ log p(x).

    1-shot supports, q(c | one element) the exact posterior: both conditional terms are consistent
    (their error shrinks as K grows) and log p̂(D) is exact for any K.
    """
    torch.manual_seed(0)
    X = sample_classes(5, 2, seed=11)
    support, query = X[:, :1], X[:, 1]
    exact = torch.stack([_exact_log_conditional(q.expand(5, *q.shape), support) for q in query])  # (Q, W)
    target = exact - 0.5 * exact_log_marginal(query[:, None])[:, None]
    model = VHE(encoder=[exact_posterior_qc(1)], decoder=LinearPx())
    errors = []
    for k in (1, 10, 20000):
        torch.manual_seed(1)
        _, scores = classify(
            model, support, query, n_samples=k, per_element=(), method="symmetric", max_elements=1 << 20
        )
        errors.append((scores - target).abs().mean().item())
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.05, errors
    # the per-query constant does not change the ranking: same predictions as the exact conditional
    assert torch.equal(scores.argmax(1), exact.argmax(1))


def test_symmetric_reverse_term_multiplies_over_the_support_set():
    """With S-shot supports log p̂(D | x) draws one c per sample, shared by all S elements of D, from
    q(c | {x}) (the exact posterior here), so it converges to log p(D | x) = log p(D ∪ {x}) - log p(x)."""
    torch.manual_seed(0)
    X = sample_classes(4, 4, seed=5)
    support, query = X[:, :3], X[:, 3]
    model = VHE(encoder=[exact_posterior_qc(1)], decoder=LinearPx())  # exact for q(c | x)
    from vhe.evaluate import _reverse_conditional_scores

    with torch.no_grad():
        rev = _reverse_conditional_scores(model, support, query, 20000, ["c"], [], 1 << 20)
    exact = torch.stack(
        [
            exact_log_marginal(torch.cat([support, q.expand(4, 1, *q.shape)], dim=1))
            - exact_log_marginal(q.expand(1, 1, *q.shape))
            for q in query
        ]
    )  # log p(D_j | x_q)
    # the matching pairs (query and support from one class), where q(c | {x}) is a good proposal
    # for D; far pairs converge too, but slowly (heavy-tailed weights)
    assert rev.shape == (4, 4)
    assert (rev.diagonal() - exact.diagonal()).abs().max() < 0.02, rev.diagonal() - exact.diagonal()


def test_ns_kl_rule_prefers_the_matching_class_and_is_exact_for_identical_sets():
    torch.manual_seed(0)
    model = VHE(encoder=[ScaledQc(a=0.5, log_s=-1.0)], decoder=LinearPx())
    means = 4 * torch.randn(5, 2)
    support = means[:, None] + 0.1 * torch.randn(5, 1, 2)
    pred, scores = classify(model, support, support[:, 0], n_samples=50, per_element=(), method="ns_kl")
    assert torch.equal(pred, torch.arange(5))
    # KL(q || q) = 0: the diagonal is 0 up to floating point, every other entry negative
    assert scores.diagonal().abs().max() < 1e-4 and (scores.fill_diagonal_(-1.0) < 0).all()


def test_every_method_runs_with_per_element_z_and_bad_input_is_an_error():
    torch.manual_seed(0)
    model = VHE(encoder=[Qc(), Qz()], decoder=Px())
    for method in CLASSIFY_METHODS:
        pred, scores = classify(
            model, torch.randn(4, 2, 2), torch.randn(3, 2), n_samples=3, method=method, max_elements=7
        )  # tiny chunks exercise the chunking
        assert pred.shape == (3,) and scores.shape == (3, 4) and torch.isfinite(scores).all()
    with pytest.raises(ValueError, match="unknown classification method"):
        classify(model, torch.randn(4, 2, 2), torch.randn(3, 2), method="nearest")
    with pytest.raises(ValueError, match="differ in shape"):
        classify(model, torch.randn(4, 2, 2), torch.randn(3, 5))


# --------------------------------------------------------------------------- shared draws
def _counting_decoder(model):
    """Wrap the decoder so that every image it scores is counted."""
    seen = {"images": 0}
    px = model.decoder if hasattr(model, "decoder") else None
    assert px is not None
    original = px.forward

    def forward(*args, **kwargs):
        x = kwargs.get("x", args[-1] if args else None)
        if x is not None:
            seen["images"] += int(x.shape[0])
        return original(*args, **kwargs)

    px.forward = forward
    return seen


def test_shared_draws_score_fewer_images_and_reuse_the_conditional_scores():
    from tests.vhe.linear_gaussian import LinearGaussian
    from vhe.evaluate import CLASSIFY_METHODS, class_scores, class_scores_many

    lg = LinearGaussian(dc=2, dz=2, dx=3, s=0.6, seed=0)
    X = lg.sample_classes(4, 3, seed=2)
    support, query = X[:, :1], X[:, 2]  # 4 classes, 1 shot, one query per class
    W, S, Q, K = 4, 1, 4, 5
    model = lg.vhe(mean_scale=0.9, cov_scale=1.5)

    seen = _counting_decoder(model)
    torch.manual_seed(0)
    {m: class_scores(model, support, query, method=m, n_samples=K) for m in CLASSIFY_METHODS}
    separate = seen["images"]
    seen["images"] = 0
    torch.manual_seed(0)
    shared = class_scores_many(model, support, query, CLASSIFY_METHODS, n_samples=K)
    # the conditional scores are drawn once for `conditional` and `symmetric`, log p(D) once for
    # `marginal_ratio` and `symmetric`: K Q W + K W S images fewer
    assert separate - seen["images"] == K * Q * W + K * W * S
    # `symmetric` reuses the conditional scores: with the same seed, the same draws and numbers
    torch.manual_seed(0)
    conditional = class_scores(model, support, query, method="conditional", n_samples=K)
    torch.manual_seed(0)
    pair = class_scores_many(model, support, query, ("conditional", "symmetric"), n_samples=K)
    assert torch.equal(pair["conditional"], conditional)
    assert set(shared) == set(CLASSIFY_METHODS) and all(v.shape == (Q, W) for v in shared.values())
    with pytest.raises(ValueError, match="unknown classification method"):
        class_scores_many(model, support, query, ("conditional", "nope"))
