"""vhe.data.readers: the npz arrays and Lake's archives (synthetic, real, corrupt and hostile inputs)."""

import logging
import zipfile

import numpy as np
import pytest
import torch

from vhe.data import cli
from vhe.data.fetch import DataIntegrityError
from vhe.data.readers import load_lake_archive, load_npz_arrays, read_lake_originals

from .helpers import files_under, lake_zip, lie_about_size, needs_mirror, png_declaring, write_npz
from .mirror import MIRROR


# --------------------------------------------------------------------------- npz arrays
@needs_mirror
def test_background_counts_and_labels(background):
    s = background
    assert (len(s), s.n_classes, s.n_alphabets) == (19280, 964, 30)
    assert s.images.shape == (19280, 1, 28, 28) and s.images.dtype == torch.uint8
    assert set(s.images.unique().tolist()) == {0, 1}
    assert 0.05 < s.images.float().mean() < 0.12  # ink = 1 is the minority
    assert s.character_names[0] == "Alphabet_of_the_Magi/character01"
    assert torch.equal(s.class_counts(), torch.full((964,), 20))
    c = s.character_names.index("Greek/character01")
    assert {s.alphabet_names[a] for a in s.alphabet[s.character == c].tolist()} == {"Greek"}
    assert sorted(s.drawer[s.character == c].tolist()) == list(range(20))
    assert torch.all(s.character[1:] >= s.character[:-1])  # sorted key order
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


def test_npz_empty_class(tmp_path):
    p = write_npz(
        tmp_path / "a.npz",
        {
            "images_background/Greek/character01": np.full((2, 784), 255, np.uint8),
            "images_background/Greek/character02": np.zeros((0, 784), np.uint8),
        },
    )
    with pytest.raises(ValueError, match="Greek/character02.*no images"):
        load_npz_arrays(p)


def test_npz_wrong_image_size(tmp_path):
    p = write_npz(tmp_path / "a.npz", {"images_background/Greek/character01": np.full((20, 783), 255, np.uint8)})
    with pytest.raises(ValueError, match="783 values, expected 784"):
        load_npz_arrays(p)


def test_npz_non_binary_values(tmp_path):
    a = np.full((20, 784), 255, np.uint8)
    a[3, 5] = 128
    p = write_npz(tmp_path / "a.npz", {"images_background/Greek/character01": a})
    with pytest.raises(ValueError, match=r"Greek/character01.*\[128\].*outside"):
        load_npz_arrays(p)


def test_npz_small_synthetic_ok(tmp_path):
    a = np.full((3, 784), 255, np.uint8)
    a[:, :10] = 0
    p = write_npz(tmp_path / "a.npz", {"images_x/B/character02": a, "images_x/A/character01": a[:2]})
    s = load_npz_arrays(p)
    assert s.character_names == ["A/character01", "B/character02"] and s.alphabet_names == ["A", "B"]
    assert s.class_counts().tolist() == [2, 3] and int(s.images.sum()) == 50


def test_npz_corrupt_and_truncated(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(DataIntegrityError, match="bad.npz.*fetch it again"):
        load_npz_arrays(bad)
    good = write_npz(tmp_path / "good.npz", {"images_x/A/character01": np.full((20, 784), 255, np.uint8)})
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataIntegrityError, match="trunc.npz"):
        load_npz_arrays(trunc)
    with pytest.raises(FileNotFoundError, match="vhe.data.fetch"):
        load_npz_arrays(tmp_path / "missing.npz")


# --------------------------------------------------------------------------- Lake's originals
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


def test_lake_archive_synthetic_skips_junk(tmp_path, caplog):
    p = lake_zip(
        tmp_path / "a.zip",
        extra={
            "root/.DS_Store": b"\0\1",
            "root/Alpha/character01/Thumbs.db": b"x",
            "__MACOSX/root/Alpha/character01/._0000_01.png": b"junk",
        },
    )
    with caplog.at_level(logging.WARNING, logger="vhe.data.readers"):
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
    p = lake_zip(tmp_path / "a.zip", extra={"root/Beta/character01/0999_09.png": b"\x89PNG not really"})
    with pytest.raises(DataIntegrityError, match=r"root/Beta/character01/0999_09\.png"):
        load_lake_archive(p)


def test_lake_archive_empty_character(tmp_path):
    p = lake_zip(tmp_path / "a.zip", extra={"root/Beta/character02/": b""})
    with pytest.raises(ValueError, match="root/Beta/character02.*no .png"):
        load_lake_archive(p)
    q = lake_zip(tmp_path / "b.zip", extra={"root/Beta/character03/.DS_Store": b"x"})
    with pytest.raises(ValueError, match="root/Beta/character03"):
        load_lake_archive(q)


def test_lake_archive_truncated_or_missing(tmp_path):
    p = lake_zip(tmp_path / "a.zip")
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


# --------------------------------------------------------------------------- hostile archives (size limits)
def test_lake_archive_member_over_the_limit_is_refused_and_nothing_written(tmp_path, monkeypatch, capsys):
    from vhe.data import archives

    p = lake_zip(tmp_path / "bomb.zip", extra={"root/Beta/character01/0999_09.png": bytes(50 * 2**20)})
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 4 * 2**20)
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    assert cli.main(["prepare-lake", "--zip", str(p), "--out", str(tmp_path / "out" / "lake.pt")]) == 1
    err = capsys.readouterr().err
    assert "bomb.zip: member 'root/Beta/character01/0999_09.png' declares 52428800 bytes" in err
    assert "MAX_MEMBER_BYTES" in err and "archive is corrupt" in err
    assert files_under(tmp_path) == before


def test_lake_archive_member_lying_about_its_size_is_refused(tmp_path):
    p = lake_zip(tmp_path / "liar.zip", extra={"root/Beta/character01/0999_09.png": bytes(50 * 2**20)})
    lie_about_size(p, "root/Beta/character01/0999_09.png", 500)
    with pytest.raises(
        DataIntegrityError,
        match=r"liar\.zip: member 'root/Beta/character01/0999_09\.png' cannot "
        r"be read \(BadZipFile",
    ):
        load_lake_archive(p)


def test_lake_archive_png_declaring_a_huge_size_is_refused(tmp_path):
    p = lake_zip(tmp_path / "a.zip", extra={"root/Beta/character01/0999_09.png": png_declaring(30000, 30000)})
    with pytest.raises(
        DataIntegrityError,
        match=r"a\.zip: member 'root/Beta/character01/0999_09\.png' is not a "
        r"decodable PNG \(DecompressionBombError",
    ):
        read_lake_originals(p)


def test_npz_member_over_the_limit_is_refused(tmp_path, monkeypatch):
    from vhe.data import archives

    p = write_npz(tmp_path / "big.npz", {"images_x/A/character01": np.full((20, 784), 255, np.uint8)})
    assert load_npz_arrays(p).n_classes == 1
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(DataIntegrityError, match=r"big\.npz: member 'images_x/A/character01\.npy' declares \d+ bytes"):
        load_npz_arrays(p)
