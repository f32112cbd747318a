"""Every estimator of vhe.evaluate against closed-form ground truth (tests/vhe/linear_gaussian.py).

The models are linear-Gaussian with a class latent c and a per-image latent z (and, for the
hierarchical graph, an alphabet latent a above c), built with the public vhe.VHE constructor and
evaluated through the functions the pipeline calls (vhe.evaluate via analysis.evaluate and
analysis.hierarchical). Exact log p(X), log p(x | D), KL and bounds come from Gaussian algebra
in float64; the estimators accumulate log-weights in float32.

Tolerances (all with fixed seeds, so every test is deterministic):

* exact posteriors as proposals make every importance weight equal to p(X) (p(D ∪ {x}), ...):
  the estimate is exact for any K up to float32 accumulation, measured at ~1e-6 nats; the tests
  allow 1e-4.
* mean-type estimators (the ELBO, model.score's bound, KL(q(c|D) || p(c)), the ns_kl rule) are
  means of independent single-sample terms: the test draws R of them (K = 1 on R copies of each
  class) and requires |mean - exact| < 4 standard errors of that mean (SE measured from the same
  draws), and the SE itself to be small.
* log-mean-exp estimators (log p̂(X), the four classification scores) are checked at K = 1, 30
  and 3000: the error must shrink (by at least 3x from K = 30 to K = 3000; Monte Carlo error falls
  ~10x) and at K = 3000 the mean absolute error over all entries must be below a fixed bound,
  1.4-2x the largest error measured over 8 seeds (log p(X): 0.06 nats, measured <= 0.03;
  marginal ratio 0.05, <= 0.026; conditional 0.1, <= 0.064; symmetric 0.2, <= 0.137; ns_kl
  0.15, <= 0.106). Mis-weighted importance weights (e.g. the z term log p(z) - log q(z | x, c)
  halved in vhe.evaluate) fail these tests: checked by applying such mutations by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from analysis.evaluate import kl_c_section, likelihood
from analysis.hierarchical import _nll
from vhe import VHE
from vhe.evaluate import (
    CLASSIFY_METHODS,
    class_scores,
    class_scores_many,
    classify,
    kl_class,
    log_conditional,
    log_marginal,
    log_predictive,
)

from .linear_gaussian import DTYPE, DiagonalPx, DiagonalQc, LinearGaussian, kl_mvn

EXACT_ATOL = 1e-4  # float32 accumulation of float64 log-weights (measured ~1e-6)
Z_MAX = 4.0  # |mean - exact| / SE for mean-type estimators
K_BIG = 3000
#: bound on the mean absolute error at K_BIG (1.4-2x the largest error measured over 8 seeds)
MAE_BIG = {"log_marginal": 0.06, "marginal_ratio": 0.05, "conditional": 0.1, "symmetric": 0.2, "ns_kl": 0.15}

#: encoder settings: exact posteriors; c and z both imperfect (mean x0.9, covariance x1.5); only z imperfect
ENCODERS = {
    "exact": {},
    "imperfect": dict(mean_scale=0.9, cov_scale=1.5),
    "imperfect_z": dict(z_mean_scale=0.8, z_cov_scale=1.5),
}


def flat():
    return LinearGaussian(dc=2, dz=2, dx=3, s=0.6, seed=0)


def hier():
    return LinearGaussian(dc=2, dz=2, dx=3, s=0.6, hierarchical=True, da=2, tau=0.5, seed=0)


def _mae(a, b) -> float:
    return float((a.double() - b.double()).abs().mean())


def _z_check(samples: torch.Tensor, exact: torch.Tensor, what: str):
    """samples (R, B) independent single-sample terms: each column's mean within Z_MAX SEs of exact (B,)."""
    mean, se = samples.double().mean(0), samples.double().std(0) / math.sqrt(samples.shape[0])
    ok = (mean - exact).abs() <= Z_MAX * se + 1e-6  # (+ float32 rounding: a zero-variance term is exact)
    assert ok.all(), f"{what}: mean - exact = {(mean - exact).tolist()}, SE {se.tolist()}"
    return se


def _convergence(estimate, target, key):
    """estimate(K) at K = 1, 30, K_BIG (seeded) approaches target: shrinking error, small at K_BIG."""
    errors = []
    for k in (1, 30, K_BIG):
        torch.manual_seed(1)
        errors.append(_mae(estimate(k), target))
    assert errors[2] < errors[1] < errors[0], errors
    assert errors[2] < errors[1] / 3, errors
    assert errors[2] < MAE_BIG[key], errors
    return errors


