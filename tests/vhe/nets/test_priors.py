"""Conditional Gaussian prior p(variable | parents)."""

import pytest
import torch

from vhe.nets import GaussianConditionalPrior


def test_shapes_and_log_prob_against_torch_normal():
    torch.manual_seed(0)
    p = GaussianConditionalPrior("c", 6, parents=("a",), parent_dims={"a": 4}, hidden=32)
    assert p.vhe_variable == "c" and p.vhe_parents == ("a",) and p.latent_shape == (6,)
    a = torch.randn(3, 4)
    c, lp = p(a, c=None)
    assert c.shape == (3, 6) and lp.shape == (3,) and c.requires_grad
    value = torch.randn(3, 6)
    out, lp = p(a, c=value)
    assert out is value
    d = p.distribution(a)
    torch.testing.assert_close(lp, torch.distributions.Normal(d.loc, d.scale).log_prob(value).sum(-1))
    lp.sum().backward()
    assert p.mlp[0].weight.grad.abs().sum() > 0


def test_two_parents_of_various_dims():
    p = GaussianConditionalPrior("c", 2, parents=("a", "b"), parent_dims={"a": 1, "b": 9}, hidden=8)
    c, lp = p(torch.randn(3, 1), torch.randn(3, 9))
    assert c.shape == (3, 2) and lp.shape == (3,)


def test_unconditional_prior_is_learnable_standard_normal_at_init():
    p = GaussianConditionalPrior("c", 3)
    value = torch.randn(4, 3)
    _, lp = p(c=value)
    torch.testing.assert_close(lp, torch.distributions.Normal(0.0, 1.0).log_prob(value).sum(-1))
    c, lp = p(batch_size=5)
    assert c.shape == (5, 3) and lp.shape == (5,)
    assert [n for n, _ in p.named_parameters()] == ["params"]
    with pytest.raises(ValueError, match="batch_size"):
        p()


def test_errors():
    p = GaussianConditionalPrior("c", 6, parents=("a",), parent_dims={"a": 4}, hidden=8)
    with pytest.raises(ValueError, match=r"expects 1 parent.*a: \(B, 4\)"):
        p(c=torch.randn(3, 6))
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        p(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        p(torch.randn(2, 4), c=torch.randn(3, 6))
    with pytest.raises(ValueError, match=r"must have shape \(3, 6\)"):
        p(torch.randn(3, 4), c=torch.randn(3, 5))
    with pytest.raises(TypeError, match="unexpected keyword"):
        p(torch.randn(3, 4), a=torch.randn(3, 4))
