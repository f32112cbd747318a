"""Gaussian set / image encoders and the ConvFeatures trunk."""

import pytest
import torch

from vhe.nets import ConvFeatures, GaussianImageEncoder, GaussianSetEncoder


def _set(b, k, s=28, c=1):
    return torch.bernoulli(torch.full((b, k, c, s, s), 0.3))


def test_conv_features_shape():
    f = ConvFeatures(in_channels=1, channels=8, n_layers=4, out_dim=20, image_size=28)
    assert f(torch.rand(5, 1, 28, 28)).shape == (5, 20)
    f = ConvFeatures(in_channels=3, channels=8, n_layers=3, out_dim=7, image_size=16, batch_norm=True)
    assert f(torch.rand(2, 3, 16, 16)).shape == (2, 7)
    with pytest.raises(ValueError):
        ConvFeatures(n_layers=1)
    with pytest.raises(ValueError):
        ConvFeatures(image_size=30)


@pytest.mark.parametrize("k", [1, 7])
@pytest.mark.parametrize("parents", [(), ("a",), ("a", "b")])
def test_set_encoder_shapes(k, parents):
    dims = {"a": 5, "b": 2}
    enc = GaussianSetEncoder(
        "c", 6, parents=parents, parent_dims={p: dims[p] for p in parents} or None, hidden=32, channels=8
    )
    assert enc.vhe_variable == "c" and enc.vhe_parents == parents and enc.latent_shape == (6,)
    ps = [torch.randn(3, dims[p]) for p in parents]
    c, lp = enc(_set(3, k), *ps, c=None)
    assert c.shape == (3, 6) and lp.shape == (3,)
    c2, lp2 = enc(_set(3, k), *ps)  # value omitted entirely
    assert c2.shape == (3, 6) and lp2.shape == (3,)


def test_set_encoder_permutation_invariant():
    torch.manual_seed(0)
    enc = GaussianSetEncoder("c", 4, parents=("a",), parent_dims={"a": 3}, hidden=32, channels=8)
    d, a = _set(3, 7), torch.randn(3, 3)
    perm = torch.randperm(7)
    q1, q2 = enc.distribution(d, a), enc.distribution(d[:, perm], a)
    torch.testing.assert_close(q1.loc, q2.loc)
    torch.testing.assert_close(q1.scale, q2.scale)
    # and it does depend on the contents of the set
    assert not torch.allclose(q1.loc, enc.distribution(_set(3, 7), a).loc)
    enc_max = GaussianSetEncoder("c", 4, hidden=16, channels=8, pool="max")
    torch.testing.assert_close(enc_max.distribution(d).loc, enc_max.distribution(d[:, perm]).loc)


def test_set_encoder_scores_given_value_against_torch_normal():
    torch.manual_seed(0)
    enc = GaussianSetEncoder("c", 5, hidden=32, channels=8)
    d = _set(3, 4)
    value = torch.randn(3, 5)
    out, lp = enc(d, c=value)
    assert out is value
    q = enc.distribution(d)
    manual = torch.distributions.Normal(q.loc, q.scale).log_prob(value).sum(-1)
    torch.testing.assert_close(lp, manual)
    assert q.scale.log().min() >= -7 - 1e-5 and q.scale.log().max() <= 2 + 1e-5


def test_log_std_is_clamped():
    enc = GaussianSetEncoder("c", 3, hidden=16, channels=8, logstd_range=(-1.0, 0.5))
    with torch.no_grad():
        enc.mlp[-1].bias[3:] = 100.0
    assert torch.allclose(enc.distribution(_set(2, 1)).scale, torch.tensor(0.5).exp())


def test_rsample_gradients_reach_encoder_parameters():
    torch.manual_seed(0)
    enc = GaussianSetEncoder("c", 4, hidden=16, channels=8)
    c, lp = enc(_set(3, 2))
    assert c.requires_grad
    (c**2).sum().backward()
    grads = [p.grad for p in enc.parameters()]
    assert all(g is not None for g in grads)
    assert enc.features.convs[0].weight.grad.abs().sum() > 0


