"""vhe.data.textures: procedural textures, textured Omniglot, texture folders."""

import io
import logging
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from vhe.data import cli
from vhe.data.fetch import DataIntegrityError
from vhe.data.readers import load_npz_arrays
from vhe.data.textures import (
    TexturedSet,
    crop_texture,
    dilate_binary,
    load_texture_folder,
    procedural_textures,
    texture_catalogue,
    texture_family,
    textured_omniglot,
)

from .helpers import files_under, png_declaring, synthetic_chars
from .mirror import MIRROR


@pytest.fixture(scope="module")
def chars():
    """The first 100 background characters (20 drawings each)."""
    if not (MIRROR / "train_small.npz").is_file():
        pytest.skip(f"Omniglot data mirror not found at {MIRROR} (set VHE_DATA_MIRROR)")
    return load_npz_arrays(MIRROR / "train_small.npz", max_characters=100)


# --------------------------------------------------------------------------- procedural textures
def test_procedural_textures_format_and_determinism():
    n = len(texture_catalogue())
    tex, names = procedural_textures(n, size=28, seed=0, return_names=True)
    assert tex.shape == (n, 28, 28) and tex.dtype == torch.uint8 and set(tex.unique().tolist()) == {0, 1}
    assert len(set(names)) == n
    assert {texture_family(x) for x in names[:4]} == {"grating", "checker", "dots", "noise"}
    assert torch.equal(tex, procedural_textures(n, seed=0))
    assert not torch.equal(tex, procedural_textures(n, seed=1))
    dens = tex.float().mean((1, 2))
    assert torch.all(dens > 0.15) and torch.all(dens < 0.9)
    assert procedural_textures(3, size=40).shape == (3, 40, 40)
    with pytest.raises(ValueError, match="n_textures"):
        procedural_textures(n + 1)
    with pytest.raises(ValueError, match="n_textures"):
        procedural_textures(0)


def test_textures_are_periodic_tiles():
    tex = procedural_textures(len(texture_catalogue()), size=28, seed=0)
    big = tex.repeat(1, 2, 2)  # 56x56 tiling: any 28x28 window is a circular shift of the tile
    for dy, dx in [(3, 11), (17, 5)]:
        assert torch.equal(big[:, dy : dy + 28, dx : dx + 28], torch.roll(tex, (-dy, -dx), dims=(1, 2)))
        assert torch.equal(crop_texture(tex, dy, dx, 28, 28), big[:, dy : dy + 28, dx : dx + 28])


def test_nearest_neighbour_recovers_texture_from_random_crops():
    """Shift-invariant features (|FFT| of a crop): every texture is recognised from random crops."""
    T = len(texture_catalogue())
    tex = procedural_textures(T, seed=0)
    g = torch.Generator().manual_seed(0)

    def crops(k):
        off = torch.randint(0, 28, (T, k, 2), generator=g)
        return torch.stack(
            [torch.stack([crop_texture(tex[t], *off[t, j].tolist(), 28, 28) for j in range(k)]) for t in range(T)]
        ).float()  # (T, k, 28, 28)

    feat = lambda x: torch.fft.fft2(x).abs().flatten(-2)  # noqa: E731  (|FFT| is invariant to circular shifts)
    ref = feat(crops(1))[:, 0]  # (T, D)
    test = feat(crops(5)).reshape(T * 5, -1)
    pred = torch.cdist(test, ref).argmin(1)
    assert (pred == torch.arange(T).repeat_interleave(5)).float().mean() == 1.0
    # and no two textures share a power spectrum
    d = torch.cdist(ref, ref) + torch.eye(T) * 1e9
    assert d.min() > 1.0


# --------------------------------------------------------------------------- textured Omniglot
def test_textured_omniglot_structure(tmp_path):
    s = synthetic_chars()
    tex, names = procedural_textures(4, seed=0, return_names=True)
    t = textured_omniglot(s, tex, n_per_character=6, seed=0, dilate=1, texture_names=names)
    assert len(t) == 36 and t.images.shape == (36, 1, 28, 28) and t.images.dtype == torch.uint8
    assert set(t.images.unique().tolist()) <= {0, 1}
    assert torch.equal(t.image, torch.arange(36))
    assert t.character.tolist() == [c for c in range(6) for _ in range(6)]
    assert torch.equal(s.character[t.source_index], t.character)
    for c in range(6):  # each character gets every texture (balanced, M >= T)
        assert set(t.texture[t.character == c].tolist()) == set(range(4))
    mask = dilate_binary(s.images[t.source_index], 1)
    assert torch.all(t.images <= mask)  # background stays empty
    for i in range(len(t)):  # ink = texture crop inside the mask
        crop = crop_texture(tex[t.texture[i]], *t.offset[i].tolist(), 28, 28)
        assert torch.equal(t.images[i, 0], mask[i, 0] & crop)
    again = textured_omniglot(s, tex, n_per_character=6, seed=0, dilate=1)
    assert torch.equal(again.images, t.images)
    p = t.save(tmp_path / "t.pt")
    assert torch.load(p, weights_only=True)["format"] == "vhe.TexturedSet"
    back = TexturedSet.load(p)
    assert torch.equal(back.images, t.images) and back.texture_names == names and back.dilate == 1
    with pytest.raises(ValueError, match="n_per_character"):
        textured_omniglot(s, tex, 0)


