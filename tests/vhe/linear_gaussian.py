"""Linear-Gaussian VHEs whose likelihoods, posteriors and bounds are known in closed form.

Ground truth for the estimators of :mod:`vhe.evaluate` (tests/vhe/test_evaluate_exact.py). Two
models, both built from public modules with the public :class:`vhe.VHE` constructor:

* flat (the class-structured graph c -> x <- z):
      c ~ N(0, I),  z_i ~ N(0, I),  x_i = W c + V z_i + s e_i,  e_i ~ N(0, I)
* hierarchical (the hierarchical experiment's graph a -> c -> x <- z):
      a ~ N(0, I),  c | a ~ N(U a, tau^2 I),  then z_i and x_i as above.

For a class X = {x_1..x_n} the stacked vector (x_1; ..; x_n) is Gaussian with zero mean and
covariance blocks W C W^T + V V^T + s^2 I on the diagonal and W C W^T off it (C = Cov(c): I, or
U U^T + tau^2 I), so log p(X), log p(x | D) = log p(D ∪ {x}) - log p(D) and every posterior are
exact linear algebra in float64. Several characters of one alphabet (the hierarchical model) are
jointly Gaussian too: images of one character covary by W (U U^T + tau^2 I) W^T, of two characters
of the alphabet by W U U^T W^T, so log p(X | C) = log p(C ∪ {X}) - log p(C) for a new character X
and a context C of other characters is exact (:meth:`LinearGaussian.log_given_context`), as is
p(a | C) (:class:`ContextAEncoder`, the proposal of vhe.evaluate.log_marginal_given_context).

The encoders are proper Gaussians, by default the exact posteriors
q(c | X) = p(c | X) (or q(a | X) = p(a | X), q(c | X, a) = p(c | X, a)) and q(z | x, c) = p(z | x, c);
``mean_scale`` != 1 and ``cov_scale`` != 1 make them deliberately imperfect (mean shrunk, covariance
inflated), so that the importance weights vary and K matters. q(z | x, c) is linear in (x, c)
(mean B x + C c, covariance S), which the closed-form ELBO and bound below use.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal

import vhe

DTYPE = torch.float64


def _t(a) -> torch.Tensor:
    return torch.as_tensor(a, dtype=DTYPE)


def _mvn(mean: torch.Tensor, cov: torch.Tensor) -> MultivariateNormal:
    return MultivariateNormal(mean, scale_tril=torch.linalg.cholesky(cov))


def kl_mvn(m0, S0, m1, S1) -> torch.Tensor:
    """KL(N(m0, S0) || N(m1, S1)) in nats for (..., d) means and (d, d) or (..., d, d) covariances."""
    d = m0.shape[-1]
    S1inv = torch.linalg.inv(S1)
    diff = (m1 - m0).unsqueeze(-1)
    return 0.5 * (
        torch.einsum("...ij,...ji->...", S1inv, S0.expand(*m0.shape[:-1], d, d))
        + (diff.transpose(-1, -2) @ S1inv @ diff)[..., 0, 0]
        - d
        + torch.logdet(S1)
        - torch.logdet(S0)
    )


# --------------------------------------------------------------------------- modules
class Decoder(nn.Module):
    """p(x | c, z) = N(W c + V z, s^2 I)."""

    def __init__(self, W, V, s):
        super().__init__()
        self.register_buffer("W", _t(W))
        self.register_buffer("V", _t(V))
        self.s = float(s)

    def forward(self, c, z, x=None):
        dist = Normal(c @ self.W.T + z @ self.V.T, self.s)
        if x is None:
            x = dist.sample()
        return x, dist.log_prob(x).sum(dim=1)


class ConditionalPrior(nn.Module):
    """p(c | a) = N(U a, tau^2 I)."""

    def __init__(self, U, tau):
        super().__init__()
        self.register_buffer("U", _t(U))
        self.tau = float(tau)

    def forward(self, a, c=None):
        dist = Normal(a @ self.U.T, self.tau)
        if c is None:
            c = dist.sample()
        return c, dist.log_prob(c).sum(dim=1)


class _GaussianEncoder(nn.Module):
    """Samples (reparameterised) or scores a full-covariance Gaussian (mean (B, d), cov (B, d, d) or (d, d))."""

    def _out(self, mean, cov, value):
        dist = _mvn(mean, cov)
        if value is None:
            value = dist.rsample()
        return value, dist.log_prob(value)


class ZEncoder(_GaussianEncoder):
    """q(z | x, c) = N(ms * S V^T (x - W c) / s^2, cs * S), S = (I + V^T V / s^2)^-1: the exact
    posterior p(z | x, c) when ms = cs = 1."""

    def __init__(self, model: "LinearGaussian", mean_scale=1.0, cov_scale=1.0):
        super().__init__()
        self.m = model
        self.mean_scale, self.cov_scale = float(mean_scale), float(cov_scale)
        self.latent_shape = (model.dz,)

    def linear(self):
        """(B, C, S): q(z | x, c) = N(B x + C c, S)."""
        m = self.m
        S = torch.linalg.inv(torch.eye(m.dz, dtype=DTYPE) + m.V.T @ m.V / m.s**2)
        B = self.mean_scale * S @ m.V.T / m.s**2
        return B, -B @ m.W, self.cov_scale * S

    def forward(self, inputs, c, z=None):
        B, C, S = self.linear()
        return self._out(inputs[:, 0] @ B.T + c @ C.T, S, z)


class CEncoder(_GaussianEncoder):
    """q(c | D) (flat model) or q(c | D, a) (hierarchical, parent a): the exact posterior given the
    |D| elements of D (z marginalised: x_i | c ~ N(W c, V V^T + s^2 I)), mean times ``mean_scale``,
    covariance times ``cov_scale``."""

    def __init__(self, model: "LinearGaussian", mean_scale=1.0, cov_scale=1.0):
        super().__init__()
        self.m = model
        self.mean_scale, self.cov_scale = float(mean_scale), float(cov_scale)
        self.latent_shape = (model.dc,)

    def posterior(self, D, prior_mean, prior_prec):
        m = self.m
        n = D.shape[1]
        Sz_inv = torch.linalg.inv(m.sigma_given_c())
        P = prior_prec + n * m.W.T @ Sz_inv @ m.W
        cov = torch.linalg.inv(P)
        mean = (prior_mean @ prior_prec.T + D.sum(dim=1) @ (Sz_inv @ m.W)) @ cov.T
        return self.mean_scale * mean, self.cov_scale * cov

    def _forward(self, inputs, a, c):
        m = self.m
        if a is None:
            prior_mean = torch.zeros(inputs.shape[0], m.dc, dtype=DTYPE)
            prior_prec = torch.eye(m.dc, dtype=DTYPE)
        else:
            prior_mean = a @ m.U.T
            prior_prec = torch.eye(m.dc, dtype=DTYPE) / m.tau**2
        mean, cov = self.posterior(inputs, prior_mean, prior_prec)
        return self._out(mean, cov, c)


class FlatCEncoder(CEncoder):
    def forward(self, inputs, c=None):
        return self._forward(inputs, None, c)


class HierCEncoder(CEncoder):
    def forward(self, inputs, a, c=None):
        return self._forward(inputs, a, c)


class AEncoder(_GaussianEncoder):
    """q(a | D): the exact p(a | D) of the hierarchical model (c and z marginalised), scaled."""

    def __init__(self, model: "LinearGaussian", mean_scale=1.0, cov_scale=1.0):
        super().__init__()
        self.m = model
        self.mean_scale, self.cov_scale = float(mean_scale), float(cov_scale)
        self.latent_shape = (model.da,)

    def forward(self, inputs, a=None):
        m = self.m
        n = inputs.shape[1]
        # X | a ~ N((1 ⊗ W U) a, blocks tau^2 W W^T (+ V V^T + s^2 I on the diagonal))
        G = (m.W @ m.U).repeat(n, 1)  # (n dx, da)
        SX = m.class_cov(n, cov_c=m.tau**2 * torch.eye(m.dc, dtype=DTYPE))
        SX_inv = torch.linalg.inv(SX)
        cov = torch.linalg.inv(torch.eye(m.da, dtype=DTYPE) + G.T @ SX_inv @ G)
        mean = inputs.reshape(inputs.shape[0], -1) @ (SX_inv @ G) @ cov.T
        return self._out(self.mean_scale * mean, self.cov_scale * cov, a)


class ContextAEncoder(_GaussianEncoder):
    """q(a | C) for a context C (B, M, dx) of M / ``group`` characters with ``group`` images each
    (consecutive): the exact p(a | C) (c and z of every character marginalised), scaled. With
    group = M (one character) it is :class:`AEncoder`."""

    def __init__(self, model: "LinearGaussian", group: int, mean_scale=1.0, cov_scale=1.0):
        super().__init__()
        self.m, self.group = model, int(group)
        self.mean_scale, self.cov_scale = float(mean_scale), float(cov_scale)
        self.latent_shape = (model.da,)

    def forward(self, inputs, a=None):
        mean, cov = self.m.a_posterior(inputs, self.group)
        return self._out(self.mean_scale * mean, self.cov_scale * cov, a)


# --------------------------------------------------------------------------- the model
class LinearGaussian:
    """Parameters, exact quantities and :class:`vhe.VHE` instances of the linear-Gaussian models.

    ``hierarchical=True`` adds the alphabet latent a (p(c | a) = N(U a, tau^2 I)).
    """

    def __init__(self, dc=2, dz=2, dx=3, s=0.6, hierarchical=False, da=2, tau=0.5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.dc, self.dz, self.dx, self.da = dc, dz, dx, da
        self.s, self.tau, self.hierarchical = float(s), float(tau), bool(hierarchical)
        self.W = torch.randn(dx, dc, generator=g, dtype=DTYPE)
        self.V = 0.7 * torch.randn(dx, dz, generator=g, dtype=DTYPE)
        self.U = torch.randn(dc, da, generator=g, dtype=DTYPE) if hierarchical else None

    # ---- covariances
    def cov_c(self) -> torch.Tensor:
        """Cov(c) with a marginalised: I (flat) or U U^T + tau^2 I."""
        if not self.hierarchical:
            return torch.eye(self.dc, dtype=DTYPE)
        return self.U @ self.U.T + self.tau**2 * torch.eye(self.dc, dtype=DTYPE)

    def sigma_given_c(self) -> torch.Tensor:
        """Cov(x_i | c) = V V^T + s^2 I."""
        return self.V @ self.V.T + self.s**2 * torch.eye(self.dx, dtype=DTYPE)

    def class_cov(self, n, cov_c=None) -> torch.Tensor:
        """Cov of (x_1; ..; x_n) (n dx, n dx): W C W^T everywhere plus V V^T + s^2 I on the diagonal blocks."""
        C = self.cov_c() if cov_c is None else cov_c
        shared = self.W @ C @ self.W.T
        return shared.repeat(n, n) + torch.block_diag(*[self.sigma_given_c()] * n)

    # ---- exact quantities
    def log_marginal(self, X) -> torch.Tensor:
        """log p(X) for X (B, n, dx) -> (B,) nats per class, float64."""
        B, n, dx = X.shape
        return _mvn(torch.zeros(n * dx, dtype=DTYPE), self.class_cov(n)).log_prob(X.reshape(B, n * dx).to(DTYPE))

    def log_conditional(self, x, D) -> torch.Tensor:
        """log p(x | D) = log p(D ∪ {x}) - log p(D); x (B, dx), D (B, k, dx) -> (B,)."""
        return self.log_marginal(torch.cat([D, x[:, None]], dim=1)) - self.log_marginal(D)

    def log_conditional_matrix(self, support, query) -> torch.Tensor:
        """log p(x_q | D_j) for every query and class: (Q, W)."""
        W = support.shape[0]
        return torch.stack([self.log_conditional(q.expand(W, *q.shape), support) for q in query])

    def log_expected_likelihood(self, X, m, S) -> torch.Tensor:
        """log E_{c ~ N(m, S)} p(X | c) = log ∫ N(c; m, S) prod_i p(x_i | c) dc (z marginalised), exactly.

        X (B, n, dx), m (B, dc), S (B, dc, dc) -> (B,). With (m, S) the exact posterior given D this
        is log p(X | D); with an encoder's q(c | D) it is the limit of the conditional estimator."""
        B, n, dx = X.shape
        G = self.W.repeat(n, 1)  # (n dx, dc)
        cov = G @ S @ G.T + torch.block_diag(*[self.sigma_given_c()] * n)
        return _mvn(m @ G.T, cov).log_prob(X.reshape(B, n * dx).to(DTYPE))

    # ---- alphabets: several characters sharing a (hierarchical model)
    def alphabet_cov(self, sizes, given_a: bool = False) -> torch.Tensor:
        """Cov of the stacked images of characters of one alphabet with ``sizes`` images each:
        W (U U^T + tau^2 I) W^T within a character, W U U^T W^T between two, V V^T + s^2 I more on the
        diagonal blocks; ``given_a``: the covariance given a (U U^T drops out: tau^2 W W^T within,
        0 between)."""
        assert self.hierarchical
        between = torch.zeros(self.dx, self.dx, dtype=DTYPE) if given_a else self.W @ self.U @ self.U.T @ self.W.T
        within = between + self.tau**2 * self.W @ self.W.T
        n, d = int(sum(sizes)), self.dx
        cov = between.repeat(n, n)
        i = 0
        for k in sizes:
            cov[i * d : (i + k) * d, i * d : (i + k) * d] = within.repeat(k, k)
            i += k
        return cov + torch.block_diag(*[self.sigma_given_c()] * n)

    def log_alphabet(self, sets) -> torch.Tensor:
        """log p(all the characters of ``sets`` jointly, one alphabet per row): sets = [(B, n_j, dx)] -> (B,)."""
        Y = torch.cat(list(sets), dim=1).to(DTYPE)
        sizes = [t.shape[1] for t in sets]
        return _mvn(torch.zeros(Y.shape[1] * self.dx, dtype=DTYPE), self.alphabet_cov(sizes)).log_prob(
            Y.reshape(Y.shape[0], -1)
        )

    def log_given_context(self, X, context_sets) -> torch.Tensor:
        """log p(X | C) = log p(C ∪ {X}) - log p(C): X (B, n, dx) one character, C the characters
        ``context_sets`` [(B, n_j, dx)] of the same alphabet; (B,)."""
        return self.log_alphabet(list(context_sets) + [X]) - self.log_alphabet(list(context_sets))

    def a_posterior(self, C, group: int):
        """(mean (B, da), cov (da, da)) of p(a | C), C (B, M, dx) = M / group characters of ``group``
        consecutive images: C | a ~ N((1 ⊗ W U) a, alphabet_cov(given_a=True))."""
        B, M = C.shape[:2]
        if M % group:
            raise ValueError(f"a context of {M} images is not made of characters of {group} images")
        G = (self.W @ self.U).repeat(M, 1)
        SX_inv = torch.linalg.inv(self.alphabet_cov([group] * (M // group), given_a=True))
        cov = torch.linalg.inv(torch.eye(self.da, dtype=DTYPE) + G.T @ SX_inv @ G)
        mean = C.reshape(B, -1).to(DTYPE) @ (SX_inv @ G) @ cov.T
        return mean, cov

    def log_expected_likelihood_a(self, X, m, S) -> torch.Tensor:
        """log E_{a ~ N(m, S)} p(X | a) for one character X (B, n, dx) (c and z marginalised), exactly;
        m (B, da), S (da, da) or (B, da, da). With (m, S) = p(a | C) this is log p(X | C); with an
        encoder's q(a | C) it is the limit of vhe.evaluate.log_marginal_given_context."""
        B, n, _ = X.shape
        G = (self.W @ self.U).repeat(n, 1)
        cov = G @ S @ G.T + self.class_cov(n, cov_c=self.tau**2 * torch.eye(self.dc, dtype=DTYPE))
        return _mvn(m @ G.T, cov).log_prob(X.reshape(B, -1).to(DTYPE))

    def sample_alphabets(self, n_alphabets, n_chars, n, seed=0) -> torch.Tensor:
        """(n_alphabets, n_chars, n, dx): characters c_j = U a + tau e_j of one a per alphabet, n images each."""
        assert self.hierarchical
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(n_alphabets, 1, self.da, generator=g, dtype=DTYPE)
        c = a @ self.U.T + self.tau * torch.randn(n_alphabets, n_chars, self.dc, generator=g, dtype=DTYPE)
        z = torch.randn(n_alphabets, n_chars, n, self.dz, generator=g, dtype=DTYPE)
        e = torch.randn(n_alphabets, n_chars, n, self.dx, generator=g, dtype=DTYPE)
        return (c @ self.W.T)[:, :, None] + z @ self.V.T + self.s * e

    # ---- the VHE
    def vhe(
        self,
        mean_scale=1.0,
        cov_scale=1.0,
        z_mean_scale=None,
        z_cov_scale=None,
        a_mean_scale=None,
        a_cov_scale=None,
        context_group=None,
    ) -> vhe.VHE:
        """The VHE with (optionally imperfect) encoders; the z encoder (and, hierarchical, the a encoder)
        takes its own scales when given. ``context_group``: q(a | ·) is :class:`ContextAEncoder` for
        sets of characters of that many images (the exact p(a | C) of a context), else :class:`AEncoder`."""
        zms = mean_scale if z_mean_scale is None else z_mean_scale
        zcs = cov_scale if z_cov_scale is None else z_cov_scale
        qz = ZEncoder(self, zms, zcs)
        dec = Decoder(self.W, self.V, self.s)
        if not self.hierarchical:
            return vhe.VHE(encoder=[FlatCEncoder(self, mean_scale, cov_scale), qz], decoder=dec)
        ams = mean_scale if a_mean_scale is None else a_mean_scale
        acs = cov_scale if a_cov_scale is None else a_cov_scale
        qa = AEncoder(self, ams, acs) if context_group is None else ContextAEncoder(self, context_group, ams, acs)
        return vhe.VHE(
            encoder=[qa, HierCEncoder(self, mean_scale, cov_scale), qz],
            decoder=dec,
            prior=[ConditionalPrior(self.U, self.tau)],
        )

    def sample_classes(self, n_classes, n, seed=0) -> torch.Tensor:
        """X (n_classes, n, dx) drawn from the model."""
        g = torch.Generator().manual_seed(seed)
        c = torch.randn(n_classes, self.dc, generator=g, dtype=DTYPE)
        if self.hierarchical:
            a = torch.randn(n_classes, self.da, generator=g, dtype=DTYPE)
            c = a @ self.U.T + self.tau * c
        z = torch.randn(n_classes, n, self.dz, generator=g, dtype=DTYPE)
        e = torch.randn(n_classes, n, self.dx, generator=g, dtype=DTYPE)
        return (c @ self.W.T)[:, None] + z @ self.V.T + self.s * e

    # ---- closed-form bounds of the flat model (q(c) Gaussian, q(z | x, c) linear-Gaussian)
    def _expected_terms(self, model: vhe.VHE, x, m_c, S_c):
        """E_q[log p(x | c, z)] and E_q[KL(q(z | x, c) || p(z))] for targets x (B, dx) under
        c ~ N(m_c (B, dc), S_c (B, dc, dc)), z ~ q(z | x, c): both (B,)."""
        Bz, Cz, Sz = model.encoder["z"].linear()
        mu_z = x @ Bz.T + m_c @ Cz.T  # E[mean of z]
        A = self.W + self.V @ Cz  # W c + V (B x + C c) = A c + V B x
        mean_x = m_c @ A.T + (x @ Bz.T) @ self.V.T
        cov_x = A @ S_c @ A.T + self.V @ Sz @ self.V.T  # Cov(W c + V z)
        d = self.dx
        e_log_px = (
            -0.5 * d * math.log(2 * math.pi * self.s**2)
            - 0.5 * ((x - mean_x) ** 2).sum(-1) / self.s**2
            - 0.5 * torch.einsum("bii->b", cov_x) / self.s**2
        )
        e_mu2 = (mu_z**2).sum(-1) + torch.einsum("bii->b", Cz @ S_c @ Cz.T)
        e_kl_z = 0.5 * (torch.trace(Sz) + e_mu2 - self.dz - torch.logdet(Sz))
        return e_log_px, e_kl_z

    def _q_c(self, model: vhe.VHE, D):
        enc = model.encoder["c"]
        m = torch.zeros(D.shape[0], self.dc, dtype=DTYPE)
        mean, cov = enc.posterior(D, m, torch.eye(self.dc, dtype=DTYPE))
        return mean, cov.expand(D.shape[0], self.dc, self.dc)

    def elbo(self, model: vhe.VHE, X) -> torch.Tensor:
        """E_q[log w] for the flat model: -KL(q(c | X) || p(c)) + sum_i E[log p(x_i | c, z_i) - KL_z(x_i, c)]; (B,)."""
        assert not self.hierarchical
        B, n, _ = X.shape
        m_c, S_c = self._q_c(model, X)
        kl_c = kl_mvn(m_c, S_c, torch.zeros_like(m_c), torch.eye(self.dc, dtype=DTYPE))
        total = -kl_c
        for i in range(n):
            e_log_px, e_kl_z = self._expected_terms(model, X[:, i], m_c, S_c)
            total = total + e_log_px - e_kl_z
        return total

    def expected_bound(self, model: vhe.VHE, x, D, class_size) -> torch.Tensor:
        """E[model.score(...)] with rescale=True: E[log p(x | c, z)] - KL(q(c | D) || p(c)) / |X|
        - E[KL(q(z | x, c) || p(z))], c ~ q(c | D); x (B, dx), D (B, k, dx) -> (B,)."""
        assert not self.hierarchical
        m_c, S_c = self._q_c(model, D)
        kl_c = kl_mvn(m_c, S_c, torch.zeros_like(m_c), torch.eye(self.dc, dtype=DTYPE))
        e_log_px, e_kl_z = self._expected_terms(model, x, m_c, S_c)
        return e_log_px - kl_c / class_size - e_kl_z

    def kl_c(self, model: vhe.VHE, D) -> torch.Tensor:
        """KL(q(c | D) || p(c)) of the flat model's encoder, exactly; (B,)."""
        m_c, S_c = self._q_c(model, D)
        return kl_mvn(m_c, S_c, torch.zeros_like(m_c), torch.eye(self.dc, dtype=DTYPE))

    def q_c(self, model: vhe.VHE, D):
        """(mean (B, dc), cov (B, dc, dc)) of the flat model's q(c | D)."""
        return self._q_c(model, D)


class DiagonalQc(nn.Module):
    """q(c | D) = N(mean over D of its first d coordinates, diag(exp(mean over D of the last d)));
    a set's element *is* (mean; log variance), so tests give q's means and variances directly."""

    def __init__(self, d=2):
        super().__init__()
        self.d = d
        self.latent_shape = (d,)

    def forward(self, inputs, c=None):
        mean = inputs[..., : self.d].mean(dim=1)
        std = (0.5 * inputs[..., self.d :].mean(dim=1)).exp()
        dist = Normal(mean, std)
        if c is None:
            c = dist.rsample()
        return c, dist.log_prob(c).sum(dim=1)


class DiagonalPx(nn.Module):
    """p(x | c) = N((c; 0), I) over 2d coordinates (only needed to make a VHE around DiagonalQc)."""

    def forward(self, c, x=None):
        mean = torch.cat([c, torch.zeros_like(c)], dim=1)
        dist = Normal(mean, 1.0)
        if x is None:
            x = dist.sample()
        return x, dist.log_prob(x).sum(dim=1)