def test_image_encoder():
    torch.manual_seed(0)
    enc = GaussianImageEncoder("z", 3, parents=("c",), parent_dims={"c": 6}, hidden=16, channels=8)
    assert enc.vhe_variable == "z" and enc.vhe_parents == ("c",)
    x, c = _set(3, 1), torch.randn(3, 6)
    z, lp = enc(x, c, z=None)
    assert z.shape == (3, 3) and lp.shape == (3,)
    z0 = torch.randn(3, 3)
    out, lp = enc(x, c, z=z0)
    assert out is z0
    q = enc.distribution(x, c)
    torch.testing.assert_close(lp, torch.distributions.Normal(q.loc, q.scale).log_prob(z0).sum(-1))
    with pytest.raises(ValueError, match=r"\(B, 1, C, S, S\)"):
        enc(_set(3, 2), c)


def test_encoder_errors():
    enc = GaussianSetEncoder("c", 4, parents=("a",), parent_dims={"a": 3}, hidden=16, channels=8)
    d = _set(3, 2)
    with pytest.raises(ValueError, match=r"expects 1 parent.*a: \(B, 3\)"):
        enc(d)
    with pytest.raises(ValueError, match="expects 1 parent"):
        enc(d, torch.randn(3, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        enc(d, torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        enc(d, torch.randn(2, 3))  # batch mismatch
    with pytest.raises(TypeError, match="unexpected keyword.*'z'"):
        enc(d, torch.randn(3, 3), z=None)
    with pytest.raises(ValueError, match="inputs must have shape"):
        enc(torch.rand(3, 1, 28, 28), torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"must have shape \(3, 4\)"):
        enc(d, torch.randn(3, 3), c=torch.randn(3, 5))
    with pytest.raises(ValueError, match="parent_dims"):
        GaussianSetEncoder("c", 4, parents=("a",))
    with pytest.raises(ValueError, match="do not match"):
        GaussianSetEncoder("c", 4, parents=("a",), parent_dims={"b": 3})
    with pytest.raises(ValueError, match="pool"):
        GaussianSetEncoder("c", 4, pool="median")


def test_parent_dims_as_sequence_and_other_image_sizes():
    enc = GaussianSetEncoder(
        "c", 2, parents=("a", "b"), parent_dims=[3, 1], in_channels=3, image_size=16, hidden=16, channels=8
    )
    assert enc.parent_dims == {"a": 3, "b": 1}
    c, lp = enc(torch.rand(2, 5, 3, 16, 16), torch.randn(2, 3), torch.randn(2, 1))
    assert c.shape == (2, 2) and lp.shape == (2,)


def test_modules_plug_into_the_vhe_library():
    """The explicit vhe_variable / vhe_parents declarations are what vhe.VHE reads."""
    vhe = pytest.importorskip("vhe")
    from vhe.nets import DeconvDecoder

    torch.manual_seed(0)
    qc = GaussianSetEncoder("c", 8, hidden=16, channels=8)
    qz = GaussianImageEncoder("z", 2, parents=("c",), parent_dims={"c": 8}, hidden=16, channels=8)
    px = DeconvDecoder(parents=("c", "z"), parent_dims={"c": 8, "z": 2}, hidden=16, channels=8)
    model = vhe.VHE(encoder=[qc, qz], decoder=px)
    x = _set(3, 1)[:, 0]
    bound = model.score(inputs={"c": _set(3, 5), "z": x[:, None]}, sizes={"c": 20, "z": 1}, x=x)
    assert bound.dim() == 0 and torch.isfinite(bound)
    bound.backward()
    assert qc.features.convs[0].weight.grad is not None
    assert model.sample(batch_size=2).shape == (2, 1, 28, 28)