# =========================================================================== log p(X)
@pytest.mark.parametrize("make", [flat, hier], ids=["flat", "hierarchical"])
def test_log_marginal_and_elbo_are_exact_with_exact_posteriors_for_any_k(make):
    """With q = the exact posteriors every weight is p(X): log p̂(X) = ELBO = log p(X) for any K.
    Any error in the weights (a term dropped or mis-weighted) breaks the equality."""
    m = make()
    X = m.sample_classes(8, 4, seed=1)
    exact = m.log_marginal(X)
    model = m.vhe()
    for k in (1, 7):
        torch.manual_seed(k)
        est, elbo = log_marginal(model, X, n_samples=k, return_elbo=True)
        assert (est.double() - exact).abs().max() < EXACT_ATOL, (k, est - exact)
        assert (elbo.double() - exact).abs().max() < EXACT_ATOL, (k, elbo - exact)


def test_the_pipelines_likelihood_functions_report_exact_nats_per_image():
    """analysis.evaluate.likelihood (class models) and analysis.hierarchical._nll (the
    hierarchical model, a and c inferred from the character's images, no alphabet context)
    give -log p(X) / |X| per class."""
    m = flat()
    X = m.sample_classes(5, 4, seed=2)
    nll, nelbo = likelihood(m.vhe(), X, K=3, elem=["z"], max_elements=1000, class_chunk=2)
    expected = -m.log_marginal(X) / 4
    assert (nll - expected).abs().max() < EXACT_ATOL and (nelbo - expected).abs().max() < EXACT_ATOL
    h = hier()
    Xh = h.sample_classes(5, 4, seed=3)
    hn = torch.as_tensor(_nll(h.vhe(), Xh, n_samples=3, chunk=2))
    assert (hn - (-h.log_marginal(Xh) / 4)).abs().max() < EXACT_ATOL


@pytest.mark.parametrize("make", [flat, hier], ids=["flat", "hierarchical"])
@pytest.mark.parametrize("encoders", ["imperfect", "imperfect_z"])
def test_log_marginal_converges_to_the_exact_value_with_imperfect_proposals(make, encoders):
    m = make()
    X = m.sample_classes(16, 4, seed=1)
    exact = m.log_marginal(X)
    model = m.vhe(**ENCODERS[encoders])
    _convergence(lambda k: log_marginal(model, X, n_samples=k), exact, "log_marginal")


def test_one_sample_log_weights_average_to_the_closed_form_elbo_below_log_p():
    """mean_K log w (the ELBO of log_marginal) against E_q[log w] in closed form: -KL(q(c|X) || p(c))
    + sum_i E[log p(x_i | c, z_i) - KL(q(z_i | x_i, c) || p(z_i))]; it lies below log p(X)."""
    m = flat()
    X = m.sample_classes(6, 4, seed=4)
    model = m.vhe(**ENCODERS["imperfect"])
    elbo = m.elbo(model, X)
    assert (elbo < m.log_marginal(X) - 0.1).all()  # the proposal is imperfect: a real gap
    R = 4000
    torch.manual_seed(0)
    samples = log_marginal(model, X.repeat(R, 1, 1), n_samples=1).view(R, len(X))  # R single log w per class
    se = _z_check(samples, elbo, "ELBO")
    assert se.max() < 0.05
    torch.manual_seed(0)
    _, mean_k = log_marginal(model, X, n_samples=R, return_elbo=True)
    assert (mean_k.double() - elbo).abs().max() < Z_MAX * se.max()


# =========================================================================== model.score (the training bound)
@pytest.mark.parametrize("rescale", [True, False], ids=["vhe_rescale", "ns_weighting"])
def test_model_score_averages_to_the_closed_form_bound(rescale):
    """E[model.score] = E[log p(x | c, z)] - KL(q(c | D) || p(c)) / w - E[KL(q(z | x, c) || p(z))],
    w = |X| (rescale) or |D| (the Neural Statistician's weighting): the bound that
    analysis.evaluate.bound reports and the trainer maximises."""
    m = flat()
    X = m.sample_classes(6, 4, seed=5)
    x, D = X[:, 0], X[:, 1:]
    model = m.vhe(**ENCODERS["imperfect"])
    class_size = 20
    R = 4000
    torch.manual_seed(0)
    with torch.no_grad():
        xr = x.repeat(R, 1)
        b = model.score(
            {"c": D.repeat(R, 1, 1), "z": xr[:, None]},
            {"c": class_size, "z": 1},
            x=xr,
            rescale=rescale,
            reduction="none",
        ).view(R, len(x))
    expected = m.expected_bound(model, x, D, class_size if rescale else D.shape[1])
    _z_check(b, expected, "bound")
    other = m.expected_bound(model, x, D, D.shape[1] if rescale else class_size)
    assert ((other - expected).abs() > 8 * b.double().std(0) / math.sqrt(R)).all()  # the weighting is resolved


