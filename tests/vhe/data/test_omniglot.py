"""vhe.data.omniglot: npz and Lake-archive readers, preprocessing, dihedral group, splits, k-shot checks."""
import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vhe.data import cli
from vhe.data.fetch import DataIntegrityError
from vhe.data.omniglot import (OmniglotSet, augment_dihedral, center_ink, check_k_shot, concat_sets, dihedral, dihedral_inverse,
                               load_lake_archive, load_npz_arrays, preprocess_105, read_lake_originals,
                               split_validation)

from .mirror import MIRROR
needs_mirror = pytest.mark.skipif(not (MIRROR / "train_small.npz").is_file(),
                                  reason=f"Omniglot data mirror not found at {MIRROR} (set VHE_DATA_MIRROR)")


@pytest.fixture(scope="module")
def background():
    if not (MIRROR / "train_small.npz").is_file():
        pytest.skip(f"Omniglot data mirror not found at {MIRROR} (set VHE_DATA_MIRROR)")
    return load_npz_arrays(MIRROR / "train_small.npz")


def _tiny_set(counts=(3, 2, 4), alphabets=(0, 0, 1), size=6, seed=0) -> OmniglotSet:
    g = torch.Generator().manual_seed(seed)
    char = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    return OmniglotSet(images=(torch.rand(len(char), 1, size, size, generator=g) > 0.5).to(torch.uint8),
                       character=char, alphabet=torch.tensor([alphabets[c] for c in char.tolist()]),
                       drawer=torch.cat([torch.arange(n) for n in counts]),
                       character_names=[f"A{alphabets[c]}/character{c + 1:02d}" for c in range(len(counts))],
                       alphabet_names=[f"A{a}" for a in sorted(set(alphabets))])


def _write_npz(path, arrays: dict):
    np.savez(path, **arrays)
    return path


