"""The spatial-latent family (vhe.nets.spatial): shapes, identity warps at initialisation,
gradients into the localisation nets, PixelCNN causality (decoder and prior), log-probs against
torch.distributions, and the family inside a VHE with vhe.evaluate."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vhe
from vhe.evaluate import class_scores_many, kl_class, log_marginal
from vhe.nets import (
    AffineWarp,
    MultiScaleMap,
    SpatialConvDecoder,
    SpatialGaussianPrior,
    SpatialImageEncoder,
    SpatialPixelCNNDecoder,
    SpatialPixelCNNPrior,
    SpatialSetEncoder,
    SpatialTransformer,
    warp,
)

C, S, Z = 3, 28, 5


def _images(*shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full(shape, p), generator=g)


def _reinit(model: nn.Module, scale: float = 2.0, seed: int = 0) -> nn.Module:
    """Random weights at a larger-than-default scale (no zero-initialised layer, no dead path)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale / math.sqrt(fan_in))
    return model


def _identity_grid_sample(x):
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=x.dtype).expand(len(x), 2, 3)
    return F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)


# --------------------------------------------------------------------------- warps
def test_warp_identity_and_a_shift():
    x = torch.rand(4, 2, S, S)
    torch.testing.assert_close(warp(x, torch.tensor([1.0, 0, 0, 0, 1, 0]).expand(4, 6)), x, rtol=0, atol=1e-5)
    # a translation by 2/S in grid units is one pixel: output[j] = input[j + 1]
    shifted = warp(x, torch.tensor([1.0, 0, 2.0 / S, 0, 1, 0]).expand(4, 6))
    torch.testing.assert_close(shifted[..., :-1], x[..., 1:], rtol=0, atol=1e-5)
    assert shifted[..., -1].abs().max() < 1e-5  # zero padding outside
    with pytest.raises(ValueError, match="affine matrices"):
        warp(x, torch.zeros(3, 2, 3))


