"""vhe.baselines: pixel nearest neighbour and Lake's modified Hausdorff distance (MHD)."""

import io
import math
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from vhe.baselines import ink_points, mhd_classify, modified_hausdorff_distance, pixel_nearest_neighbour
from vhe.data.runs import load_lake_runs

from .data.mirror import MIRROR

_SKIP = f"Omniglot data mirror not found at {MIRROR} (set VHE_DATA_MIRROR)"


def _canvas(h=12, w=12, pixels=()):
    x = torch.zeros(h, w, dtype=torch.uint8)
    for r, c in pixels:
        x[r, c] = 1
    return x


L_SHAPE = [(2, 2), (3, 2), (4, 2), (5, 2), (5, 3), (5, 4)]
BAR = [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6), (7, 6)]
DOT = [(8, 8)]


def _random_images(n, h, w, seed, p=0.08):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, h, w, generator=g) < p).to(torch.uint8)
    x[:, 0, h // 2, w // 2] = 1  # no empty image
    return x


def _brute(support, query):
    return torch.tensor(
        [[modified_hausdorff_distance(ink_points(q), ink_points(s)) for s in support] for q in query],
        dtype=torch.float64,
    )


# --------------------------------------------------------------------------- the distance
def test_identical_sets_have_distance_zero():
    a = ink_points(_canvas(pixels=L_SHAPE))
    assert modified_hausdorff_distance(a, a) == 0.0
    _, d = mhd_classify(_canvas(pixels=L_SHAPE)[None, None], _canvas(pixels=L_SHAPE)[None, None])
    assert d.shape == (1, 1) and d.dtype == torch.float64 and abs(float(d)) < 1e-12


def test_mhd_is_symmetric_and_hand_computed():
    a, b = ink_points(_canvas(pixels=L_SHAPE)), ink_points(_canvas(pixels=BAR))
    assert modified_hausdorff_distance(a, b) == pytest.approx(modified_hausdorff_distance(b, a), abs=1e-12)
    # uncentred: {0} vs {0, 2} on a line: mean min from A = 0, from B = (0 + 2) / 2 = 1 -> max = 1
    assert modified_hausdorff_distance([[0.0]], [[0.0], [2.0]]) == pytest.approx(1.0)
    assert modified_hausdorff_distance([[0.0, 0.0]], [[3.0, 4.0]]) == pytest.approx(5.0)
    x = torch.stack([_canvas(pixels=L_SHAPE), _canvas(pixels=BAR)])[:, None]
    _, d = mhd_classify(x, x)
    assert torch.allclose(d, d.T, atol=1e-12) and d.diagonal().abs().max() < 1e-12


def test_translation_does_not_change_mhd():
    shape = _canvas(pixels=L_SHAPE)
    moved = torch.roll(shape, shifts=(4, 5), dims=(0, 1))  # stays inside the canvas
    bar = _canvas(pixels=BAR)
    assert modified_hausdorff_distance(ink_points(shape), ink_points(moved)) < 1e-12
    d1 = modified_hausdorff_distance(ink_points(shape), ink_points(bar))
    d2 = modified_hausdorff_distance(ink_points(moved), ink_points(bar))
    assert d1 == pytest.approx(d2, abs=1e-12) and d1 > 0.5
    _, d = mhd_classify(torch.stack([bar, shape])[:, None], moved[None, None])
    assert d[0, 1] < 1e-12 and d[0, 0] == pytest.approx(d1, abs=1e-12)


@pytest.mark.parametrize("h,w,seed", [(12, 12, 0), (9, 17, 1), (28, 28, 2), (20, 7, 3)])
def test_mhd_classify_equals_brute_force(h, w, seed):
    support, query = _random_images(6, h, w, seed), _random_images(5, h, w, seed + 100)
    # sets far apart in their canvases: centring moves points well outside the other image's grid
    support[0] = 0
    support[0, 0, 0, 0] = support[0, 0, 0, 1] = 1
    query[0] = 0
    query[0, 0, h - 1, w - 1] = query[0, 0, h - 2, w - 1] = query[0, 0, h - 1, 0] = 1
    pred, d = mhd_classify(support, query)
    ref = _brute(support, query)
    assert torch.allclose(d, ref, atol=1e-10), (d - ref).abs().max()
    assert torch.equal(pred, ref.argmin(1))
    # (n, H, W) and numpy inputs are accepted
    _, d2 = mhd_classify(support[:, 0].numpy(), query[:, 0].numpy())
    assert torch.equal(d, d2)


# --------------------------------------------------------------------------- the classifiers
def test_query_equal_to_a_support_image_is_classified_to_it():
    support = torch.stack(
        [_canvas(pixels=L_SHAPE), _canvas(pixels=BAR), _canvas(pixels=DOT), _canvas(pixels=L_SHAPE + BAR)]
    )[:, None]
    query = support[[2, 0, 3, 1]]
    for classify in (pixel_nearest_neighbour, mhd_classify):
        pred, scores = classify(support, query)
        assert pred.dtype == torch.int64 and pred.tolist() == [2, 0, 3, 1], classify.__name__
        assert scores.shape == (4, 4) and scores.dtype == torch.float64
    _, sim = pixel_nearest_neighbour(support, query)
    assert torch.allclose(sim[torch.arange(4), torch.tensor([2, 0, 3, 1])], torch.ones(4, dtype=torch.float64))
    assert (sim <= 1 + 1e-12).all() and (sim >= 0).all()


def test_pixel_nn_is_cosine_similarity():
    s = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 1]], dtype=torch.uint8).view(2, 1, 2, 2)
    q = torch.tensor([[1, 0, 0, 0]], dtype=torch.uint8).view(1, 1, 2, 2)
    pred, sim = pixel_nearest_neighbour(s, q)
    assert sim[0].tolist() == pytest.approx([1 / math.sqrt(2), 1 / math.sqrt(3)])
    assert pred.tolist() == [0]