def test_dilate_binary():
    x = torch.zeros(1, 1, 7, 7, dtype=torch.uint8)
    x[0, 0, 3, 3] = 1
    assert int(dilate_binary(x, 1).sum()) == 9 and int(dilate_binary(x, 2).sum()) == 25
    assert torch.equal(dilate_binary(x, 0), x) and dilate_binary(x, 1).dtype == torch.uint8


def _pattern_histograms(images: torch.Tensor) -> torch.Tensor:
    """Normalised histogram of 3x3 binary patterns centred on ink pixels (a shift-invariant texture descriptor)."""
    x = images[:, 0].long()
    p = torch.nn.functional.pad(x, (1, 1, 1, 1))
    code = sum(p[:, dy : dy + 28, dx : dx + 28] << (3 * dy + dx) for dy in range(3) for dx in range(3))
    h = torch.stack([torch.bincount(code[i][x[i] > 0], minlength=512) for i in range(len(x))]).float()
    return h / h.sum(1, keepdim=True).clamp_min(1)


def test_texture_and_character_both_recognisable(chars):
    tex = procedural_textures(8, seed=0)
    t = textured_omniglot(chars, tex, n_per_character=4, seed=1, dilate=1)
    # texture: 1-NN on pattern histograms, references from other characters
    f = _pattern_histograms(t.images)
    ref, qry = t.character < 50, t.character >= 50
    pred = t.texture[ref][torch.cdist(f[qry], f[ref]).argmin(1)]
    tex_acc = (pred == t.texture[qry]).float().mean().item()
    assert tex_acc > 0.85, tex_acc
    # character: 1-NN (cosine on blurred images) against another drawer's untextured drawing, vs the same
    # classifier on the untextured drawings themselves
    sub = t.character < 40
    refs = torch.nonzero((chars.drawer == 0) & (chars.character < 40)).flatten()
    q = sub & (chars.drawer[t.source_index] != 0)

    def emb(x):
        b = torch.nn.functional.avg_pool2d(x.float(), 5, 1, 2).flatten(1)
        return b / b.norm(dim=1, keepdim=True).clamp_min(1e-6)

    R = emb(dilate_binary(chars.images[refs], 1))
    acc_tex = (chars.character[refs][torch.cdist(emb(t.images[q]), R).argmin(1)] == t.character[q]).float().mean()
    plain = dilate_binary(chars.images[t.source_index[q]], 1)
    acc_plain = (chars.character[refs][torch.cdist(emb(plain), R).argmin(1)] == t.character[q]).float().mean()
    assert acc_tex > 0.75 * acc_plain and acc_tex > 5 / 40, (acc_tex, acc_plain)


def test_cli_textured(tmp_path):
    p = synthetic_chars().save(tmp_path / "s.pt")
    out = tmp_path / "t.pt"
    assert (
        cli.main(
            [
                "textured",
                "--set",
                str(p),
                "--out",
                str(out),
                "--n-textures",
                "3",
                "--n-per-character",
                "2",
                "--seed",
                "5",
                "--max-characters",
                "4",
            ]
        )
        == 0
    )
    t = TexturedSet.load(out)
    assert len(t) == 8 and t.n_textures == 3 and t.n_classes == 4 and t.texture_names[0] == "grating_0deg_p3"


# --------------------------------------------------------------------------- texture folders
def _photo(seed, w=64, h=48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w)) * 255).astype(np.uint8))


