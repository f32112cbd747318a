"""vhe.data.fetch: manifest, checksums, mirror-first fetching, atomic writes, error messages; rules/data.smk."""

import hashlib
import importlib
import io
import urllib.error
import urllib.request
from pathlib import Path

import pytest

fetch_mod = importlib.import_module("vhe.data.fetch")  # the package re-exports the function `fetch`
from vhe.data.fetch import (
    DEFAULT_MANIFEST,
    DataIntegrityError,
    DataUnavailableError,
    Entry,
    fetch,
    fetch_file,
    file_checksum,
    read_manifest,
    sha256sum,
)

from .helpers import data_dry_run, needs_snakemake
from .mirror import MIRROR

needs_mirror = pytest.mark.skipif(
    not (MIRROR / "MANIFEST.tsv").is_file(), reason=f"Omniglot data mirror not found at {MIRROR} (set VHE_DATA_MIRROR)"
)

PAYLOAD = b"hello omniglot\n" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()
URL = "https://example.invalid/data/file.bin"


@pytest.fixture
def manifest():
    return {"file.bin": Entry(url=URL, sha256=SHA, what="test file")}


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    monkeypatch.delenv("VHE_DATA_MIRROR", raising=False)


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def boom(url, *a, **k):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    return calls


class _Resp:
    def __init__(self, data: bytes, fail_after: int | None = None):
        self._buf = io.BytesIO(data)
        self.headers = {"Content-Length": str(len(data))}
        self._fail_after = fail_after
        self._n = 0

    def read(self, n=-1):
        if self._fail_after is not None and self._n >= self._fail_after:
            raise ConnectionResetError("connection reset (test)")
        chunk = self._buf.read(min(n, 4096) if n and n > 0 else -1)
        self._n += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part") or p.name.startswith("."))


# --------------------------------------------------------------------------- manifest
def test_packaged_manifest_lists_the_five_files():
    m = read_manifest()
    assert set(m) == {
        "train_small.npz",
        "test_small.npz",
        "images_background_small1.zip",
        "images_background_small2.zip",
        "all_runs.zip",
    }
    for e in m.values():
        assert len(e.sha256) == 64 and e.url.startswith("https://")


@needs_mirror
def test_packaged_manifest_is_verbatim_copy_of_mirror():
    assert DEFAULT_MANIFEST.read_bytes() == (MIRROR / "MANIFEST.tsv").read_bytes()


@pytest.mark.parametrize(
    "text, match",
    [
        ("name\turl\tsha256\n", "header"),
        ("file\turl\tsha256\twhat\nx.bin\thttp://a\n", "at least 3"),
        ("file\turl\tsha256\twhat\nx.bin\thttp://a\tnothex\tw\n", "64 hex"),
        (f"file\turl\tsha256\nx\thttp://a\t{SHA}\nx\thttp://b\t{SHA}\n", "duplicate"),
    ],
)
def test_read_manifest_errors_name_the_file(tmp_path, text, match):
    p = tmp_path / "MANIFEST.tsv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        read_manifest(p)
    assert str(p) in str(e.value)


def test_read_manifest_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_manifest(tmp_path / "nope.tsv")


def test_sha256sum(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(PAYLOAD)
    assert sha256sum(p) == SHA


# --------------------------------------------------------------------------- mirror
def test_fetch_from_mirror_argument(tmp_path, manifest, no_network):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "file.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "dest"
    out = fetch("file.bin", dest, manifest, mirror=mirror)
    assert out == dest / "file.bin" and out.read_bytes() == PAYLOAD
    assert _leftovers(dest) == [] and no_network == []


def test_fetch_from_env_mirror(tmp_path, manifest, no_network, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "file.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("VHE_DATA_MIRROR", str(mirror))
    assert fetch("file.bin", tmp_path / "dest", manifest).read_bytes() == PAYLOAD


def test_mirror_with_wrong_checksum(tmp_path, manifest, no_network):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    bad = PAYLOAD + b"x"
    (mirror / "file.bin").write_bytes(bad)
    dest = tmp_path / "dest"
    with pytest.raises(DataIntegrityError) as e:
        fetch("file.bin", dest, manifest, mirror=mirror)
    msg = str(e.value)
    assert "file.bin" in msg and SHA in msg and hashlib.sha256(bad).hexdigest() in msg
    assert str(mirror / "file.bin") in msg and "mirror" in msg.lower()
    assert not (dest / "file.bin").exists() and _leftovers(dest) == []
    assert isinstance(e.value, RuntimeError)


def test_existing_destination_is_verified(tmp_path, manifest, no_network):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "file.bin").write_bytes(PAYLOAD)
    assert fetch("file.bin", dest, manifest).read_bytes() == PAYLOAD
    (dest / "file.bin").write_bytes(b"corrupt")
    with pytest.raises(DataIntegrityError) as e:
        fetch("file.bin", dest, manifest)
    msg = str(e.value)
    assert SHA in msg and hashlib.sha256(b"corrupt").hexdigest() in msg and "Delete" in msg


def test_unknown_name(tmp_path, manifest):
    with pytest.raises(KeyError, match="not in the manifest"):
        fetch("other.bin", tmp_path, manifest)


# --------------------------------------------------------------------------- fetch_file: any URL, sha256 or md5
def test_fetch_file_with_md5(tmp_path, no_network):
    """The path of every fetch (existing file, mirror, download) with an md5 instead of the manifest's sha256."""
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "file.bin").write_bytes(PAYLOAD)
    assert file_checksum(mirror / "file.bin", "md5") == md5
    out = fetch_file("file.bin", URL, tmp_path / "dest", md5.upper(), "md5", mirror=mirror)
    assert out.read_bytes() == PAYLOAD and _leftovers(out.parent) == []
    assert fetch_file("file.bin", URL, tmp_path / "dest", md5, "md5") == out  # existing file, verified
    (mirror / "other.bin").write_bytes(b"tampered")
    with pytest.raises(
        DataIntegrityError, match=f"expected md5 {md5} \\(the test\\), got {hashlib.md5(b'tampered').hexdigest()}"
    ):
        fetch_file("other.bin", URL, tmp_path / "dest", md5, "md5", mirror=mirror, origin="the test")
    with pytest.raises(DataUnavailableError, match="downloading is off.*its md5 must be") as e:
        fetch_file("third.bin", URL, tmp_path / "dest", md5, "md5", download=False, fallback="Or else.")
    assert str(e.value).endswith("Or else.") and no_network == []