def _png_bytes(arr_u8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr_u8).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def _drawing(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.full((105, 105), 255, np.uint8)
    y, x = rng.integers(10, 80, 2)
    a[y:y + 20, x:x + 10] = 0
    return a


# --------------------------------------------------------------------------- npz arrays
@needs_mirror
def test_background_counts_and_labels(background):
    s = background
    assert (len(s), s.n_classes, s.n_alphabets) == (19280, 964, 30)
    assert s.images.shape == (19280, 1, 28, 28) and s.images.dtype == torch.uint8
    assert set(s.images.unique().tolist()) == {0, 1}
    assert 0.05 < s.images.float().mean() < 0.12          # ink = 1 is the minority
    assert s.character_names[0] == "Alphabet_of_the_Magi/character01"
    assert torch.equal(s.class_counts(), torch.full((964,), 20))
    c = s.character_names.index("Greek/character01")
    assert {s.alphabet_names[a] for a in s.alphabet[s.character == c].tolist()} == {"Greek"}
    assert sorted(s.drawer[s.character == c].tolist()) == list(range(20))
    assert torch.all(s.character[1:] >= s.character[:-1])   # sorted key order
    ca = s.character_alphabet()
    assert [s.alphabet_names[a] for a in ca[:2].tolist()] == ["Alphabet_of_the_Magi"] * 2


@needs_mirror
def test_key_to_image_mapping(background):
    raw = np.load(MIRROR / "train_small.npz")["images_background/Latin/character05"]
    c = background.character_names.index("Latin/character05")
    imgs = background.images[background.character == c]
    assert torch.equal(imgs.flatten(1), torch.from_numpy((raw == 0).astype(np.uint8)))


@needs_mirror
def test_evaluation_counts():
    s = load_npz_arrays(MIRROR / "test_small.npz")
    assert (len(s), s.n_classes, s.n_alphabets) == (13180, 659, 20)
    assert s.character_names[0] == "Angelic/character01"


@needs_mirror
def test_max_characters_and_save_load(tmp_path):
    s = load_npz_arrays(MIRROR / "train_small.npz", max_characters=25)
    assert s.n_classes == 25 and len(s) == 500
    p = s.save(tmp_path / "x" / "bg.pt")
    d = torch.load(p, weights_only=True)
    assert isinstance(d, dict) and d["format"] == "vhe.OmniglotSet"
    t = OmniglotSet.load(p)
    assert torch.equal(t.images, s.images) and t.character_names == s.character_names
    assert torch.equal(t.drawer, s.drawer) and t.alphabet_names == s.alphabet_names


def test_load_rejects_other_files(tmp_path):
    torch.save({"format": "something"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a saved OmniglotSet"):
        OmniglotSet.load(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="prepare-omniglot"):
        OmniglotSet.load(tmp_path / "missing.pt")


def test_npz_empty_class(tmp_path):
    p = _write_npz(tmp_path / "a.npz", {"images_background/Greek/character01": np.full((2, 784), 255, np.uint8),
                                         "images_background/Greek/character02": np.zeros((0, 784), np.uint8)})
    with pytest.raises(ValueError, match="Greek/character02.*no images"):
        load_npz_arrays(p)


def test_npz_wrong_image_size(tmp_path):
    p = _write_npz(tmp_path / "a.npz", {"images_background/Greek/character01": np.full((20, 783), 255, np.uint8)})
    with pytest.raises(ValueError, match="783 values, expected 784"):
        load_npz_arrays(p)


def test_npz_non_binary_values(tmp_path):
    a = np.full((20, 784), 255, np.uint8)
    a[3, 5] = 128
    p = _write_npz(tmp_path / "a.npz", {"images_background/Greek/character01": a})
    with pytest.raises(ValueError, match=r"Greek/character01.*\[128\].*outside"):
        load_npz_arrays(p)


def test_npz_small_synthetic_ok(tmp_path):
    a = np.full((3, 784), 255, np.uint8)
    a[:, :10] = 0
    p = _write_npz(tmp_path / "a.npz", {"images_x/B/character02": a, "images_x/A/character01": a[:2]})
    s = load_npz_arrays(p)
    assert s.character_names == ["A/character01", "B/character02"] and s.alphabet_names == ["A", "B"]
    assert s.class_counts().tolist() == [2, 3] and int(s.images.sum()) == 50


def test_npz_corrupt_and_truncated(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(DataIntegrityError, match="bad.npz.*fetch it again"):
        load_npz_arrays(bad)
    good = _write_npz(tmp_path / "good.npz", {"images_x/A/character01": np.full((20, 784), 255, np.uint8)})
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataIntegrityError, match="trunc.npz"):
        load_npz_arrays(trunc)
    with pytest.raises(FileNotFoundError, match="vhe.data.fetch"):
        load_npz_arrays(tmp_path / "missing.npz")


# --------------------------------------------------------------------------- set operations
def test_subset_remaps_labels():
    s = _tiny_set()
    t = s.subset(s.character != 1)
    assert t.n_classes == 2 and t.character.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert t.character_names == ["A0/character01", "A1/character03"] and t.alphabet_names == ["A0", "A1"]
    u = s.subset(torch.tensor([7, 3]))
    assert u.character.tolist() == [1, 0] and u.character_names == ["A0/character02", "A1/character03"]
    assert u.alphabet.tolist() == [1, 0]
    with pytest.raises(ValueError, match="bool mask"):
        s.subset(torch.ones(3, dtype=torch.bool))


def test_concat_sets_dedupes_by_name():
    s = _tiny_set()
    both = concat_sets([s, s.subset(s.character == 2)])
    assert len(both) == len(s) and both.character_names == s.character_names
    assert len(concat_sets([s, s], dedupe=False)) == 2 * len(s)


def test_check_k_shot():
    s = _tiny_set(counts=(20, 3, 20))
    check_k_shot(s, 3)
    with pytest.raises(ValueError, match=r"'A0/character02' has 3") as e:
        check_k_shot(s, 5)
    assert "k=5" in str(e.value)


@needs_mirror
def test_check_k_shot_real(background):
    check_k_shot(background, 20)
    with pytest.raises(ValueError, match="964 class"):
        check_k_shot(background, 21)


def test_split_validation_disjoint_and_deterministic():
    s = _tiny_set(counts=(2,) * 30, alphabets=tuple(i % 3 for i in range(30)))
    tr, va = split_validation(s, n_val_characters=6, seed=3)
    assert va.n_classes == 6 and tr.n_classes == 24 and len(tr) + len(va) == len(s)
    assert not set(tr.character_names) & set(va.character_names)
    assert set(tr.character_names) | set(va.character_names) == set(s.character_names)
    tr2, va2 = split_validation(s, n_val_characters=6, seed=3)
    assert va2.character_names == va.character_names and torch.equal(va2.images, va.images)
    _, va3 = split_validation(s, n_val_characters=6, seed=4)
    assert va3.character_names != va.character_names
    torch.manual_seed(123)  # the global RNG must not matter
    assert split_validation(s, fraction=0.2, seed=3)[1].character_names == va.character_names
    for bad in [dict(), dict(n_val_characters=0), dict(n_val_characters=30), dict(fraction=1.5),
                dict(n_val_characters=2, fraction=0.1)]:
        with pytest.raises(ValueError):
            split_validation(s, **bad)


# --------------------------------------------------------------------------- dihedral group
def test_dihedral_group_properties():
    x = torch.arange(5 * 5).reshape(1, 1, 5, 5)       # no symmetry
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
    s = _tiny_set()
    a = augment_dihedral(s)
    assert a.n_classes == 8 * s.n_classes and len(a) == 8 * len(s) and a.n_alphabets == 8 * s.n_alphabets
    n = len(s)
    for k in range(8):
        assert torch.equal(a.images[k * n:(k + 1) * n], dihedral(s.images, k))
        assert torch.equal(a.character[k * n:(k + 1) * n], s.character + k * s.n_classes)
    assert a.character_names[: s.n_classes] == s.character_names
    assert a.character_names[s.n_classes] == "A0/character01@d1"
    assert augment_dihedral(s, new_alphabets=False).alphabet_names == s.alphabet_names


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
    assert np.array_equal(preprocess_105(img == 255), expected)            # bool: True = paper
    assert np.array_equal(preprocess_105(img / 255.0), expected)           # float in [0, 1]
    assert not np.array_equal(preprocess_105(img, align="center"), expected)


def test_preprocess_arguments():
    img = _drawing(0)
    for f in ("box", "bilinear", "hamming", "bicubic", "lanczos", "NEAREST"):
        out = preprocess_105(img, size=14, filter=f, threshold=0.3)
        assert out.shape == (14, 14) and set(np.unique(out)) <= {0, 1} and out.sum() > 0
    with pytest.raises(ValueError, match="unknown filter"):
        preprocess_105(img, filter="cubic")
    with pytest.raises(ValueError, match="align"):
        preprocess_105(img, align="middle")
    with pytest.raises(ValueError, match="threshold"):
        preprocess_105(img, threshold=1.0)


@needs_mirror
def test_lake_archive_real_matches_arrays(background):
    s = load_lake_archive(MIRROR / "images_background_small1.zip")
    assert (len(s), s.n_classes, s.n_alphabets) == (2720, 136, 5)
    assert s.alphabet_names == ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
    assert sorted(s.drawer[s.character == 0].tolist()) == list(range(20))
    # the default preprocessing reproduces the 28x28 arrays bit for bit (rows are permuted per character)
    for name in ("Greek/character01", "Korean/character40", "Balinese/character24"):
        a = background.images[background.character == background.character_names.index(name)].flatten(1)
        b = s.images[s.character == s.character_names.index(name)].flatten(1)
        assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))


def _lake_zip(path: Path, extra: dict | None = None, chars=(("Alpha", "character01", 3), ("Beta", "character01", 2))):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("root/", "")
        i = 0
        for a, c, n in chars:
            z.writestr(f"root/{a}/{c}/", "")
            for d in range(n):
                z.writestr(f"root/{a}/{c}/0{i:03d}_{d + 1:02d}.png", _png_bytes(_drawing(i)))
                i += 1
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def test_lake_archive_synthetic_skips_junk(tmp_path, caplog):
    p = _lake_zip(tmp_path / "a.zip", extra={"root/.DS_Store": b"\0\1", "root/Alpha/character01/Thumbs.db": b"x",
                                             "__MACOSX/root/Alpha/character01/._0000_01.png": b"junk"})
    with caplog.at_level(logging.WARNING, logger="vhe.data.omniglot"):
        s = load_lake_archive(p)
    assert (len(s), s.n_classes, s.n_alphabets) == (5, 2, 2)
    assert s.character_names == ["Alpha/character01", "Beta/character01"]
    assert s.drawer.tolist() == [0, 1, 2, 0, 1]
    warned = caplog.text
    assert ".DS_Store" in warned and "Thumbs.db" in warned and "__MACOSX" in warned
    o = read_lake_originals(p)
    assert o.gray.shape == (5, 105, 105) and torch.equal(o.resize().images, s.images)
    assert load_lake_archive(p, max_characters=1).n_classes == 1


def test_lake_archive_corrupt_png_names_member(tmp_path):
    p = _lake_zip(tmp_path / "a.zip", extra={"root/Beta/character01/0999_09.png": b"\x89PNG not really"})
    with pytest.raises(DataIntegrityError, match=r"root/Beta/character01/0999_09\.png"):
        load_lake_archive(p)


def test_lake_archive_empty_character(tmp_path):
    p = _lake_zip(tmp_path / "a.zip", extra={"root/Beta/character02/": b""})
    with pytest.raises(ValueError, match="root/Beta/character02.*no .png"):
        load_lake_archive(p)
    q = _lake_zip(tmp_path / "b.zip", extra={"root/Beta/character03/.DS_Store": b"x"})
    with pytest.raises(ValueError, match="root/Beta/character03"):
        load_lake_archive(q)


def test_lake_archive_truncated_or_missing(tmp_path):
    p = _lake_zip(tmp_path / "a.zip")
    t = tmp_path / "t.zip"
    t.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(DataIntegrityError, match="t.zip"):
        load_lake_archive(t)
    with pytest.raises(FileNotFoundError):
        load_lake_archive(tmp_path / "none.zip")
    e = tmp_path / "empty.zip"
    with zipfile.ZipFile(e, "w") as z:
        z.writestr("readme.txt", "nothing")
    with pytest.raises(ValueError, match="no .png"):
        load_lake_archive(e)


# --------------------------------------------------------------------------- centring
def _centroid(img: torch.Tensor) -> tuple[float, float]:
    ys, xs = torch.nonzero(img[0], as_tuple=True)
    return ys.double().mean().item(), xs.double().mean().item()


def test_center_ink_moves_centroid_to_centre():
    imgs = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    imgs[0, 0, 2:6, 1:4] = 1            # top-left blob: centroid (3.5, 2) -> moved by (10, 12)
    imgs[1, 0, 20:27, 22:26] = 1        # bottom-right blob
    imgs[2, 0, 12:16, 12:16] = 1        # already centred: centroid (13.5, 13.5)
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
    imgs[0, 0, 0, :] = 1                # a row at the top plus one pixel at the bottom: centroid row 7/9
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


# --------------------------------------------------------------------------- CLI
@needs_mirror
def test_cli_prepare_omniglot(tmp_path):
    out = tmp_path / "bg.pt"
    assert cli.main(["prepare-omniglot", "--npz", str(MIRROR / "train_small.npz"), "--out", str(out),
                     "--max-characters", "7", "--dihedral"]) == 0
    s = OmniglotSet.load(out)
    assert s.n_classes == 56 and len(s) == 8 * 7 * 20
    centred = tmp_path / "bg_centred.pt"
    assert cli.main(["prepare-omniglot", "--npz", str(MIRROR / "train_small.npz"), "--out", str(centred),
                     "--max-characters", "7", "--center-ink"]) == 0
    c = OmniglotSet.load(centred)
    plain = s.images[: len(c)]  # dihedral transform 0 comes first: the arrays as published
    assert len(c) == 7 * 20 and torch.equal(c.images, center_ink(plain)) and not torch.equal(c.images, plain)
    assert "centred" in c.source


def test_cli_reports_errors(tmp_path, capsys):
    assert cli.main(["prepare-omniglot", "--npz", str(tmp_path / "no.npz"), "--out", str(tmp_path / "o.pt")]) == 1
    assert "no.npz" in capsys.readouterr().err