def test_load_texture_folder_dir_zip_tar(tmp_path, caplog):
    d = tmp_path / "dtd" / "banded"
    d.mkdir(parents=True)
    for i in range(3):
        _photo(i).save(d / f"img{i}.jpg" if i else d / f"img{i}.png")
    (d / "README.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="vhe.data.textures"):
        tex, names = load_texture_folder(tmp_path / "dtd", size=16)
    assert tex.shape == (3, 16, 16) and tex.dtype == torch.uint8 and "README.txt" in caplog.text
    assert names == ["banded/img0.png", "banded/img1.jpg", "banded/img2.jpg"]
    assert 0.3 < tex.float().mean() < 0.7  # median threshold: about half ink
    zp = tmp_path / "t.zip"
    with zipfile.ZipFile(zp, "w") as z:
        for n in names:
            z.write(tmp_path / "dtd" / n, n)
    tz, nz = load_texture_folder(zp, size=16)
    assert nz == names and torch.equal(tz, tex)
    tp = tmp_path / "t.tar.gz"
    with tarfile.open(tp, "w:gz") as tf:
        for n in names:
            tf.add(tmp_path / "dtd" / n, n)
    tt, nt = load_texture_folder(tp, size=16)
    assert nt == names and torch.equal(tt, tex)
    fixed, _ = load_texture_folder(tmp_path / "dtd", size=16, threshold=0.5, crop=32)
    assert fixed.shape == (3, 16, 16) and set(fixed.unique().tolist()) <= {0, 1}


def test_load_texture_folder_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG nope")
    with pytest.raises(DataIntegrityError, match="broken.png"):
        load_texture_folder(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        load_texture_folder(tmp_path / "b")
    with pytest.raises(FileNotFoundError):
        load_texture_folder(tmp_path / "nothing")
    (tmp_path / "c.zip").write_bytes(b"garbage")
    with pytest.raises(DataIntegrityError, match="c.zip"):
        load_texture_folder(tmp_path / "c.zip")


# --------------------------------------------------------------------------- hostile texture sources
def _folder_with_outside(tmp_path):
    """tmp_path/tex with two images, and tmp_path/outside/secret.png (a valid image) beside it."""
    (tmp_path / "tex").mkdir()
    for i in range(2):
        _photo(i).save(tmp_path / "tex" / f"img{i}.png")
    (tmp_path / "outside").mkdir()
    _photo(9).save(tmp_path / "outside" / "secret.png")
    return tmp_path / "tex"


@pytest.mark.parametrize(
    "link, target",
    [
        ("evil.png", "outside/secret.png"),  # a file
        ("sub", "outside"),  # a folder
        ("gone.png", "outside/missing.png"),
    ],
)  # a dangling link
def test_symlink_leaving_the_texture_folder_is_refused(tmp_path, link, target):
    folder = _folder_with_outside(tmp_path)
    (folder / link).symlink_to(tmp_path / target)
    with pytest.raises(
        DataIntegrityError,
        match=rf"tex: '{link}' is a symbolic link to .*{target}, outside the "
        rf"texture folder",
    ):
        load_texture_folder(folder)


def test_symlink_refusal_via_cli_writes_nothing(tmp_path, monkeypatch, capsys):
    folder = _folder_with_outside(tmp_path)
    (folder / "evil.png").symlink_to(tmp_path / "outside" / "secret.png")
    s = synthetic_chars().save(tmp_path / "s.pt")
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    secret = (tmp_path / "outside" / "secret.png").read_bytes()
    assert (
        cli.main(
            [
                "textured",
                "--set",
                str(s),
                "--out",
                str(tmp_path / "t.pt"),
                "--n-textures",
                "2",
                "--n-per-character",
                "2",
                "--texture-folder",
                str(folder),
            ]
        )
        == 1
    )
    assert "'evil.png' is a symbolic link" in capsys.readouterr().err
    assert files_under(tmp_path) == before and (tmp_path / "outside" / "secret.png").read_bytes() == secret


def test_symlink_inside_the_folder_is_skipped_not_followed(tmp_path, caplog):
    folder = _folder_with_outside(tmp_path)
    (folder / "alias.png").symlink_to(folder / "img0.png")
    (folder / "again").symlink_to(folder, target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="vhe.data.textures"):
        tex, names = load_texture_folder(folder, size=8)
    assert names == ["img0.png", "img1.png"] and tex.shape == (2, 8, 8)
    assert "skipping symbolic link alias.png" in caplog.text and "skipping symbolic link again" in caplog.text


def test_texture_image_declaring_a_huge_size_is_refused(tmp_path):
    folder = _folder_with_outside(tmp_path)
    (folder / "huge.png").write_bytes(png_declaring(30000, 30000))
    with pytest.raises(
        DataIntegrityError,
        match=r"tex: 'huge\.png' is not a decodable image "
        r"\(DecompressionBombError.*replace or remove it",
    ):
        load_texture_folder(folder)
    zp = tmp_path / "t.zip"
    with zipfile.ZipFile(zp, "w") as z:
        z.writestr("a/huge.png", png_declaring(30000, 30000))
    with pytest.raises(DataIntegrityError, match=r"t\.zip: 'a/huge\.png' is not a decodable image.*archive is corrupt"):
        load_texture_folder(zp)


def test_texture_archive_members_over_the_limit_or_leaving_it_are_refused(tmp_path, monkeypatch):
    from vhe.data import archives

    tp = tmp_path / "t.tar"
    with tarfile.open(tp, "w") as tf:
        for name in ("ok.png", "../evil.png"):
            buf = io.BytesIO()
            _photo(0).save(buf, format="PNG")
            info = tarfile.TarInfo(name)
            info.size = len(buf.getvalue())
            tf.addfile(info, io.BytesIO(buf.getvalue()))
    with pytest.raises(DataIntegrityError, match=r"t\.tar: member '\.\./evil\.png' has a name that leaves"):
        load_texture_folder(tp)
    zp = tmp_path / "big.zip"
    with zipfile.ZipFile(zp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.png", bytes(50 * 2**20))
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 2**20)
    with pytest.raises(DataIntegrityError, match=r"big\.zip: member 'big\.png' declares 52428800 bytes"):
        load_texture_folder(zp)
