"""vhe.data.transforms: resizing the originals, the dihedral group, ink centring."""

import numpy as np
import pytest
import torch
from PIL import Image

from vhe.data.transforms import augment_dihedral, center_ink, dihedral, dihedral_inverse, preprocess_105

from .helpers import drawing, needs_mirror, tiny_set


# --------------------------------------------------------------------------- preprocessing of originals
def test_preprocess_corner_nearest_is_floor_sampling():
    rng = np.random.default_rng(0)
    img = np.where(rng.random((105, 105)) < 0.2, 0, 255).astype(np.uint8)
    idx = np.floor(np.arange(28) * 105 / 28).astype(int)
    expected = (img[idx][:, idx] == 0).astype(np.uint8)
    out = preprocess_105(img)
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    assert np.array_equal(out, expected)
    assert np.array_equal(preprocess_105(Image.fromarray(img)), expected)
    assert np.array_equal(preprocess_105(img == 255), expected)  # bool: True = paper
    assert np.array_equal(preprocess_105(img / 255.0), expected)  # float in [0, 1]
    assert not np.array_equal(preprocess_105(img, align="center"), expected)


def test_preprocess_arguments():
    img = drawing(0)
    for f in ("box", "bilinear", "hamming", "bicubic", "lanczos", "NEAREST"):
        out = preprocess_105(img, size=14, filter=f, threshold=0.3)
        assert out.shape == (14, 14) and set(np.unique(out)) <= {0, 1} and out.sum() > 0
    with pytest.raises(ValueError, match="unknown filter"):
        preprocess_105(img, filter="cubic")
    with pytest.raises(ValueError, match="align"):
        preprocess_105(img, align="middle")
    with pytest.raises(ValueError, match="threshold"):
        preprocess_105(img, threshold=1.0)


# --------------------------------------------------------------------------- dihedral group
def test_dihedral_group_properties():
    x = torch.arange(5 * 5).reshape(1, 1, 5, 5)  # no symmetry
    outs = [dihedral(x, k) for k in range(8)]
    assert torch.equal(outs[0], x)
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8
    for k in range(8):
        assert torch.equal(dihedral(outs[k], dihedral_inverse(k)), x)
    # closure: composing two elements gives one of the eight
    table = {tuple(o.flatten().tolist()): k for k, o in enumerate(outs)}
    for a in range(8):
        for b in range(8):
            assert tuple(dihedral(outs[a], b).flatten().tolist()) in table
    assert torch.equal(dihedral(dihedral(x, 1), 1), outs[2])
    assert torch.equal(dihedral(x, 4), x.transpose(-2, -1))
    assert dihedral(torch.zeros(3, 4, 7, 7), 5).shape == (3, 4, 7, 7)
    with pytest.raises(ValueError):
        dihedral(x, 8)


def test_augment_dihedral():
    s = tiny_set()
    a = augment_dihedral(s)
    assert a.n_classes == 8 * s.n_classes and len(a) == 8 * len(s) and a.n_alphabets == 8 * s.n_alphabets
    n = len(s)
    for k in range(8):
        assert torch.equal(a.images[k * n : (k + 1) * n], dihedral(s.images, k))
        assert torch.equal(a.character[k * n : (k + 1) * n], s.character + k * s.n_classes)
    assert a.character_names[: s.n_classes] == s.character_names
    assert a.character_names[s.n_classes] == "A0/character01@d1"
    assert augment_dihedral(s, new_alphabets=False).alphabet_names == s.alphabet_names


# --------------------------------------------------------------------------- centring
def _centroid(img: torch.Tensor) -> tuple[float, float]:
    ys, xs = torch.nonzero(img[0], as_tuple=True)
    return ys.double().mean().item(), xs.double().mean().item()


def test_center_ink_moves_centroid_to_centre():
    imgs = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    imgs[0, 0, 2:6, 1:4] = 1  # top-left blob: centroid (3.5, 2) -> moved by (10, 12)
    imgs[1, 0, 20:27, 22:26] = 1  # bottom-right blob
    imgs[2, 0, 12:16, 12:16] = 1  # already centred: centroid (13.5, 13.5)
    out = center_ink(imgs)
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    assert torch.equal(out.sum(dim=(1, 2, 3)), imgs.sum(dim=(1, 2, 3)))  # nothing pushed off the border
    for n in range(3):
        r, c = _centroid(out[n])
        assert abs(r - 13.5) <= 0.5 and abs(c - 13.5) <= 0.5
    assert torch.equal(out[2], imgs[2])
    assert torch.equal(out[0, 0, 12:16, 13:16], torch.ones(4, 3, dtype=torch.uint8))  # a pure translation
    assert torch.equal(imgs[0, 0, 2:6, 1:4], torch.ones(4, 3, dtype=torch.uint8))  # input untouched


def test_center_ink_drops_ink_past_the_border_and_keeps_blank_images():
    imgs = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    imgs[0, 0, 0, :] = 1  # a row at the top plus one pixel at the bottom: centroid row 7/9
    imgs[0, 0, 7, 0] = 1
    out = center_ink(imgs)
    assert torch.equal(out[1], imgs[1])  # no ink: unchanged
    assert out[0].sum() <= imgs[0].sum()
    r, _ = _centroid(out[0])
    assert r > _centroid(imgs[0])[0]


def test_center_ink_errors():
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        center_ink(torch.zeros(28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        center_ink(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="uint8"):
        center_ink(np.zeros((1, 1, 28, 28), np.uint8))


@needs_mirror
def test_center_ink_on_the_arrays(background):
    s = background.first_characters(10)
    out = center_ink(s.images)
    lost = int(s.images.sum()) - int(out.sum())
    assert 0 <= lost < 1e-3 * int(s.images.sum())
    cents = torch.tensor([_centroid(im) for im in out])
    assert (cents - 13.5).abs().max() <= 0.5 + 0.1