def test_fetch_file_downloader_and_bad_checksums(tmp_path):
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    seen = []

    def downloader(url, part, timeout):
        seen.append((url, part.name, part.parent.parent, timeout))
        part.write_bytes(PAYLOAD)

    out = fetch_file("file.bin", URL, tmp_path, md5, "md5", downloader=downloader, timeout=3)
    assert out.read_bytes() == PAYLOAD and seen == [(URL, "file.bin", tmp_path, 3)] and _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="not 32 hex digits"):
        fetch_file("x.bin", URL, tmp_path, SHA, "md5")
    with pytest.raises(ValueError, match="unknown checksum algorithm"):
        fetch_file("x.bin", URL, tmp_path, md5, "crc32")


# --------------------------------------------------------------------------- network
def test_missing_mirror_file_without_network(tmp_path, manifest, no_network):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    dest = tmp_path / "dest"
    with pytest.raises(DataUnavailableError) as e:
        fetch("file.bin", dest, manifest, mirror=mirror)
    msg = str(e.value)
    assert "file.bin" in msg and str(mirror / "file.bin") in msg and URL in msg
    assert "VHE_DATA_MIRROR" in msg and "network" in msg
    assert no_network == [URL]
    assert list(dest.iterdir()) == []


def test_no_mirror_without_network(tmp_path, manifest, no_network):
    with pytest.raises(DataUnavailableError, match="no mirror given"):
        fetch("file.bin", tmp_path / "dest", manifest)


def test_download_ok(tmp_path, manifest, monkeypatch):
    seen = {}

    def fake(url, timeout=None):
        seen["timeout"] = timeout
        return _Resp(PAYLOAD)

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    out = fetch("file.bin", tmp_path, manifest, timeout=7)
    assert out.read_bytes() == PAYLOAD and seen["timeout"] == 7 and _leftovers(tmp_path) == []


def test_download_wrong_checksum_leaves_nothing(tmp_path, manifest, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: _Resp(b"tampered"))
    with pytest.raises(DataIntegrityError) as e:
        fetch("file.bin", tmp_path, manifest)
    msg = str(e.value)
    assert SHA in msg and hashlib.sha256(b"tampered").hexdigest() in msg and URL in msg and "network" in msg
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_is_atomic(tmp_path, manifest, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: _Resp(PAYLOAD, fail_after=4096))
    with pytest.raises(DataUnavailableError, match="ConnectionResetError"):
        fetch("file.bin", tmp_path, manifest)
    assert list(tmp_path.iterdir()) == []


def test_failed_mirror_copy_is_atomic(tmp_path, manifest, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "file.bin").write_bytes(PAYLOAD)

    def broken(src, dst, length=0):
        dst.write(b"partial")
        raise OSError("disk full (test)")

    monkeypatch.setattr(fetch_mod.shutil, "copyfileobj", broken)
    dest = tmp_path / "dest"
    with pytest.raises(OSError, match="disk full"):
        fetch("file.bin", dest, manifest, mirror=mirror)
    assert list(dest.iterdir()) == []


# --------------------------------------------------------------------------- real mirror and CLI
@needs_mirror
def test_fetch_real_mirror_file(tmp_path, no_network):
    out = fetch("all_runs.zip", tmp_path, mirror=MIRROR)
    assert sha256sum(out) == read_manifest()["all_runs.zip"].sha256


def test_cli_ok_and_error(tmp_path, manifest, capsys, no_network):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "file.bin").write_bytes(PAYLOAD)
    tsv = tmp_path / "m.tsv"
    tsv.write_text(f"file\turl\tsha256\twhat\nfile.bin\t{URL}\t{SHA}\tx\n")
    rc = fetch_mod.main(
        ["--name", "file.bin", "--dest", str(tmp_path / "d"), "--manifest", str(tsv), "--mirror", str(mirror)]
    )
    assert rc == 0 and (tmp_path / "d" / "file.bin").read_bytes() == PAYLOAD
    rc = fetch_mod.main(["--name", "file.bin", "--dest", str(tmp_path / "e"), "--manifest", str(tsv)])
    assert rc == 1 and URL in capsys.readouterr().err


# --------------------------------------------------------------------------- Snakemake rules (dry run)
@needs_snakemake
def test_data_rules_dry_run(tmp_path):
    out = data_dry_run(tmp_path, "{source: procedural, n_textures: 4, n_per_character: 2}")
    for rule in (
        "fetch_raw",
        "prepare_background",
        "prepare_evaluation",
        "lake_runs",
        "within_alphabet_runs",
        "textured",
        "data_gap",
    ):
        assert rule in out
    assert "fetch_dtd" not in out and "--dtd" not in out and "--texture-folder" not in out
