"""Importance-sampled log p(X) on a model whose likelihood is exact."""
import pytest
import torch

from vhe import VHE
from vhe.evaluate import EvaluationError, classify, kl_class, log_conditional, log_marginal

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
