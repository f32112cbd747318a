"""analysis.factorial's diagnostics on hand-built factorial models whose use of t is known.

A tiny factorial VHE cannot be trained here in seconds, so the models are built by hand from the
public vhe.VHE constructor (encoders q(c | D), q(t | D), q(z | x, c, t), decoder p(x | c, t, z)) on a
small textured set (6 block-shaped characters x 4 procedural textures):

* ``copy``: q(t | D) recognises the texture of D (a one-hot of the texture classifier's answer) and
  the decoder renders the character silhouette of c in t's texture: the texture follows t.
* ``ignore``: q(t | D) = p(t) = N(0, I) (t collapsed) and the decoder's texture is a function of z:
  the texture ignores t.
* ``leak``: c carries the row image's texture as well as its silhouette, the decoder renders c's
  texture: the texture leaks through c.

Each diagnostic must tell them apart: the t-swap test (~100% for copy, at chance and never changing
for ignore and leak), the row-texture share (~100% for leak, ~0 for copy), the KL of t (0 exactly
when q(t | D) is the prior, large when t is used); and the texture classifier's robustness to flipped
pixels on real images.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Normal

import vhe
from analysis.factorial import (
    _cells,
    flip_pixels,
    grid_bootstrap,
    latent_kls,
    row_texture_leak,
    support_sets,
    t_swap_test,
    texture_robustness,
)
from analysis.structured_common import fit_logistic, texture_features
from vhe.data import OmniglotSet, procedural_textures, textured_omniglot

N_TEX, N_CHARS, PER_CHAR, H = 4, 6, 8, 28


def _shapes() -> OmniglotSet:
    """N_CHARS characters, each a filled block of its own size and place (2 drawings, shifted by a pixel)."""
    boxes = [(3, 3, 16, 20), (10, 2, 26, 14), (4, 12, 24, 26), (2, 6, 12, 24), (14, 4, 26, 24), (6, 6, 22, 16)]
    images, character = [], []
    for c, (y0, x0, y1, x1) in enumerate(boxes):
        for d in range(2):
            im = torch.zeros(1, H, H, dtype=torch.uint8)
            im[0, y0 + d : y1 + d, x0:x1] = 1
            images.append(im)
            character.append(c)
    n = len(images)
    return OmniglotSet(
        images=torch.stack(images),
        character=torch.tensor(character),
        alphabet=torch.zeros(n, dtype=torch.int64),
        drawer=torch.arange(n) % 2,
        character_names=[f"c{i}" for i in range(N_CHARS)],
        alphabet_names=["A0"],
    )


@pytest.fixture(scope="module")
def data():
    tex = procedural_textures(N_TEX)
    s = textured_omniglot(_shapes(), tex, PER_CHAR, seed=0, dilate=0)
    predict = fit_logistic(texture_features(s.images), s.texture, N_TEX)
    return s, tex, predict


# --------------------------------------------------------------------------- the hand-built models
def _normal(mean, std, value):
    dist = Normal(mean, std)
    if value is None:
        value = dist.sample()
    return value, dist.log_prob(value).flatten(1).sum(dim=1)


class _TextureOf(nn.Module):
    """The texture id of every image of a batch of sets (B, k, 1, H, W) -> (B,), by the texture classifier
    (majority over the set)."""

    def __init__(self, predict):
        super().__init__()
        self.predict = predict

    def forward(self, D):
        B, k = D.shape[:2]
        ids = self.predict(texture_features(D.reshape(B * k, 1, H, H).cpu())).view(B, k)
        return ids.mode(dim=1).values.to(D.device)


class QT(nn.Module):
    """q(t | D): N(4 one-hot(texture of D), 0.1^2) (``informative``) or N(0, I) = p(t) (collapsed)."""

    def __init__(self, predict, informative: bool):
        super().__init__()
        self.texture_of, self.informative = _TextureOf(predict), informative
        self.latent_shape = (N_TEX,)

    def forward(self, inputs, t=None):
        if not self.informative:
            zeros = torch.zeros(inputs.shape[0], N_TEX, device=inputs.device)
            return _normal(zeros, 1.0, t)
        mean = 4.0 * F.one_hot(self.texture_of(inputs), N_TEX).float()
        return _normal(mean, 0.1, t)


class QC(nn.Module):
    """q(c | D): the silhouette of D's character (its ink closed by a 3x3 max-pool, majority over D),
    and with ``leak`` also 4 one-hot(texture of D); N(that, 0.05^2)."""

    def __init__(self, predict, leak: bool):
        super().__init__()
        self.texture_of, self.leak = _TextureOf(predict), leak
        self.latent_shape = (H * H + (N_TEX if leak else 0),)

    def forward(self, inputs, c=None):
        B, k = inputs.shape[:2]
        ink = F.max_pool2d(inputs.reshape(B * k, 1, H, H).float(), 3, stride=1, padding=1).view(B, k, -1)
        mean = (ink.mean(dim=1) > 0.5).float()
        if self.leak:
            mean = torch.cat([mean, 4.0 * F.one_hot(self.texture_of(inputs), N_TEX).float()], dim=1)
        return _normal(mean, 0.05, c)


class QZ(nn.Module):
    """q(z | x, c, t) = N(0, I) = p(z): z only carries the texture offset (and, ignore, the texture)."""

    latent_shape = (2,)

    def forward(self, inputs, c, t, z=None):
        return _normal(torch.zeros(inputs.shape[0], 2, device=inputs.device), 1.0, z)


class Decoder(nn.Module):
    """p(x | c, t, z): Bernoulli(0.01 + 0.98 * silhouette(c) AND texture crop); the texture is argmax t
    (``copy``), c's texture part (``leak``) or a function of z (``ignore``); the crop offset comes from z."""

    def __init__(self, tiles, mode: str):
        super().__init__()
        self.register_buffer("tiles", tiles.float())
        self.mode = mode

    def probs(self, c, t, z):
        u = torch.special.ndtr(z).clamp(0, 1 - 1e-6)
        if self.mode == "copy":
            k = t.argmax(dim=1)
        elif self.mode == "leak":
            k = c[:, H * H :].argmax(dim=1)
        else:
            k = (u[:, 0] * N_TEX).long()
        off = (u[:, 1] * H).long()
        rows = (torch.arange(H, device=z.device)[None] + off[:, None]) % H
        crops = self.tiles[k[:, None, None], rows[:, :, None], rows[:, None, :]]
        mask = (c[:, : H * H] > 0.5).float().view(-1, H, H)
        return (0.01 + 0.98 * mask * crops)[:, None]

    def forward(self, c, t, z, x=None):
        dist = Bernoulli(probs=self.probs(c, t, z))
        if x is None:
            x = dist.sample()
        return x, dist.log_prob(x).flatten(1).sum(dim=1)