# =========================================================================== KL(q(c | D) || p(c))
def test_kl_class_and_the_pipelines_kl_section_match_the_closed_form():
    m = flat()
    X = m.sample_classes(6, 4, seed=6)
    model = m.vhe(**ENCODERS["imperfect"])
    exact = m.kl_c(model, X)
    R = 4000
    torch.manual_seed(0)
    samples = kl_class(model, X.repeat(R, 1, 1), "c", n_samples=1).view(R, len(X))
    se = _z_check(samples, exact, "KL(c)")
    # analysis.evaluate.kl_c_section draws k of the N images per class: k = N uses them all
    torch.manual_seed(0)
    sec = kl_c_section(model, X, k=4, n_samples=R, elem=["z"], seed=0, class_chunk=4)
    assert sec["k_shot"] == 4 and sec["n_classes"] == 6
    assert (torch.tensor(sec["per_class"], dtype=DTYPE) - exact).abs().max() < Z_MAX * se.max()  # same R per class


# =========================================================================== log p(x | D) and classification
def _episode(m, seed=2):
    X = m.sample_classes(5, 3, seed=seed)
    return X[:, :2], X[:, 2]  # 5 classes x 2 shots, one query per class


def _limits(m, model, support, query):
    """The value each classification score converges to as K grows, (Q, W) each, exactly:

    marginal_ratio -> log p(x | D); conditional -> log E_{q(c|D)} p(x | c); symmetric ->
    ½ [log E_{q(c|D)} p(x | c) + log E_{q(c|x)} p(D | c) - log p(D)]; ns_kl -> -KL(q(c|x) || q(c|D)).
    With exact posteriors the conditional limit is log p(x | D) and the symmetric one
    log p(x | D) - ½ log p(x)."""
    W, S = support.shape[:2]
    mD, SD = m.q_c(model, support)
    mx, Sx = m.q_c(model, query[:, None])
    cond = torch.stack([m.log_expected_likelihood(q.expand(W, 1, *q.shape), mD, SD) for q in query])
    rev = torch.stack(
        [m.log_expected_likelihood(support, mx[i].expand(W, -1), Sx[i].expand(W, -1, -1)) for i in range(len(query))]
    )
    kl = torch.stack([kl_mvn(mx[i].expand(W, -1), Sx[i].expand(W, -1, -1), mD, SD) for i in range(len(query))])
    return {
        "marginal_ratio": m.log_conditional_matrix(support, query),
        "conditional": cond,
        "symmetric": 0.5 * (cond + rev - m.log_marginal(support)[None]),
        "ns_kl": -kl,
    }


def test_the_limits_are_the_exact_conditional_with_exact_posteriors_and_differ_without():
    """Sanity of the ground truth itself: the closed forms agree where theory says they must."""
    m = flat()
    support, query = _episode(m)
    exact = m.log_conditional_matrix(support, query)
    lim = _limits(m, m.vhe(), support, query)
    assert torch.allclose(lim["conditional"], exact, atol=1e-9)
    log_px = m.log_marginal(query[:, None])
    assert torch.allclose(lim["symmetric"], exact - 0.5 * log_px[:, None], atol=1e-9)
    bad = _limits(m, m.vhe(**ENCODERS["imperfect"]), support, query)
    assert _mae(bad["conditional"], exact) > 0.3  # the conditional estimator's bias is resolved


@pytest.mark.parametrize("encoders", list(ENCODERS))
@pytest.mark.parametrize("method", ["marginal_ratio", "conditional", "symmetric", "ns_kl"])
def test_classification_scores_converge_to_their_exact_limits(method, encoders):
    m = flat()
    support, query = _episode(m)
    model = m.vhe(**ENCODERS[encoders])
    target = _limits(m, model, support, query)[method]
    if method == "marginal_ratio" and encoders == "exact":  # two exact marginals: exact for any K
        for k in (1, 30):
            torch.manual_seed(1)
            assert _mae(class_scores(model, support, query, method=method, n_samples=k), target) < EXACT_ATOL
        return
    _convergence(lambda k: class_scores(model, support, query, method=method, n_samples=k), target, method)


@pytest.mark.parametrize("method", ["marginal_ratio", "conditional"])
def test_hierarchical_classification_converges_to_the_exact_conditional(method):
    """a and c both inferred from the support set (q(a | D), q(c | D, a)); exact posteriors."""
    m = hier()
    support, query = _episode(m, seed=3)
    model = m.vhe()
    exact = m.log_conditional_matrix(support, query)
    if method == "marginal_ratio":
        torch.manual_seed(0)
        assert _mae(class_scores(model, support, query, method=method, n_samples=1), exact) < EXACT_ATOL
    else:
        _convergence(lambda k: class_scores(model, support, query, method=method, n_samples=k), exact, method)