def test_spatial_transformer_is_the_identity_at_init():
    torch.manual_seed(0)
    stn = SpatialTransformer(in_channels=1, channels=8, image_size=S)
    x = _images(5, 1, S, S)
    theta = stn.theta(x)
    torch.testing.assert_close(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(5, 2, 3))
    out = stn(x)
    torch.testing.assert_close(out, _identity_grid_sample(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="18x18"):
        SpatialTransformer(image_size=12)


def test_affine_warp_is_the_identity_at_init():
    torch.manual_seed(0)
    w = AffineWarp(Z, hidden=16)
    m, z = torch.randn(3, C, S, S), torch.randn(3, Z)
    torch.testing.assert_close(w(m, z), _identity_grid_sample(m), rtol=0, atol=1e-6)
    torch.testing.assert_close(w(m, z), m, rtol=0, atol=1e-5)


def _grads_after_one_step(module, loss_fn):
    """Grad at init, then after one SGD step (the zero-initialised affine layer blocks the
    localisation net's gradient at init, exactly as in the paper's code)."""
    loss_fn().backward()
    first = {n: p.grad.clone() for n, p in module.named_parameters()}
    with torch.no_grad():
        for p in module.parameters():
            p -= 0.01 * p.grad / (p.grad.norm() + 1e-12)  # a small step: the warp stays near the identity
    module.zero_grad()
    loss_fn().backward()
    return first, {n: p.grad for n, p in module.named_parameters()}


def test_gradients_reach_the_localisation_net():
    torch.manual_seed(0)
    enc = SpatialSetEncoder("c", C, stn_channels=4)
    d = _images(2, 3, 1, S, S)
    target = torch.randn(2, C, S, S)
    first, second = _grads_after_one_step(enc, lambda: -enc(d, c=target)[1].sum())
    assert first["stn.fc.2.weight"].abs().sum() > 0  # the affine layer learns from the first step
    for name in ("stn.localization.0.weight", "stn.localization.3.weight", "stn.fc.0.weight"):
        assert second[name].abs().sum() > 0, name


def test_gradients_reach_the_decoder_warp():
    torch.manual_seed(0)
    dec = SpatialConvDecoder("x", parent_dims={"c": (C, S, S), "z": Z}, channels=8)
    c, z, x = torch.randn(2, C, S, S), torch.randn(2, Z), _images(2, 1, S, S)
    first, second = _grads_after_one_step(dec, lambda: -dec(c, z, x=x)[1].sum())
    assert first["warper.mlp.2.weight"].abs().sum() > 0
    assert second["warper.mlp.0.weight"].abs().sum() > 0


# --------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("k", [1, 4])
def test_set_encoder_shapes_and_log_prob(k):
    torch.manual_seed(0)
    enc = SpatialSetEncoder("c", C, stn_channels=4, feature_channels=6)
    assert enc.vhe_variable == "c" and enc.vhe_parents == () and enc.latent_shape == (C, S, S)
    c, lp = enc(_images(2, k, 1, S, S))
    assert c.shape == (2, C, S, S) and lp.shape == (2,) and torch.isfinite(lp).all() and c.requires_grad
    value = torch.randn(2, C, S, S)
    out, lp = enc(_images(2, k, 1, S, S), c=value)
    assert out is value
    d = enc.distribution(_images(2, k, 1, S, S))
    torch.testing.assert_close(lp, torch.distributions.Normal(d.loc, d.scale).log_prob(value).sum((1, 2, 3)))
    assert (d.scale >= enc.min_scale).all()


def test_set_encoder_is_permutation_invariant_and_takes_vector_parents():
    torch.manual_seed(0)
    enc = SpatialSetEncoder("c", C, parents=("a",), parent_dims={"a": 4}, stn_channels=4)
    assert enc.vhe_parents == ("a",) and enc.parent_dims == {"a": 4}
    d, a = _images(2, 5, 1, S, S), torch.randn(2, 4)
    d1, d2 = enc.distribution(d, a), enc.distribution(d[:, torch.randperm(5)], a)
    torch.testing.assert_close(d1.loc, d2.loc, atol=1e-5, rtol=1e-5)
    other = enc.distribution(d, torch.randn(2, 4))
    assert not torch.allclose(d1.loc, other.loc)  # a matters
    with pytest.raises(ValueError, match=r"a: \(B, 4\)"):
        enc(d)
    with pytest.raises(ValueError, match="inputs must have shape"):
        enc(torch.rand(2, 1, 1, 20, 20), a)
    with pytest.raises(ValueError, match="map parents are not supported"):
        SpatialSetEncoder("c", C, parents=("m",), parent_dims={"m": (2, S, S)})


def test_image_encoder_sees_the_map_parent():
    torch.manual_seed(0)
    enc = SpatialImageEncoder(
        "z", Z, parents=("c",), parent_dims={"c": (C, S, S)}, channels=8, n_conv_layers=2, hidden=16
    )
    assert enc.latent_shape == (Z,) and enc.parent_shapes == {"c": (C, S, S)} and enc.parent_dims == {"c": C * S * S}
    x, c = _images(3, 1, 1, S, S), torch.randn(3, C, S, S)
    z, lp = enc(x, c)
    assert z.shape == (3, Z) and lp.shape == (3,) and torch.isfinite(lp).all()
    assert not torch.allclose(enc.distribution(x, c).loc, enc.distribution(x, torch.randn(3, C, S, S)).loc)
    with pytest.raises(ValueError, match=r"c: \(B, 3, 28, 28\)"):
        enc(x, torch.randn(3, C * S * S))
    with pytest.raises(ValueError, match="per-image"):
        enc(_images(3, 2, 1, S, S), c)
    with pytest.raises(ValueError, match="14x14"):
        SpatialImageEncoder("z", Z, parents=("c",), parent_dims={"c": (C, 14, 14)})
    # vector parents go beside the conv features
    enc2 = SpatialImageEncoder(
        "z", Z, parents=("c", "t"), parent_dims={"c": (C, S, S), "t": 2}, channels=4, n_conv_layers=2, hidden=8
    )
    assert enc2(x, c, torch.randn(3, 2))[0].shape == (3, Z)


# --------------------------------------------------------------------------- decoders
def test_conv_decoder_shapes_log_prob_and_identity_warp():
    torch.manual_seed(0)
    dec = SpatialConvDecoder("x", parent_dims={"c": (C, S, S), "z": Z}, channels=8)
    c, z, x = torch.randn(3, C, S, S), torch.randn(3, Z), _images(3, 1, S, S)
    torch.testing.assert_close(dec.warped(c, z), c, rtol=0, atol=1e-5)  # identity at init
    value, lp = dec(c, z, x=x)
    assert value is x and lp.shape == (3,) and torch.isfinite(lp).all() and (lp < 0).all()
    logits = dec.logits(c, z)
    torch.testing.assert_close(lp, torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3)))
    x2, lp2 = dec(c, z)
    assert x2.shape == (3, 1, S, S) and set(x2.unique().tolist()) <= {0.0, 1.0} and lp2.shape == (3,)
    assert dec.probs(c, z).min() >= 0 and dec.probs(c, z).max() <= 1
    # without a vector parent: no warp
    dec1 = SpatialConvDecoder("x", parents=("c",), parent_dims={"c": (C, S, S)}, channels=4)
    assert dec1.warper is None and dec1(c, x=x)[1].shape == (3,)
    with pytest.raises(ValueError, match="exactly one map parent"):
        SpatialConvDecoder("x", parents=("z",), parent_dims={"z": Z})


