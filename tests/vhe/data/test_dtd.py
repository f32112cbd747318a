"""textures.source: dtd -- torchvision's DTD archive (URL + md5), mirror first, converted to binary tiles.

Every test runs on a tiny fake archive in torchvision's layout (dtd/images/<category>/*.jpg and
dtd/labels/*.txt, named dtd-r1.0.1.tar.gz) whose md5 is patched into torchvision.datasets.DTD; the
network is never used (torchvision's download_url is patched in every test).
"""

import hashlib
import re
import shutil
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from PIL import Image
from torchvision.datasets import utils as tv_utils

from vhe.data import cli
from vhe.data.fetch import DataIntegrityError, DataUnavailableError
from vhe.data.textures import TexturedSet, dtd_archive_name, dtd_reference, dtd_textures, fetch_dtd, load_texture_folder

from .helpers import data_dry_run, needs_snakemake, synthetic_chars
from .mirror import REPO

CATEGORIES = {"banded": 3, "dotted": 2, "zigzagged": 2}  # 7 images in 3 categories


def _image(seed: int, w: int = 40, h: int = 32) -> Image.Image:
    """An RGB 'photograph' with a texture-like pattern (stripes + noise), w x h pixels."""
    rng = np.random.default_rng(seed)
    x = np.arange(w)[None, :, None]
    period = 3 + seed % 5
    a = 127 + 100 * np.sin(2 * np.pi * x / period) + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def fake_dtd(tmp_path_factory, monkeypatch):
    """(archive path, its md5, its extracted folder) of a fake DTD, with torchvision's md5 patched to it."""
    root = tmp_path_factory.mktemp("fake_dtd")
    src = root / "src"
    lines = []
    seed = 0
    for cat, n in CATEGORIES.items():
        (src / "dtd" / "images" / cat).mkdir(parents=True)
        for i in range(n, 0, -1):  # written in reverse order: the reader sorts by name
            name = f"{cat}_{i:04d}.jpg"
            _image(seed).save(src / "dtd" / "images" / cat / name, quality=95)
            lines.append(f"{cat}/{name}")
            seed += 1
    (src / "dtd" / "labels").mkdir()
    for split in ("train", "val", "test"):
        (src / "dtd" / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    (src / "dtd" / "imdb").mkdir()
    (src / "dtd" / "imdb" / "imdb.mat").write_bytes(b"not an image")
    archive = root / "upstream" / dtd_archive_name()
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / "dtd", "dtd")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(torchvision.datasets.DTD, "_MD5", md5)
    monkeypatch.delenv("VHE_DATA_MIRROR", raising=False)
    return archive, md5, src


@pytest.fixture
def no_download(monkeypatch):
    """torchvision's download_url raises as without network; returns the list of URLs it was asked for."""
    calls = []

    def boom(url, root, filename=None, md5=None, **k):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(tv_utils, "download_url", boom)
    return calls


# --------------------------------------------------------------------------- torchvision's reference
def test_reference_is_torchvisions():
    url, md5, name = dtd_reference()
    assert url == torchvision.datasets.DTD._URL and md5 == torchvision.datasets.DTD._MD5
    assert name == dtd_archive_name() == "dtd-r1.0.1.tar.gz" and url.endswith("/" + name)
    assert re.fullmatch(r"[0-9a-f]{32}", md5)


def test_fake_archive_is_in_torchvisions_layout(fake_dtd, tmp_path):
    """torchvision.datasets.DTD itself reads the fake archive once extracted (root/dtd/dtd/...)."""
    archive, _, _ = fake_dtd
    tv_utils.extract_archive(str(archive), str(tmp_path / "dtd"))
    ds = torchvision.datasets.DTD(tmp_path, split="train")
    assert len(ds) == sum(CATEGORIES.values()) and ds.classes == sorted(CATEGORIES)