def _model(data, mode: str) -> vhe.VHE:
    s, tex, predict = data
    return vhe.VHE(
        encoder=[QC(predict, leak=mode == "leak"), QT(predict, informative=mode == "copy"), QZ()],
        decoder=Decoder(tex, mode),
    )


def _grid(s):
    """Rows: one image of every character; columns: one image of every texture."""
    rows = torch.stack([(s.character == c).nonzero().flatten()[0] for c in range(N_CHARS)])
    cols = torch.stack([(s.texture == t).nonzero().flatten()[-1] for t in range(N_TEX)])
    return rows, cols


# --------------------------------------------------------------------------- the diagnostics
def test_the_texture_classifier_reads_the_hand_built_images(data):
    """Sanity: the copy model's cells carry the column's texture, as the classifier sees it."""
    s, _, predict = data
    assert float((predict(texture_features(s.images)) == s.texture).double().mean()) == 1.0
    rows, cols = _grid(s)
    torch.manual_seed(0)
    cells = _cells(_model(data, "copy"), s.images[rows], s.images[cols], "cpu")[:, :, 0]
    pred = predict(texture_features(cells.reshape(-1, 1, H, H))).view(N_CHARS, N_TEX)
    assert float((pred == s.texture[cols][None]).double().mean()) >= 0.9