def _pixelcnn_decoder(size=12, n_layers=3, kernel=3, seed=0):
    torch.manual_seed(seed)
    m = SpatialPixelCNNDecoder(
        "x",
        parent_dims={"c": (C, size, size), "z": Z},
        image_size=size,
        n_layers=n_layers,
        channels=8,
        kernel_size=kernel,
        cond_channels=4,
        warp_hidden=8,
    )
    _reinit(m.double(), seed=seed)
    _reinit(m.cond_net, scale=0.5, seed=seed + 1)  # a moderate conditioning map: no saturated gates
    return m.eval()


def test_pixelcnn_decoder_shapes_and_log_prob():
    torch.manual_seed(0)
    dec = SpatialPixelCNNDecoder("x", parent_dims={"c": (C, S, S), "z": Z}, n_layers=2, channels=8, cond_channels=4)
    assert dec.vhe_parents == ("c", "z") and dec.parent_dims == {"c": C * S * S, "z": Z}
    assert not hasattr(dec, "cond_fc")  # the vector conditioning net is replaced by the map's
    c, z, x = torch.randn(2, C, S, S), torch.randn(2, Z), _images(2, 1, S, S)
    value, lp = dec(c, z, x=x)
    assert value is x and lp.shape == (2,) and torch.isfinite(lp).all() and (lp < 0).all()
    logits = dec.logits(x, c, z)
    torch.testing.assert_close(
        lp, torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3)), rtol=1e-5, atol=1e-3
    )
    with pytest.raises(ValueError, match=r"c: \(B, 3, 28, 28\), z: \(B, 5\)"):
        dec(torch.randn(2, C * S * S), z, x=x)


