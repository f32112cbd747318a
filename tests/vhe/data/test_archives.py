"""vhe.data.archives: size limits on archive members, folder files and images; names leaving the archive.

Every archive here is built in tmp_path; bombs are made small by lowering the limits (monkeypatch)
or by a header that lies about a highly compressible member.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from vhe.data import archives
from vhe.data.archives import MemberReader, check_member_name, check_zip_sizes, decode_image
from vhe.data.fetch import DataIntegrityError

from .helpers import lie_about_size, png_declaring

MiB = 2**20


# --------------------------------------------------------------------------- crafted inputs
def small_png(size: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(size * size, dtype=np.uint8).reshape(size, size)).save(buf, format="PNG")
    return buf.getvalue()


def zip_with(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


class LyingZip:
    """A zip-like object whose member delivers more bytes than its header declares (a reader
    that trusts headers would take them all)."""

    def __init__(self, declared: int, actual: int):
        self.info = zipfile.ZipInfo("lie.bin")
        self.info.file_size = declared
        self.data = b"x" * actual

    def getinfo(self, name):
        return self.info

    def open(self, info):
        return io.BytesIO(self.data)


# --------------------------------------------------------------------------- zip members
def test_an_honest_member_reads_back(tmp_path):
    p = zip_with(tmp_path / "ok.zip", {"a/x.png": small_png(), "b.txt": b"hello"})
    r = MemberReader(p)
    with zipfile.ZipFile(p) as zf:
        assert r.read_zip(zf, "b.txt") == b"hello"
        assert r.read_zip(zf, zf.getinfo("a/x.png")) == small_png()
        with pytest.raises(KeyError):
            r.read_zip(zf, "missing")
    assert r.total == len(b"hello") + len(small_png())


def test_a_50_mb_member_over_a_lowered_limit_is_refused_before_reading(tmp_path, monkeypatch):
    p = zip_with(tmp_path / "bomb.zip", {"root/big.png": bytes(50 * MiB)})
    assert p.stat().st_size < MiB  # a small file ...
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 4 * MiB)  # ... declaring 50 MB
    with zipfile.ZipFile(p) as zf:
        with pytest.raises(
            DataIntegrityError,
            match=r"bomb\.zip: member 'root/big\.png' declares 52428800 bytes.*"
            r"MAX_MEMBER_BYTES.*archive is corrupt",
        ):
            MemberReader(p).read_zip(zf, "root/big.png")
        with pytest.raises(DataIntegrityError, match=r"bomb\.zip: member 'root/big\.png'"):
            check_zip_sizes(zf, p)


def test_a_member_declaring_little_but_holding_50_mb_is_refused(tmp_path):
    p = zip_with(tmp_path / "liar.zip", {"root/x.png": bytes(50 * MiB)})
    lie_about_size(p, "root/x.png", 1000)
    with zipfile.ZipFile(p) as zf:
        assert zf.getinfo("root/x.png").file_size == 1000
        with pytest.raises(DataIntegrityError, match=r"liar\.zip: member 'root/x\.png' cannot be read.*corrupt"):
            MemberReader(p).read_zip(zf, "root/x.png")


def test_bytes_are_counted_whatever_the_header_says(tmp_path, monkeypatch):
    with pytest.raises(DataIntegrityError, match=r"'lie\.bin' holds more than the 10 bytes its header declares"):
        MemberReader("fake.zip").read_zip(LyingZip(declared=10, actual=5000), "lie.bin")
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 100)
    with pytest.raises(DataIntegrityError, match=r"'lie\.bin' holds more than 100 bytes uncompressed"):
        MemberReader("fake.zip").read_zip(LyingZip(declared=100, actual=5000), "lie.bin")


def test_a_member_shorter_than_declared_is_refused(tmp_path):
    p = zip_with(tmp_path / "short.zip", {"x.bin": bytes(1000)})
    lie_about_size(p, "x.bin", 5000)
    with zipfile.ZipFile(p) as zf:
        with pytest.raises(DataIntegrityError, match=r"short\.zip: member 'x\.bin'"):
            MemberReader(p).read_zip(zf, "x.bin")


def test_the_total_read_from_one_archive_is_limited(tmp_path, monkeypatch):
    p = zip_with(tmp_path / "many.zip", {f"m{i}.bin": bytes(400) for i in range(3)})
    monkeypatch.setattr(archives, "MAX_TOTAL_BYTES", 1000)
    r = MemberReader(p)
    with zipfile.ZipFile(p) as zf:
        r.read_zip(zf, "m0.bin")
        r.read_zip(zf, "m1.bin")
        with pytest.raises(
            DataIntegrityError,
            match=r"member 'm2\.bin' takes what was read from .*many\.zip past 1000 "
            r"bytes.*MAX_TOTAL_BYTES",
        ):
            r.read_zip(zf, "m2.bin")
        with pytest.raises(DataIntegrityError, match=r"many\.zip: its members declare 1200 bytes in all"):
            check_zip_sizes(zf, p)


# --------------------------------------------------------------------------- tar members and folder files
def test_tar_members_are_limited_too(tmp_path, monkeypatch):
    p = tmp_path / "t.tar.gz"
    with tarfile.open(p, "w:gz") as tf:
        for name, size in (("a.bin", 100), ("big.bin", 5000)):
            info = tarfile.TarInfo(name)
            info.size = size
            tf.addfile(info, io.BytesIO(bytes(size)))
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 1000)
    r = MemberReader(p)
    with tarfile.open(p) as tf:
        members = {m.name: m for m in r.scan_tar(tf)}
        assert r.read_tar(tf, members["a.bin"]) == bytes(100)
        with pytest.raises(DataIntegrityError, match=r"t\.tar\.gz: member 'big\.bin' declares 5000 bytes"):
            r.read_tar(tf, members["big.bin"])
    monkeypatch.setattr(archives, "MAX_TOTAL_BYTES", 1000)
    with tarfile.open(p) as tf:
        with pytest.raises(DataIntegrityError, match=r"member 'big\.bin' takes the sizes declared in .* past 1000"):
            list(MemberReader(p).scan_tar(tf))


def test_folder_files_are_read_without_following_links(tmp_path, monkeypatch):
    (tmp_path / "a.bin").write_bytes(bytes(50))
    (tmp_path / "link.bin").symlink_to(tmp_path / "a.bin")
    r = MemberReader(tmp_path, advice="replace or remove it")
    assert r.read_file(tmp_path / "a.bin", "a.bin") == bytes(50)
    with pytest.raises(DataIntegrityError, match=r"member 'link\.bin' cannot be read"):
        r.read_file(tmp_path / "link.bin", "link.bin")
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 10)
    with pytest.raises(DataIntegrityError, match=r"member 'a\.bin' declares 50 bytes.*; replace or remove it"):
        r.read_file(tmp_path / "a.bin", "a.bin")


@pytest.mark.parametrize("name", ["../evil.png", "/etc/evil.png", "a/../../evil.png", "..\\evil.png", "C:/evil.png"])
def test_member_names_that_leave_the_archive_are_refused(name):
    with pytest.raises(DataIntegrityError, match=r"x\.zip: member .*evil\.png.* leaves the archive"):
        check_member_name("x.zip", name)


def test_ordinary_member_names_pass():
    for name in ("a/b.png", "a..b.png", "dtd/images/banded/banded_0001.jpg", "./a.png"):
        assert check_member_name("x.zip", name) == name


# --------------------------------------------------------------------------- images
def test_decode_image_returns_a_grey_image():
    im = decode_image(small_png(12), "x.zip: member 'a.png'")
    assert im.mode == "L" and im.size == (12, 12)


@pytest.mark.parametrize(
    "w, h, cause",
    [
        (30000, 30000, "DecompressionBombError"),  # PIL refuses at open
        (10000, 10000, "DecompressionBombWarning"),  # PIL only warns
        (7000, 7000, "over the limit of 40000000"),
    ],
)  # our own, lower limit
def test_an_image_declaring_too_many_pixels_is_refused(w, h, cause):
    data = png_declaring(w, h)
    assert len(data) < 200
    with pytest.raises(DataIntegrityError, match=rf"runs\.zip: member 'r/a\.png' is not a decodable PNG \(.*{cause}"):
        decode_image(data, "runs.zip: member 'r/a.png'", "PNG")


def test_the_pixel_limit_is_read_at_call_time(monkeypatch):
    monkeypatch.setattr(archives, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataIntegrityError, match=r"12x12 = 144 pixels, over the limit of 100"):
        decode_image(small_png(12), "f.png")


@pytest.mark.parametrize("data", [b"\x89PNG not really", small_png(40)[:60], b""])
def test_undecodable_bytes_name_the_file(data):
    with pytest.raises(DataIntegrityError, match=r"^folder: 'x\.png' is not a decodable image .*; replace it$"):
        decode_image(data, "folder: 'x.png'", advice="replace it")


def test_formats_outside_the_list_are_not_decoded():
    ppm = b"P5 2 2 255\n" + bytes([0, 255, 255, 0])  # a valid greyscale PPM: PIL reads it, we do not
    assert Image.open(io.BytesIO(ppm)).size == (2, 2)
    with pytest.raises(DataIntegrityError, match=r"'a\.png' is not a decodable image \(UnidentifiedImageError"):
        decode_image(ppm, "t.zip: 'a.png'")


def test_a_member_with_an_unknown_compression_method_is_refused(tmp_path):
    p = zip_with(tmp_path / "odd.zip", {"x.bin": bytes(100)})
    raw = bytearray(p.read_bytes())
    for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # compression method: 99 (AES, unsupported)
        i = raw.find(sig)
        raw[i + at : i + at + 2] = struct.pack("<H", 99)
    p.write_bytes(bytes(raw))
    with zipfile.ZipFile(p) as zf:
        with pytest.raises(DataIntegrityError, match=r"odd\.zip: member 'x\.bin' cannot be read \(NotImplementedError"):
            MemberReader(p).read_zip(zf, "x.bin")