# --------------------------------------------------------------------------- conversion
def test_dtd_textures_one_image_per_category(fake_dtd):
    archive, _, src = fake_dtd
    tex, names = dtd_textures(archive, n_textures=3, size=16)
    assert tex.shape == (3, 16, 16) and tex.dtype == torch.uint8
    assert set(tex.unique().tolist()) == {0, 1}
    assert names == ["banded/banded_0001.jpg", "dotted/dotted_0001.jpg", "zigzagged/zigzagged_0001.jpg"]
    assert all(0.3 < float(t.float().mean()) < 0.7 for t in tex)  # median threshold: about half ink
    # the same conversion as a folder of images (one function: _binarise)
    ref, ref_names = load_texture_folder(src / "dtd" / "images", size=16)
    for t, n in zip(tex, names):
        assert torch.equal(t, ref[ref_names.index(n)])
    # past the last category: each category's second image, then the third
    more, more_names = dtd_textures(archive, n_textures=7, size=28)
    assert more.shape == (7, 28, 28) and more_names[:3] == [n for n in names]
    assert more_names[3:] == [
        "banded/banded_0002.jpg",
        "dotted/dotted_0002.jpg",
        "zigzagged/zigzagged_0002.jpg",
        "banded/banded_0003.jpg",
    ]
    assert len(set(more_names)) == 7
    with pytest.raises(ValueError, match="has 7 images"):
        dtd_textures(archive, n_textures=8)


def test_cli_textured_from_dtd(fake_dtd, tmp_path, no_download):
    archive, _, _ = fake_dtd
    s = synthetic_chars().save(tmp_path / "s.pt")
    out = tmp_path / "t.pt"
    assert (
        cli.main(
            [
                "textured",
                "--set",
                str(s),
                "--out",
                str(out),
                "--n-textures",
                "3",
                "--n-per-character",
                "4",
                "--seed",
                "0",
                "--dtd",
                str(archive),
            ]
        )
        == 0
    )
    t = TexturedSet.load(out)
    assert t.n_textures == 3 and t.textures.shape == (3, 28, 28) and t.textures.dtype == torch.uint8
    assert t.texture_names[0] == "banded/banded_0001.jpg" and len(t) == 6 * 4
    assert t.images.dtype == torch.uint8 and set(t.images.unique().tolist()) <= {0, 1}
    assert no_download == []


# --------------------------------------------------------------------------- mirror first, then torchvision
def test_local_copy_in_raw_is_used_without_network(fake_dtd, tmp_path, no_download):
    archive, _, _ = fake_dtd
    raw = tmp_path / "resources" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(archive, raw / archive.name)
    assert fetch_dtd(raw) == raw / archive.name
    assert no_download == []


def test_mirror_copy_is_verified_and_copied(fake_dtd, tmp_path, monkeypatch, no_download):
    archive, md5, _ = fake_dtd
    monkeypatch.setenv("VHE_DATA_MIRROR", str(archive.parent))
    out = fetch_dtd(tmp_path / "raw")
    assert out == tmp_path / "raw" / archive.name and hashlib.md5(out.read_bytes()).hexdigest() == md5
    assert no_download == [] and sorted(p.name for p in out.parent.iterdir()) == [archive.name]
    # the CLI, with the mirror as an argument
    monkeypatch.delenv("VHE_DATA_MIRROR")
    assert cli.main(["fetch-dtd", "--dest", str(tmp_path / "raw2"), "--mirror", str(archive.parent)]) == 0
    assert (tmp_path / "raw2" / archive.name).is_file()


def test_download_goes_through_torchvision(fake_dtd, tmp_path, monkeypatch):
    """No local copy: torchvision's download_url with DTD's URL and md5; the file lands atomically."""
    archive, md5, _ = fake_dtd
    calls = []

    def fake_download(url, root, filename=None, md5=None, **k):
        calls.append((url, filename, md5))
        shutil.copy(archive, Path(root) / filename)

    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    out = fetch_dtd(tmp_path / "raw")
    assert calls == [(torchvision.datasets.DTD._URL, archive.name, md5)]
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == [archive.name]  # no temp folder left