@pytest.mark.parametrize("n_layers,kernel", [(1, 3), (3, 3), (2, 5)])
def test_pixelcnn_decoder_is_causal(n_layers, kernel):
    """Flipping pixel p changes no logit (hence no log-prob term) at pixels <= p in raster order,
    and does reach the next pixel."""
    s = 12
    m = _pixelcnn_decoder(s, n_layers, kernel, seed=1)
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((1, 1, s, s), 0.5, dtype=torch.float64), generator=g)
    c = torch.randn(1, C, s, s, dtype=torch.float64, generator=g)
    z = torch.randn(1, Z, dtype=torch.float64, generator=g)
    n = s * s
    reached = []
    with torch.no_grad():
        base = m.logits(x, c, z).flatten(1)
        xs = x.repeat(n, 1, 1, 1)
        xs.view(n, -1)[torch.arange(n), torch.arange(n)] = 1 - xs.view(n, -1)[torch.arange(n), torch.arange(n)]
        diff = (m.logits(xs, c.expand(n, -1, -1, -1), z.expand(n, -1)).flatten(1) - base).abs()
    for p in range(n):
        assert diff[p, : p + 1].max() <= 1e-12, f"pixel {divmod(p, s)} leaks into the logits at or before it"
        i, j = divmod(p, s)  # sanity of the test: the flip does reach the right and lower neighbours
        reached += [bool(diff[p, p + 1] > 1e-9)] if j + 1 < s else []
        reached += [bool(diff[p, p + s] > 1e-9)] if i + 1 < s else []
    assert sum(reached) >= 0.9 * len(reached)


def test_pixelcnn_decoder_sampling_matches_scoring():
    torch.manual_seed(0)
    dec = SpatialPixelCNNDecoder(
        "x", parent_dims={"c": (C, 12, 12), "z": Z}, image_size=12, n_layers=2, channels=8, cond_channels=4
    )
    c, z = torch.randn(2, C, 12, 12), torch.randn(2, Z)
    torch.manual_seed(5)
    x, lp = dec(c, z)
    assert x.shape == (2, 1, 12, 12) and set(x.unique().tolist()) <= {0.0, 1.0} and lp.requires_grad
    torch.testing.assert_close(lp, dec(c, z, x=x)[1])


# --------------------------------------------------------------------------- priors
def test_gaussian_prior_matches_torch_normal():
    torch.manual_seed(0)
    p = SpatialGaussianPrior("c", (C, S, S))
    assert p.latent_shape == (C, S, S) and [n for n, _ in p.named_parameters()] == ["loc", "log_scale"]
    value = torch.randn(4, C, S, S)
    _, lp = p(c=value)
    torch.testing.assert_close(lp, torch.distributions.Normal(0.0, 1.0).log_prob(value).sum((1, 2, 3)))
    with torch.no_grad():
        p.loc.normal_()
        p.log_scale.uniform_(-1, 1)
    _, lp = p(c=value)
    want = torch.distributions.Normal(p.loc, p.log_scale.exp()).log_prob(value).sum((1, 2, 3))
    torch.testing.assert_close(lp, want)
    c, lp = p(batch_size=3)
    assert c.shape == (3, C, S, S) and lp.shape == (3,)
    with pytest.raises(ValueError, match="batch_size"):
        p()
    with pytest.raises(ValueError, match=r"must have shape \(4, 3, 28, 28\)"):
        p(c=torch.randn(4, C * S * S))


def test_gaussian_prior_integrates_to_one_on_a_small_map():
    """A 1x1x1 map: the density integrates to 1 numerically (trapezoid over +-12 sd)."""
    torch.manual_seed(0)
    p = SpatialGaussianPrior("c", (1, 1, 1))
    with torch.no_grad():
        p.loc.fill_(0.7)
        p.log_scale.fill_(-0.4)
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64)
    _, lp = p(c=grid.view(-1, 1, 1, 1).float())
    assert abs(torch.trapezoid(lp.double().exp(), grid).item() - 1.0) < 1e-4


def test_conditional_gaussian_prior_starts_at_its_free_parameters_and_uses_a():
    torch.manual_seed(0)
    p = SpatialGaussianPrior("c", (C, S, S), parents=("a",), parent_dims={"a": 4}, channels=8)
    a, value = torch.randn(3, 4), torch.randn(3, C, S, S)
    _, lp = p(a, c=value)
    torch.testing.assert_close(lp, torch.distributions.Normal(0.0, 1.0).log_prob(value).sum((1, 2, 3)))
    lp.sum().backward()
    assert p.parent_net.up[-1].weight.grad.abs().sum() > 0  # learns from the first step
    _reinit(p.parent_net)
    d1, d2 = p.distribution(a), p.distribution(torch.randn(3, 4))
    assert not torch.allclose(d1.loc, d2.loc)
    c, lp = p(a)
    assert c.shape == (3, C, S, S) and lp.shape == (3,)
    torch.testing.assert_close(lp, d1.log_prob(c).sum((1, 2, 3)))


