"""Gated PixelCNN decoder: causality, no blind spot, exact likelihood, sampling, fitting."""

import math

import pytest
import torch
from torch import nn

from vhe.nets import PixelCNNDecoder


def _reinit(model: nn.Module, scale: float = 2.0, seed: int = 0) -> nn.Module:
    """Random weights at a larger-than-default scale so no path is accidentally ~0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale / math.sqrt(fan_in))
    return model


def _model(n_layers, channels, kernel, size, first_kernel=None, conditional=True, seed=0):
    torch.manual_seed(seed)
    parents = ("c", "z") if conditional else ()
    dims = {"c": 5, "z": 3} if conditional else None
    m = PixelCNNDecoder(
        parents=parents,
        parent_dims=dims,
        image_size=size,
        n_layers=n_layers,
        channels=channels,
        kernel_size=kernel,
        first_kernel_size=first_kernel,
        cond_channels=4,
    )
    return _reinit(m.double(), seed=seed).eval()


def _parents(m, b, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g, dtype=torch.float64) for d in m.parent_dims.values()]


def _check_causal_by_perturbation(m, positions, seed=0):
    """Flipping x at p changes no logit at positions <= p (raster order), and some later one."""
    s = m.image_size
    g = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((1, 1, s, s), 0.5, dtype=torch.float64), generator=g)
    c1 = _parents(m, 1)
    reached = []
    with torch.no_grad():
        base = m.logits(x, *c1).flatten(1)  # (1, S*S)
        for chunk in torch.split(torch.as_tensor(positions), 64):
            n = len(chunk)
            xs = x.repeat(n, 1, 1, 1)
            xs.view(n, -1)[torch.arange(n), chunk] = 1 - xs.view(n, -1)[torch.arange(n), chunk]
            out = m.logits(xs, *[c.expand(n, -1) for c in c1]).flatten(1)
            diff = (out - base).abs()
            for r, p in enumerate(chunk.tolist()):
                assert diff[r, : p + 1].max().item() <= 1e-12, (
                    f"pixel {divmod(p, s)} leaks into logits at or before it "
                    f"(first leak at {divmod(int((diff[r, : p + 1] > 1e-12).nonzero()[0]), s)})"
                )
                # sanity of the test: the perturbation does reach the right and lower neighbours
                # (counted, since a random head can have all ReLUs dead at some pixel)
                i, j = divmod(p, s)
                if j + 1 < s:
                    reached.append(diff[r, p + 1].item() > 1e-9)
                if i + 1 < s:
                    reached.append(diff[r, p + s].item() > 1e-9)
    assert sum(reached) >= 0.9 * len(reached), (
        f"perturbations rarely reach the neighbours ({sum(reached)}/{len(reached)})"
    )


SMALL_CONFIGS = [(n, k) for n in (1, 2, 5) for k in (3, 5, 7)]


@pytest.mark.parametrize("n_layers,kernel", SMALL_CONFIGS)
def test_causality_every_pixel_small_configs(n_layers, kernel):
    m = _model(n_layers, 8, kernel, size=12)
    _check_causal_by_perturbation(m, list(range(12 * 12)))


# configurations of the kind the experiment configs use (n_layers 3..12, channels 16..64)
LIKELY_CONFIGS = [
    # n_layers, channels, kernel, first_kernel, image_size
    (3, 16, 5, None, 28),
    (6, 32, 5, 7, 28),
    (6, 32, 3, None, 28),
    (8, 48, 7, None, 16),
    (12, 64, 5, 7, 16),
]


@pytest.mark.parametrize("n_layers,channels,kernel,first,size", LIKELY_CONFIGS)
def test_causality_sampled_pixels_likely_configs(n_layers, channels, kernel, first, size):
    m = _model(n_layers, channels, kernel, size, first_kernel=first)
    g = torch.Generator().manual_seed(n_layers)
    n = size * size
    # 50 random positions plus the corners/edges where padding bugs show up
    positions = set(torch.randperm(n, generator=g)[:50].tolist())
    positions |= {0, 1, size - 1, size, n - size, n - 2, n - 1}
    _check_causal_by_perturbation(m, sorted(positions))


def _dependency_mask(m, i, j, batch=4):
    """Boolean (S, S): which input pixels the logit at (i, j) has a nonzero gradient on."""
    s = m.image_size
    x = torch.bernoulli(torch.full((batch, 1, s, s), 0.5, dtype=torch.float64)).requires_grad_(True)
    m.logits(x, *_parents(m, batch))[:, 0, i, j].sum().backward()
    return x.grad.abs().sum(0)[0] > 0


@pytest.mark.parametrize("n_layers,kernel,first", [(1, 3, None), (3, 3, None), (4, 5, None), (3, 3, 7)])
def test_receptive_field_is_exact_with_no_blind_spot(n_layers, kernel, first):
    """The logit at (i, j) depends on exactly: the full rectangle of rows i-1-R..i-1 and
    columns j-R..j+R (R = total vertical reach), and row i, columns j-R'-1..j-1 -- i.e. no
    blind spot above-right, nothing at or after (i, j)."""
    torch.manual_seed(0)
    m = _model(n_layers, 8, kernel, size=20, first_kernel=first)
    halves = [(first or kernel) // 2] + [kernel // 2] * (n_layers - 1)
    reach = sum(halves)
    for i, j in [(10, 10), (10, 1), (1, 18), (19, 19), (0, 5)]:
        got = _dependency_mask(m, i, j)
        want = torch.zeros_like(got)
        want[max(0, i - 1 - reach) : i, max(0, j - reach) : j + reach + 1] = True
        want[i, max(0, j - reach - 1) : j] = True
        assert torch.equal(got, want), f"dependency pattern of ({i},{j}) is wrong:\n{got.int()}\nexpected\n{want.int()}"


def test_no_blind_spot_above_right_and_left_neighbour():
    m = _model(5, 16, 3, size=16)
    s = m.image_size
    x = torch.bernoulli(torch.full((2, 1, s, s), 0.5, dtype=torch.float64)).requires_grad_(True)
    i, j = 8, 8
    m.logits(x, *_parents(m, 2))[:, 0, i, j].sum().backward()
    grad = x.grad.abs().sum(0)[0]
    for di, dj in [(-1, 1), (-1, 2), (-1, 4), (-2, 3), (-1, 0), (-1, -1), (0, -1), (0, -3)]:
        assert grad[i + di, j + dj] > 0, f"no dependence on offset {(di, dj)}"
    assert grad[i, j] == 0 and grad[i, j + 1 :].sum() == 0 and grad[i + 1 :].sum() == 0


def test_incremental_row_logits_match_full_logits():
    """Sampling evaluates row i from a cropped window of rows above plus the row itself;
    it must equal the full-image logits."""
    m = _model(4, 8, 5, size=20, first_kernel=7)
    x = torch.bernoulli(torch.full((2, 1, 20, 20), 0.5, dtype=torch.float64))
    c = _parents(m, 2)
    with torch.no_grad():
        full = m.logits(x, *c)
        cond = m.conditioning(*c)
        for i in range(20):
            x_hidden = x.clone()
            x_hidden[:, :, i:] = 0.0  # rows >= i are not known yet while sampling row i
            links, cond_row = m._row_context(x_hidden, cond, i)
            row = m._row_logits(x[:, :, i : i + 1], links, cond_row)
            torch.testing.assert_close(row, full[:, :, i], rtol=0, atol=1e-12)


def test_log_prob_is_sum_of_independent_bernoullis():
    torch.manual_seed(0)
    m = PixelCNNDecoder(parents=("c",), parent_dims={"c": 6}, image_size=12, n_layers=3, channels=8)
    c = torch.randn(3, 6)
    x = torch.bernoulli(torch.full((3, 1, 12, 12), 0.3))
    value, lp = m(c, x=x)
    assert value is x and lp.shape == (3,)
    logits = m.logits(x, c)
    manual = torch.zeros(3)
    for i in range(12):
        for j in range(12):
            manual += torch.distributions.Bernoulli(logits=logits[:, 0, i, j]).log_prob(x[:, 0, i, j])
    torch.testing.assert_close(lp, manual, rtol=1e-5, atol=1e-4)
    assert (lp < 0).all()


def test_shapes_multichannel_and_unconditional():
    torch.manual_seed(0)
    m = PixelCNNDecoder(parents=(), image_size=8, n_layers=2, channels=8, out_channels=3)
    x = torch.bernoulli(torch.full((3, 3, 8, 8), 0.5))
    v, lp = m(x=x)
    assert v is x and lp.shape == (3,)
    v, lp = m(batch_size=2)
    assert v.shape == (2, 3, 8, 8) and lp.shape == (2,)
    with pytest.raises(ValueError, match="batch_size"):
        m()


def test_sampling_binary_shape_and_deterministic_under_seed():
    torch.manual_seed(0)
    m = PixelCNNDecoder(parents=("c", "z"), parent_dims={"c": 4, "z": 2}, n_layers=2, channels=8)
    c, z = torch.randn(2, 4), torch.randn(2, 2)
    torch.manual_seed(123)
    x1, lp1 = m(c, z)
    torch.manual_seed(123)
    x2, lp2 = m(c, z)
    assert x1.shape == (2, 1, 28, 28) and lp1.shape == (2,)
    assert set(x1.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x1, x2) and torch.equal(lp1, lp2)
    assert lp1.requires_grad  # the returned log_prob is differentiable w.r.t. the parameters
    _, lp_scored = m(c, z, x=x1)
    torch.testing.assert_close(lp1, lp_scored)


def test_sampler_follows_the_model_conditionals():
    """With near-deterministic conditionals each sampled pixel must equal sign(logit) of the
    teacher-forced logits evaluated on the sample itself (checks order and conditioning)."""
    m = _model(3, 8, 3, size=12).float()
    c = [p.float() for p in _parents(m, 3)]
    with torch.no_grad():  # centre the logits, then make them large
        m.head[-1].bias.zero_()
        m.head[-1].bias.sub_(m.logits(torch.bernoulli(torch.full((3, 1, 12, 12), 0.5)), *c).median())
        m.head[-1].weight.mul_(200.0)
        m.head[-1].bias.mul_(200.0)
    torch.manual_seed(0)
    x = m.sample(*c)
    logits = m.logits(x, *c)
    confident = logits.abs() > 15
    assert confident.float().mean() > 0.9
    assert torch.equal(x[confident], (logits[confident] > 0).float())
    assert x.std() > 0  # not a trivial constant image


def test_fits_a_tiny_dataset():
    torch.manual_seed(0)
    s = 16
    imgs = torch.zeros(4, 1, s, s)
    imgs[0, :, 3:12, 4:7] = 1  # bar
    imgs[1, :, 5:8, 2:14] = 1  # horizontal bar
    imgs[2, :, 2:14, 2:14] = torch.eye(12)  # diagonal
    imgs[3, :, 4:12, 4:12] = 1
    imgs[3, :, 6:10, 6:10] = 0  # ring
    codes = torch.eye(4)
    m = PixelCNNDecoder(parents=("c",), parent_dims={"c": 4}, image_size=s, n_layers=3, channels=16, kernel_size=5)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    with torch.no_grad():
        start = -m(codes, x=imgs)[1].mean().item()
    for _ in range(150):
        opt.zero_grad()
        loss = -m(codes, x=imgs)[1].mean()
        loss.backward()
        opt.step()
    end = -m(codes, x=imgs)[1].mean().item()
    assert start > 100 and end < 0.15 * start, (start, end)


def test_errors():
    m = PixelCNNDecoder(parents=("c", "z"), parent_dims={"c": 4, "z": 2}, image_size=8, n_layers=1, channels=4)
    c, z = torch.randn(3, 4), torch.randn(3, 2)
    x = torch.zeros(3, 1, 8, 8)
    with pytest.raises(ValueError, match="expects 2 parent"):
        m(c, x=x)
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        m(c, torch.randn(3, 5), x=x)
    with pytest.raises(ValueError, match="shape"):
        m(c, z, x=torch.zeros(3, 1, 8, 9))
    with pytest.raises(TypeError, match="unexpected keyword"):
        m(c, z, x=x, y=1)
    with pytest.raises(ValueError, match="odd"):
        PixelCNNDecoder(parents=(), image_size=8, kernel_size=4)
    with pytest.raises(ValueError, match="multiple of 4"):
        PixelCNNDecoder(parents=(), image_size=10)


# ----------------------------------------------------------------------- global conditioning
def _global_model(global_parents=("z",), seed=0, size=12):
    torch.manual_seed(seed)
    m = PixelCNNDecoder(
        parents=("c", "z"),
        parent_dims={"c": 5, "z": 3},
        image_size=size,
        n_layers=3,
        channels=6,
        kernel_size=3,
        cond_channels=4,
        global_parents=global_parents,
    )
    return _reinit(m.double(), seed=seed).eval()


@pytest.mark.parametrize("global_parents", [("z",), ("c", "z")])
def test_global_parents_keep_causality_and_row_sampling_exact(global_parents):
    m = _global_model(global_parents)
    s = m.image_size
    _check_causal_by_perturbation(m, list(range(s * s)))
    x = torch.bernoulli(torch.full((2, 1, s, s), 0.5, dtype=torch.float64))
    c = _parents(m, 2)
    with torch.no_grad():
        full, cond = m.logits(x, *c), m.conditioning(*c)
        for i in range(s):
            links, cond_row = m._row_context(x, cond, i)
            torch.testing.assert_close(
                m._row_logits(x[:, :, i : i + 1], links, cond_row), full[:, :, i], rtol=0, atol=1e-12
            )


def test_a_global_parent_reaches_every_layer_and_the_first_pixel():
    """The global parent's values are constant channels of the conditioning map, read by every
    gated layer's 1x1 conditioning convolutions; the spatial map comes from the other parents only."""
    m = _global_model(("z",))
    assert m.map_channels == 4 and m.cond_channels == 4 + 3
    assert m.cond_fc.in_features == 5  # c only
    assert all(layer.cond_v.in_channels == m.cond_channels for layer in m.layers)
    x = torch.zeros(1, 1, m.image_size, m.image_size, dtype=torch.float64)
    c, z = _parents(m, 1)
    with torch.no_grad():
        cond = m.conditioning(c, z)
        torch.testing.assert_close(cond[:, 4:], z[:, :, None, None].expand(-1, -1, m.image_size, m.image_size))
        first = m.logits(x, c, z)[0, 0, 0, 0]
        assert (m.logits(x, c, z + 1.0)[0, 0, 0, 0] - first).abs() > 1e-6  # before any pixel is drawn
    only = PixelCNNDecoder(
        parents=("t",), parent_dims={"t": 2}, image_size=8, n_layers=1, channels=4, global_parents=("t",)
    )
    assert only.map_channels == 0 and not hasattr(only, "cond_fc") and only.cond_channels == 2
    with pytest.raises(ValueError, match=r"global_parents \['t'\] are not parents"):
        PixelCNNDecoder(parents=("c",), parent_dims={"c": 2}, image_size=8, global_parents=("t",))