def test_clear_error_without_archive_and_network(fake_dtd, tmp_path, monkeypatch, no_download, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("VHE_DATA_MIRROR", str(mirror))
    raw = tmp_path / "raw"
    with pytest.raises(DataUnavailableError) as e:
        fetch_dtd(raw)
    msg = str(e.value)
    assert no_download == [torchvision.datasets.DTD._URL]
    for part in (
        "dtd-r1.0.1.tar.gz",
        str(raw / "dtd-r1.0.1.tar.gz"),
        str(mirror / "dtd-r1.0.1.tar.gz"),
        torchvision.datasets.DTD._URL,
        "put the archive at",
        "textures.source: procedural",
        torchvision.datasets.DTD._MD5,
        "URLError",
    ):
        assert part in msg, (part, msg)
    assert not raw.exists() or list(raw.iterdir()) == []  # nothing half-written
    monkeypatch.delenv("VHE_DATA_MIRROR")
    with pytest.raises(DataUnavailableError, match=r"no mirror is set"):
        fetch_dtd(raw)
    with pytest.raises(DataUnavailableError, match="downloading is off"):
        fetch_dtd(raw, download=False)
    assert cli.main(["fetch-dtd", "--dest", str(raw), "--no-download"]) == 1
    assert "textures.source: procedural" in capsys.readouterr().err


def test_wrong_md5_is_refused(fake_dtd, tmp_path, monkeypatch, no_download):
    archive, md5, _ = fake_dtd
    bad = tmp_path / "mirror" / archive.name
    bad.parent.mkdir()
    bad.write_bytes(archive.read_bytes()[:-10] + b"corrupted!")
    bad_md5 = hashlib.md5(bad.read_bytes()).hexdigest()
    monkeypatch.setenv("VHE_DATA_MIRROR", str(bad.parent))
    with pytest.raises(DataIntegrityError) as e:
        fetch_dtd(tmp_path / "raw")
    assert str(bad) in str(e.value) and md5 in str(e.value) and bad_md5 in str(e.value)
    assert not (tmp_path / "raw" / archive.name).exists()
    # an existing file with the wrong md5, and the converter's own check
    raw = tmp_path / "raw2"
    raw.mkdir()
    shutil.copy(bad, raw / archive.name)
    with pytest.raises(DataIntegrityError, match=re.escape(str(raw / archive.name))):
        fetch_dtd(raw)
    with pytest.raises(DataIntegrityError, match="checksum mismatch"):
        dtd_textures(raw / archive.name, n_textures=3)
    # the real DTD md5 (not patched) refuses the fake archive
    monkeypatch.undo()
    with pytest.raises(DataIntegrityError, match=torchvision.datasets.DTD._MD5):
        dtd_textures(archive, n_textures=3)


def test_corrupt_download_is_refused(fake_dtd, tmp_path, monkeypatch):
    archive, md5, _ = fake_dtd

    def corrupt_download(url, root, filename=None, md5=None, **k):
        (Path(root) / filename).write_bytes(b"<html>captive portal</html>")
        raise RuntimeError("File not found or corrupted.")  # what torchvision raises on a bad md5

    monkeypatch.setattr(tv_utils, "download_url", corrupt_download)
    with pytest.raises(DataIntegrityError, match="download of"):
        fetch_dtd(tmp_path / "raw")
    assert list((tmp_path / "raw").iterdir()) == []


# --------------------------------------------------------------------------- profiles and the pipeline rule
def test_profiles_texture_sources():
    src = {
        p: (yaml.safe_load((REPO / "config" / f"{p}.yaml").read_text()).get("textures") or {}).get("source")
        for p in ("config", "cpu", "smoke")
    }
    assert src == {"config": "dtd", "cpu": "procedural", "smoke": "procedural"}


@needs_snakemake
def test_data_rules_dry_run_with_dtd(tmp_path):
    """textures.source: dtd plans fetch_dtd (torchvision's archive into resources/raw/) and textured --dtd."""
    out = data_dry_run(tmp_path, "{source: dtd, n_textures: 8, n_per_character: 2}", run="paper")
    assert "rule fetch_dtd" in out and "vhe.data.cli fetch-dtd --dest resources/raw" in out
    assert "--dtd resources/raw/dtd-r1.0.1.tar.gz" in out
