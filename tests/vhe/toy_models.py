"""Small modules shared by the library tests: linear-Gaussian models whose likelihood is exact."""

import math

import torch
from torch import nn
from torch.distributions import Normal

SIGMA = 0.5  # observation noise of the linear-Gaussian class model


class Px(nn.Module):
    """p(x | c, z) = N(x; W [c; z] + b, sigma^2) -- the seed README's decoder."""

    def __init__(self, c_dim=2, z_dim=2, x_dim=2):
        super().__init__()
        self.linear = nn.Linear(c_dim + z_dim, x_dim)
        self.log_sigma = nn.Parameter(torch.zeros(x_dim))

    def forward(self, c, z, x=None):
        mu = self.linear(torch.cat([c, z], dim=1))
        dist = Normal(mu, self.log_sigma.clamp(-4, 3).exp().expand_as(mu))
        if x is None:
            x = dist.rsample()
        return x, dist.log_prob(x).sum(dim=1)


class Qc(nn.Module):
    """q(c | D): Gaussian with mean and scale linear in the mean of D."""

    def __init__(self, x_dim=2, c_dim=2):
        super().__init__()
        self.linear = nn.Linear(x_dim, c_dim)
        self.log_sigma = nn.Parameter(torch.zeros(c_dim))
        self.latent_shape = (c_dim,)

    def forward(self, inputs, c=None):
        mu = self.linear(inputs.mean(dim=1))
        dist = Normal(mu, self.log_sigma.clamp(-4, 3).exp().expand_as(mu))
        if c is None:
            c = dist.rsample()
        return c, dist.log_prob(c).sum(dim=1)


class Qz(nn.Module):
    """q(z | x, c)."""

    def __init__(self, x_dim=2, c_dim=2, z_dim=2):
        super().__init__()
        self.linear = nn.Linear(x_dim + c_dim, z_dim)
        self.log_sigma = nn.Parameter(torch.zeros(z_dim))
        self.latent_shape = (z_dim,)

    def forward(self, inputs, c, z=None):
        mu = self.linear(torch.cat([inputs[:, 0], c], dim=1))
        dist = Normal(mu, self.log_sigma.clamp(-4, 3).exp().expand_as(mu))
        if z is None:
            z = dist.rsample()
        return z, dist.log_prob(z).sum(dim=1)


class LinearPx(nn.Module):
    """p(x | c) = N(x; c, SIGMA^2 I): with c ~ N(0, I) the class marginal is Gaussian, exactly."""

    def forward(self, c, x=None):
        dist = Normal(c, SIGMA)
        if x is None:
            x = dist.sample()
        return x, dist.log_prob(x).sum(dim=1)


class ScaledQc(nn.Module):
    """q(c | D) = N(a * sum(D), s^2): a = 1/(N + SIGMA^2), s^2 = SIGMA^2/(N + SIGMA^2) is exact."""

    def __init__(self, a=0.3, log_s=-0.5, dim=2):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.log_s = nn.Parameter(torch.tensor(float(log_s)))
        self.latent_shape = (dim,)

    def forward(self, inputs, c=None):
        dist = Normal(self.a * inputs.sum(dim=1), self.log_s.exp().expand(inputs.shape[0], inputs.shape[2]))
        if c is None:
            c = dist.rsample()
        return c, dist.log_prob(c).sum(dim=1)


def exact_posterior_qc(n, dim=2):
    """The exact q(c | X) of the linear-Gaussian model for classes of n elements."""
    prec = 1 + n / SIGMA**2
    return ScaledQc(a=(1 / SIGMA**2) / prec, log_s=-0.5 * math.log(prec), dim=dim)


def exact_log_marginal(X):
    """log p(X) of the linear-Gaussian class model, X: (B, N, d) -> (B,) nats per class."""
    B, N, d = X.shape
    cov = torch.ones(N, N, dtype=torch.float64) + SIGMA**2 * torch.eye(N, dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(N, dtype=torch.float64), cov)
    # dimensions are independent: each coordinate's N values are jointly Gaussian
    return mvn.log_prob(X.double().transpose(1, 2)).sum(dim=1).float()


def sample_classes(n_classes, n, dim=2, seed=0):
    """X (n_classes, n, dim) from the linear-Gaussian model."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n_classes, 1, dim, generator=g)
    return c + SIGMA * torch.randn(n_classes, n, dim, generator=g)