def test_a_decoder_must_use_a_global_style_to_draw_the_right_texture():
    """Few shapes x two textures (horizontal / vertical stripes, at random phase): a decoder given
    the style t only as a global input learns to draw the texture t names. Swapping t swaps the
    stripes' orientation of its samples (measured by the share of equal vertical vs horizontal
    neighbours in the inked area)."""
    torch.manual_seed(0)
    s = 12
    shapes = torch.zeros(3, s, s)
    shapes[0, 2:10, 2:10] = 1
    shapes[1, 1:11, 4:8] = 1
    shapes[2, 4:8, 1:11] = 1
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")

    def batch(n, g):
        k = torch.randint(0, 3, (n,), generator=g)
        t = torch.randint(0, 2, (n,), generator=g)
        phase = torch.randint(0, 2, (n, 1, 1), generator=g)
        stripes = torch.where(t[:, None, None] == 0, (yy + phase) % 2, (xx + phase) % 2).float()
        return (shapes[k] * stripes)[:, None], torch.eye(3)[k], torch.eye(2)[t]

    m = PixelCNNDecoder(
        parents=("c", "t"), parent_dims={"c": 3, "t": 2}, image_size=s, n_layers=3, channels=16,
        kernel_size=3, cond_channels=2, global_parents=("t",),
    )  # fmt: skip
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(250):
        x, c, t = batch(32, g)
        opt.zero_grad()
        (-m(c, t, x=x)[1].mean()).backward()
        opt.step()

    def orientation(x):  # > 0: horizontal stripes (rows equal along x), < 0: vertical
        ink = shapes.amax(0).bool()
        same_h = (x[..., :, 1:] == x[..., :, :-1])[..., ink[:, 1:] & ink[:, :-1]].float().mean()
        same_v = (x[..., 1:, :] == x[..., :-1, :])[..., ink[1:, :] & ink[:-1, :]].float().mean()
        return (same_h - same_v).item()

    torch.manual_seed(2)
    c = torch.eye(3)[torch.arange(24) % 3]
    horizontal = orientation(m.sample(c, torch.eye(2)[[0] * 24]))  # t = 0: stripes along rows
    vertical = orientation(m.sample(c, torch.eye(2)[[1] * 24]))
    assert horizontal > 0.3 and vertical < -0.3, (horizontal, vertical)