@pytest.mark.parametrize("mode", ["copy", "ignore", "leak"])
def test_t_swap_follows_t_only_when_the_decoder_uses_t(data, mode):
    s, _, predict = data
    rows, cols = _grid(s)
    out = t_swap_test(_model(data, mode), s.images[rows], s.images[cols], s.texture[cols], predict, "cpu", seed=0)
    assert out["cells"] == N_CHARS * N_TEX and out["chance"] == pytest.approx(1 / N_TEX)
    lo, hi = out["follows_t_ci95"]
    assert lo <= out["follows_t"] <= hi
    if mode == "copy":
        assert out["follows_t"] >= 0.9 and out["changed"] >= 0.9 and out["p_value_above_chance"] < 1e-6
    else:  # the same c and z give the same image whatever t is: the texture never follows the swap
        assert out["changed"] == 0.0
        assert out["follows_t"] < 0.5 and out["p_value_above_chance"] > 0.01  # 24 cells around chance 1/4


@pytest.mark.parametrize("mode", ["copy", "leak"])
def test_row_texture_leak_sees_texture_through_c(data, mode):
    s, _, predict = data
    rows, cols = _grid(s)
    torch.manual_seed(0)
    cells = _cells(_model(data, mode), s.images[rows], s.images[cols], "cpu")[:, :, 0]
    pred = predict(texture_features(cells.reshape(-1, 1, H, H)))
    row_tex, col_tex = s.texture[rows].repeat_interleave(N_TEX), s.texture[cols].repeat(N_CHARS)
    out = row_texture_leak(pred, row_tex, col_tex, N_TEX)
    assert out["follows_row_cells"] == int((row_tex != col_tex).sum()) > 0
    if mode == "leak":
        assert out["follows_row"] >= 0.9
    else:
        assert out["follows_row"] <= 0.1


def test_row_texture_leak_counts_only_cells_where_row_and_column_differ():
    pred = torch.tensor([0, 1, 2, 2])
    out = row_texture_leak(pred, torch.tensor([0, 1, 2, 3]), torch.tensor([0, 2, 1, 1]), 4)
    assert out["follows_row_cells"] == 3 and out["follows_row"] == pytest.approx(2 / 3)
    none = row_texture_leak(pred, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), 4)
    assert none["follows_row"] is None and "follows_row_reason" in none


@pytest.mark.parametrize("mode", ["copy", "ignore"])
def test_latent_kls_show_a_collapsed_t(data, mode):
    """KL(t) is exactly 0 when q(t | D) is the prior (a t the decoder cannot use) and large when t is
    informative; KL(z) is 0 for both (q(z) = p(z)), KL(c) > 0."""
    s, _, _ = data
    out = latent_kls(
        _model(data, mode),
        s,
        {"c": 3, "t": 3, "z": 1},
        {"c": True, "t": True, "z": True},
        "cpu",
        seed=0,
        batch_size=16,
        max_targets=32,
    )
    kl, se = out["kl"], out["kl_episodes"]["se"]
    assert set(kl) == set(se) == {"c", "t", "z"} and out["kl_episodes"]["n_targets"] == 32
    assert abs(kl["z"]) < 1e-5 and kl["c"] > 100
    if mode == "ignore":
        assert abs(kl["t"]) < 1e-5
    else:  # N(4 e_k, 0.1^2) against N(0, I): 4 [log 10 + 0.01 / 2 - 1 / 2] + 16 / 2 ≈ 15.2 nats
        expected = N_TEX * (math.log(10) + 0.005 - 0.5) + 8.0
        assert kl["t"] == pytest.approx(expected, abs=6 * se["t"] + 0.5)


def test_flip_pixels_flips_exactly_the_share_asked():
    x = (torch.rand(5, 1, H, H, generator=torch.Generator().manual_seed(0)) > 0.5).to(torch.uint8)
    g = torch.Generator().manual_seed(1)
    for rate, k in ((0.0, 0), (0.02, 16), (0.05, 39)):
        y = flip_pixels(x, rate, g)
        assert y.dtype == torch.float32 and set(y.unique().tolist()) <= {0.0, 1.0}
        assert ((y != x.float()).flatten(1).sum(dim=1) == k).all()