def test_log_conditional_and_log_predictive_are_the_marginal_ratio_and_conditional_estimators():
    """The single-pair functions agree with the exact conditional where they are exact or consistent."""
    m = flat()
    support, query = _episode(m)
    exact = m.log_conditional(query, support)
    model = m.vhe()
    torch.manual_seed(0)
    assert (log_conditional(model, query, support, n_samples=1).double() - exact).abs().max() < EXACT_ATOL
    torch.manual_seed(0)
    assert _mae(log_predictive(model, query, support, n_samples=K_BIG), exact) < MAE_BIG["conditional"] / 2
    torch.manual_seed(0)
    one = torch.stack([log_predictive(model, query, support, n_samples=1) for _ in range(200)]).double()
    assert (one.mean(0) < exact).all()  # Jensen: one sample is low on average


def test_ns_kl_single_draws_average_to_the_closed_form_kl():
    """ns_kl = mean_s [log q(c_s | D) - log q(c_s | x)], c_s ~ q(c | x): R single-draw scores
    average to -KL(q(c | x) || q(c | D)) within 4 SE (full-covariance Gaussian encoders)."""
    m = flat()
    support, query = _episode(m)
    model = m.vhe(**ENCODERS["imperfect"])
    target = _limits(m, model, support, query)["ns_kl"]
    R = 2000
    torch.manual_seed(0)
    s = class_scores(model, support, query.repeat(R, 1), method="ns_kl", n_samples=1)
    _z_check(s.view(R, -1), target.reshape(-1), "ns_kl")


def test_ns_kl_rule_equals_the_analytic_kl_of_given_diagonal_gaussians():
    """-KL(N(m_x, v_x) || N(m_j, v_j)) = -½ sum [log(v_j / v_x) + (v_x + (m_x - m_j)^2) / v_j - 1],
    written out here, on hand-chosen means and variances."""
    mx, vx = torch.tensor([0.5, -1.0]), torch.tensor([0.25, 2.0])
    m_sup = torch.tensor([[0.5, -1.0], [1.5, 0.0], [-2.0, 3.0]])
    v_sup = torch.tensor([[0.25, 2.0], [1.0, 0.5], [4.0, 4.0]])
    support = torch.cat([m_sup, v_sup.log()], dim=1)[:, None]  # (3 classes, 1 shot, 4)
    query = torch.cat([mx, vx.log()])[None]
    model = VHE(encoder=[DiagonalQc(2)], decoder=DiagonalPx())
    expected = -0.5 * (torch.log(v_sup / vx) + (vx + (mx - m_sup) ** 2) / v_sup - 1).sum(dim=1)
    assert expected[0] == 0 and expected[2] < expected[1] < 0
    R = 20000
    torch.manual_seed(0)
    s = class_scores(model, support, query.repeat(R, 1), method="ns_kl", n_samples=1, per_element=())
    se = _z_check(s, expected.double(), "ns_kl (diagonal)")
    torch.manual_seed(0)
    pred, scores = classify(model, support, query, method="ns_kl", n_samples=K_BIG, per_element=())
    tol = Z_MAX * se * math.sqrt(R / K_BIG) + 1e-6  # the SE of a mean of K_BIG draws
    assert pred.tolist() == [0] and ((scores[0] - expected).abs() <= tol).all(), (scores[0] - expected, tol)


# =========================================================================== shared draws
@pytest.mark.parametrize("encoders", ["exact", "imperfect"])
def test_shared_draws_converge_to_the_same_limits_as_each_estimator_alone(encoders):
    """class_scores_many (one set of draws for the estimators that share a quantity) has each
    estimator's limit: the sharing changes correlations between estimators, not their distribution."""
    m = flat()
    support, query = _episode(m)
    model = m.vhe(**ENCODERS[encoders])
    limits = _limits(m, model, support, query)
    runs = {}
    for k in (1, 30, K_BIG):
        torch.manual_seed(1)
        runs[k] = class_scores_many(model, support, query, CLASSIFY_METHODS, n_samples=k)
    for method in CLASSIFY_METHODS:
        if method == "marginal_ratio" and encoders == "exact":
            assert all(_mae(runs[k][method], limits[method]) < EXACT_ATOL for k in runs)
            continue
        errors = [_mae(runs[k][method], limits[method]) for k in (1, 30, K_BIG)]
        assert errors[2] < errors[1] < errors[0] and errors[2] < MAE_BIG[method], (method, errors)
