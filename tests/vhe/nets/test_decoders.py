"""Deconvolutional Bernoulli decoder p(x | parents)."""

import pytest
import torch

from vhe.nets import DeconvDecoder


@pytest.mark.parametrize("dims", [{"c": 64, "z": 16}, {"c": 3, "z": 1}])
def test_shapes_sample_and_probs(dims):
    torch.manual_seed(0)
    d = DeconvDecoder(parents=("c", "z"), parent_dims=dims, hidden=32, channels=16)
    assert d.vhe_variable == "x" and d.vhe_parents == ("c", "z")
    c, z = torch.randn(3, dims["c"]), torch.randn(3, dims["z"])
    x, lp = d(c, z, x=None)
    assert x.shape == (3, 1, 28, 28) and lp.shape == (3,)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    p = d.probs(c, z)
    assert p.shape == (3, 1, 28, 28) and (p >= 0).all() and (p <= 1).all()


def test_log_prob_matches_torch_bernoulli():
    torch.manual_seed(0)
    d = DeconvDecoder(parents=("c",), parent_dims={"c": 5}, hidden=16, channels=8)
    c = torch.randn(3, 5)
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.2))
    out, lp = d(c, x=x)
    assert out is x
    manual = torch.distributions.Bernoulli(logits=d.logits(c)).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(lp, manual)
    lp.sum().backward()
    assert all(p.grad is not None for p in d.parameters())


def test_other_sizes_and_channels():
    d = DeconvDecoder(parents=("c",), parent_dims={"c": 4}, out_channels=3, image_size=16, hidden=16, channels=8)
    x, lp = d(torch.randn(2, 4))
    assert x.shape == (2, 3, 16, 16) and lp.shape == (2,)


def test_errors():
    d = DeconvDecoder(parent_dims={"c": 4, "z": 2}, hidden=16, channels=8)
    c, z = torch.randn(3, 4), torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"expects 2 parent.*c: \(B, 4\), z: \(B, 2\)"):
        d(c)
    with pytest.raises(ValueError, match=r"'z' must have shape \(3, 2\)"):
        d(c, torch.randn(3, 3))
    with pytest.raises(TypeError, match="unexpected keyword"):
        d(c, z, y=None)
    with pytest.raises(ValueError, match="must have shape"):
        d(c, z, x=torch.zeros(3, 28, 28))
    with pytest.raises(ValueError):
        DeconvDecoder(parents=(), parent_dims=None)
    with pytest.raises(ValueError, match="multiple of 4"):
        DeconvDecoder(parent_dims={"c": 4, "z": 2}, image_size=30)


def test_fits_a_tiny_dataset():
    torch.manual_seed(0)
    imgs = torch.zeros(4, 1, 28, 28)
    for i in range(4):
        imgs[i, :, 4 + 4 * i : 10 + 4 * i, 5:20] = 1
    d = DeconvDecoder(parents=("c",), parent_dims={"c": 4}, hidden=32, channels=16)
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    start = -d(torch.eye(4), x=imgs)[1].mean().item()
    for _ in range(100):
        opt.zero_grad()
        loss = -d(torch.eye(4), x=imgs)[1].mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.15 * start