def test_texture_robustness_reports_clean_and_noisy_accuracy(data):
    s, _, predict = data
    out = texture_robustness(predict, s.images, s.texture, seed=0)
    assert out["n_images"] == len(s) and out["clean_accuracy"] == 1.0
    assert [f["flip_rate"] for f in out["flips"]] == [0.02, 0.05]
    assert [f["pixels_flipped"] for f in out["flips"]] == [16, 39]
    for f in out["flips"]:
        lo, hi = f["ci95"]
        assert 0.0 <= lo <= f["accuracy"] <= hi <= 1.0
    assert "skipped" in texture_robustness(predict, s.images[:0], s.texture[:0])


# --------------------------------------------------------------------------- support sets and intervals
def test_support_sets_hold_the_image_first_then_others_of_its_label(data):
    s, _, _ = data
    g = torch.Generator().manual_seed(0)
    rows = torch.tensor([0, PER_CHAR * 2 + 1])
    sets = support_sets(s, rows, s.character, 3, g)
    assert sets.shape == (2, 3, 1, H, H)
    for r, i in enumerate(rows.tolist()):
        assert torch.equal(sets[r, 0], s.images[i])
        for img in sets[r, 1:]:  # each another image of the same character
            j = int((s.images == img).flatten(1).all(dim=1).nonzero()[0])
            assert s.character[j] == s.character[i] and j != i
    # style columns avoid the rows' characters while the texture has images of other characters
    cols = torch.tensor([int((s.texture == t).nonzero()[0]) for t in range(N_TEX)])
    avoid = s.character[rows]
    tsets = support_sets(s, cols, s.texture, 4, g, avoid=avoid)
    for c, i in enumerate(cols.tolist()):
        for img in tsets[c, 1:]:
            j = int((s.images == img).flatten(1).all(dim=1).nonzero()[0])
            assert s.texture[j] == s.texture[i] and not bool(torch.isin(s.character[j], avoid))
    big = support_sets(s, rows[:1], s.character, PER_CHAR + 3, g)  # more than the character has: repeated
    assert big.shape[1] == PER_CHAR + 3 and torch.equal(big[0, PER_CHAR], big[0, 0])


def test_grid_bootstrap_widens_when_whole_rows_succeed_or_fail():
    """Cells of a row share c: a grid whose rows are all right or all wrong carries the information of
    its rows, not of its cells, and its interval is much wider than a grid with the same share spread
    over every row."""
    R, T = 20, 8
    rows_alike = torch.zeros(R, T, dtype=torch.bool)
    rows_alike[: R // 2] = True
    spread = (torch.arange(R)[:, None] + torch.arange(T)[None]) % 2 == 0  # every row and column half right
    a, b = grid_bootstrap(rows_alike, seed=0), grid_bootstrap(spread, seed=0)
    assert a[0] <= 0.5 <= a[1] and (a[1] - a[0]) > 0.3
    assert b[0] <= 0.5 <= b[1] and (b[1] - b[0]) < 0.5 * (a[1] - a[0])
    assert grid_bootstrap(torch.ones(R, T, dtype=torch.bool)) == [1.0, 1.0]
    assert (
        grid_bootstrap(torch.ones(1, T, dtype=torch.bool)) is None
        and grid_bootstrap(torch.ones(R, 1, dtype=torch.bool)) is None
    )


def test_t_swap_with_support_sets_as_in_training(data):
    s, _, predict = data
    rows, cols = _grid(s)
    g = torch.Generator().manual_seed(3)
    Dr = support_sets(s, rows, s.character, 3, g)
    Dc = support_sets(s, cols, s.texture, 3, g, avoid=s.character[rows])
    out = t_swap_test(_model(data, "copy"), Dr, Dc, s.texture[cols], predict, "cpu", seed=0)
    assert out["follows_t"] >= 0.9 and out["changed"] >= 0.9
    ignore = t_swap_test(_model(data, "ignore"), Dr, Dc, s.texture[cols], predict, "cpu", seed=0)
    assert ignore["changed"] == 0.0