def test_ties_go_to_the_lowest_index():
    shape = _canvas(pixels=L_SHAPE)
    support = torch.stack([_canvas(pixels=BAR), shape, shape])[:, None]
    for classify in (pixel_nearest_neighbour, mhd_classify):
        assert classify(support, shape[None, None])[0].tolist() == [1]


def test_empty_images():
    """An image without ink: MHD +inf to everything (never chosen as a support; a query without ink
    ties everywhere and goes to support 0); cosine similarity 0."""
    assert modified_hausdorff_distance(torch.zeros(0, 2), ink_points(_canvas(pixels=DOT))) == math.inf
    assert modified_hausdorff_distance(ink_points(_canvas(pixels=DOT)), torch.zeros(0, 2)) == math.inf
    assert modified_hausdorff_distance(torch.zeros(0, 2), torch.zeros(0, 2)) == math.inf
    assert ink_points(_canvas()).shape == (0, 2)
    empty, bar = _canvas(), _canvas(pixels=BAR)
    support = torch.stack([empty, _canvas(pixels=L_SHAPE), bar])[:, None]
    query = torch.stack([bar, empty])[:, None]
    pred, d = mhd_classify(support, query)
    assert pred.tolist() == [2, 0]
    assert torch.isinf(d[:, 0]).all() and torch.isinf(d[1]).all() and torch.isfinite(d[0, 1:]).all()
    pred, sim = pixel_nearest_neighbour(support, query)
    assert pred.tolist() == [2, 0] and sim[1].tolist() == [0.0, 0.0, 0.0] and sim[0, 0] == 0.0
    pred, d = mhd_classify(empty[None, None].repeat(2, 1, 1, 1), query)
    assert pred.tolist() == [0, 0] and torch.isinf(d).all()


def test_shape_errors():
    with pytest.raises(ValueError, match="queries"):
        mhd_classify(torch.zeros(2, 1, 5, 5), torch.zeros(1, 1, 6, 6))
    with pytest.raises(ValueError, match="one channel"):
        mhd_classify(torch.zeros(2, 3, 5, 5), torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="pixels"):
        pixel_nearest_neighbour(torch.zeros(2, 1, 5, 5), torch.zeros(1, 1, 6, 6))


# --------------------------------------------------------------------------- Lake's runs (mirror)
@pytest.fixture(scope="module")
def runs_105():
    if not (MIRROR / "all_runs.zip").is_file():
        pytest.skip(_SKIP)
    return load_lake_runs(MIRROR / "all_runs.zip", size=105)


def test_105_images_are_lakes_originals(runs_105):
    """size=105: the PNGs unchanged, binarised as Lake's LoadImgAsPoints does (ink = dark = 1)."""
    with zipfile.ZipFile(MIRROR / "all_runs.zip") as z:
        for r in runs_105[:3]:
            for images, files in ((r.support, r.support_files), (r.query, r.query_files)):
                for x, f in zip(images, files):
                    with Image.open(io.BytesIO(z.read(f))) as im:
                        ink = ~np.asarray(im.convert("L"), dtype=bool)
                    assert x.shape == (1, 105, 105) and np.array_equal(x[0].numpy(), ink.astype(np.uint8)), f


def test_mhd_105_reproduces_lakes_error(runs_105):
    """Lake's demo_classification.py: average error 38.8% over the 20 runs."""
    assert len(runs_105) == 20
    errors = [100.0 * float((mhd_classify(r.support, r.query)[0] != r.answer).double().mean()) for r in runs_105]
    assert abs(sum(errors) / 20 - 38.8) <= 0.05 + 1e-9, errors
    # exact, spot-checked against the brute-force distance
    r = runs_105[0]
    _, d = mhd_classify(r.support[:4], r.query[:2])
    assert torch.allclose(d, _brute(r.support[:4], r.query[:2]), atol=1e-9)