def _pixelcnn_prior(shape=(2, 8, 8), parents=(), n_layers=3, kernel=3, seed=0, double=True):
    torch.manual_seed(seed)
    dims = {"a": 3} if parents else None
    p = SpatialPixelCNNPrior(
        "c",
        shape,
        parents=parents,
        parent_dims=dims,
        n_layers=n_layers,
        channels=8,
        kernel_size=kernel,
        cond_channels=4,
    )
    p = _reinit(p.double() if double else p, scale=1.0, seed=seed)
    return p.eval()


def test_pixelcnn_prior_is_standard_normal_at_init():
    torch.manual_seed(0)
    p = SpatialPixelCNNPrior("c", (C, S, S), n_layers=2, channels=8)
    value = torch.randn(3, C, S, S)
    _, lp = p(c=value)
    torch.testing.assert_close(lp, torch.distributions.Normal(0.0, 1.0).log_prob(value).sum((1, 2, 3)))
    lp.sum().backward()
    assert p.head[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("parents", [(), ("a",)])
def test_pixelcnn_prior_log_prob_matches_torch_normal(parents):
    p = _pixelcnn_prior(parents=parents)
    g = torch.Generator().manual_seed(3)
    value = torch.randn(4, 2, 8, 8, dtype=torch.float64, generator=g)
    ps = [torch.randn(4, 3, dtype=torch.float64, generator=g)] if parents else []
    _, lp = p(*ps, c=value)
    mean, log_std = p.params(value, *ps)
    want = torch.distributions.Normal(mean, log_std.clamp(-7, 2).exp()).log_prob(value).sum((1, 2, 3))
    torch.testing.assert_close(lp, want)
    assert torch.isfinite(lp).all()


@pytest.mark.parametrize("n_layers,kernel", [(1, 3), (3, 3), (2, 5)])
def test_pixelcnn_prior_is_causal(n_layers, kernel):
    """Perturbing every channel of position p changes no mean/log-std at positions <= p."""
    p = _pixelcnn_prior(n_layers=n_layers, kernel=kernel)
    _, h, w = p.latent_shape
    n = h * w
    g = torch.Generator().manual_seed(1)
    value = torch.randn(1, 2, h, w, dtype=torch.float64, generator=g)
    with torch.no_grad():
        base = torch.cat(p.params(value), dim=1).flatten(2)  # (1, 4, n)
        vs = value.repeat(n, 1, 1, 1).view(n, 2, n)
        vs[torch.arange(n), :, torch.arange(n)] += 1.5
        out = torch.cat(p.params(vs.view(n, 2, h, w)), dim=1).flatten(2)
        diff = (out - base).abs().amax(dim=1)  # (n, n)
    for q in range(n):
        assert diff[q, : q + 1].max() <= 1e-12, f"position {divmod(q, w)} leaks into its own or earlier parameters"
    right = [q for q in range(n) if q % w + 1 < w]
    below = list(range(n - w))
    assert (diff[right, [q + 1 for q in right]] > 1e-9).float().mean() > 0.9
    assert (diff[below, [q + w for q in below]] > 1e-9).float().mean() > 0.9


@pytest.mark.parametrize("parents", [(), ("a",)])
def test_pixelcnn_prior_sampling_matches_scoring(parents):
    """Samples, standardised by the teacher-forced conditionals evaluated on the sample itself,
    are N(0, 1): the sampler follows the model's conditionals in raster order."""
    p = _pixelcnn_prior(shape=(2, 8, 8), parents=parents, double=False)
    torch.manual_seed(7)
    ps = [torch.randn(64, 3)] if parents else []
    c, lp = p(*ps, batch_size=None if parents else 64)
    assert c.shape == (64, 2, 8, 8) and lp.shape == (64,) and torch.isfinite(lp).all()
    mean, log_std = p.params(c, *ps)
    eps = ((c - mean) / log_std.clamp(-7, 2).exp()).flatten()
    assert abs(eps.mean().item()) < 0.05 and abs(eps.std().item() - 1.0) < 0.05
    torch.testing.assert_close(lp, p(*ps, c=c)[1])
    if not parents:
        with pytest.raises(ValueError, match="batch_size"):
            p()


def test_multiscale_map_shapes():
    m = MultiScaleMap(C, 8, 5)
    assert m(torch.randn(2, C, S, S)).shape == (2, 5, S, S)
    assert m(torch.randn(2, C, 12, 12)).shape == (2, 5, 12, 12)


# --------------------------------------------------------------------------- in a VHE
def _spatial_vhe(decoder="conv", prior="gaussian"):
    torch.manual_seed(0)
    enc_c = SpatialSetEncoder("c", C, stn_channels=4)
    enc_z = SpatialImageEncoder(
        "z", Z, parents=("c",), parent_dims={"c": (C, S, S)}, channels=4, n_conv_layers=2, hidden=8
    )
    dims = {"c": (C, S, S), "z": Z}
    dec = (
        SpatialConvDecoder("x", parent_dims=dims, channels=4)
        if decoder == "conv"
        else SpatialPixelCNNDecoder("x", parent_dims=dims, n_layers=2, channels=4, cond_channels=2)
    )
    pri = (
        SpatialGaussianPrior("c", (C, S, S))
        if prior == "gaussian"
        else SpatialPixelCNNPrior("c", (C, S, S), n_layers=1, channels=4)
    )
    return vhe.VHE(encoder=[enc_c, enc_z], decoder=dec, prior=[pri])


@pytest.mark.parametrize("decoder,prior", [("conv", "gaussian"), ("pixelcnn", "pixelcnn")])
def test_in_a_vhe_scores_trains_and_evaluates(decoder, prior):
    model = _spatial_vhe(decoder, prior)
    X = _images(3, 4, 1, S, S)
    bound, kl = model.score(
        {"c": X[:, :3], "z": X[:, 3:]}, {"c": torch.full((3,), 20.0), "z": torch.ones(3)}, x=X[:, 3], return_kl=True
    )
    assert torch.isfinite(bound) and set(kl) == {"c", "z"}
    (-bound).backward()
    grads = [n for n, p in model.named_parameters() if p.grad is None and not n.endswith("layers.1.cond_v.weight")]
    assert not grads, grads
    # vhe.evaluate with a spatial class latent: log_marginal (K=2), the estimators, KL(c)
    lm = log_marginal(model, X[:1, :3], n_samples=2)
    assert lm.shape == (1,) and torch.isfinite(lm).all()
    scores = class_scores_many(model, X[:2, :1], X[:2, 0], n_samples=2)
    assert all(s.shape == (2, 2) and torch.isfinite(s).all() for s in scores.values())
    kl_c = kl_class(model, X[:2, :2], n_samples=2)
    assert kl_c.shape == (2,) and (kl_c > 0).all()
    if decoder == "conv":
        assert model.sample(inputs={"c": X[:2, :1]}).shape == (2, 1, S, S)


def test_bf16_autocast_keeps_log_probs_in_float32():
    model = _spatial_vhe("conv", "gaussian")
    X = _images(2, 3, 1, S, S)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c, lq = model.encoder["c"](X[:, :2])
        _, lp = model.prior["c"](c=c)
        z, _ = model.encoder["z"](X[:, 2:], c)
        _, lx = model.decoder(c, z, x=X[:, 2])
    assert lq.dtype == lp.dtype == lx.dtype == torch.float32
    assert torch.isfinite(lq + lp + lx).all()
