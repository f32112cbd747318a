"""Bounded reads of archive members, folder files and images: the one way the data readers get bytes
out of a zip, a tar or a texture folder, and pixels out of an image file.

A fetched file is checked against its checksum, but a texture folder or archive is whatever
``textures.source`` points at, and an archive's headers can lie. So every member goes through a
:class:`MemberReader`, which checks the size its header declares *and* counts the bytes it
actually delivers, and every image through :func:`decode_image`, which checks the pixel count the
image declares before decoding it. The limits, far above the real data:

- :data:`MAX_MEMBER_BYTES` (64 MiB): one member (or folder file), uncompressed. An Omniglot PNG
  (105x105, 1 bit) is about 1 KB, a DTD JPEG at most a few MB.
- :data:`MAX_TOTAL_BYTES` (2 GiB): everything read from one archive or folder in one call. The
  whole DTD archive is about 600 MB, Lake's zips a few MB each.
- :data:`MAX_IMAGE_PIXELS` (40 million, e.g. 8000 x 5000): one image. Omniglot drawings are
  105x105, DTD images at most 640x640.

Images are decoded only in the formats of :data:`IMAGE_FORMATS` (whatever the file's name), so
a file cannot reach one of PIL's riskier decoders (EPS, for one, runs Ghostscript).

A member over a limit, truncated, failing its CRC, or named to leave the archive (absolute, or
with a ``..`` component), and an image over the pixel limit or that does not decode, raise
:class:`vhe.data.fetch.DataIntegrityError` naming the file and the member, in the wording the
readers use for any corrupt archive. The limits are module constants, read at call time.
:func:`open_zip` opens a fetched zip with errors that name the file and say how to fetch it again.
"""

from __future__ import annotations

import io
import os
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps, UnidentifiedImageError

from .fetch import DataIntegrityError

__all__ = [
    "MAX_MEMBER_BYTES",
    "MAX_TOTAL_BYTES",
    "MAX_IMAGE_PIXELS",
    "IMAGE_FORMATS",
    "CORRUPT_ARCHIVE",
    "MemberReader",
    "check_member_name",
    "check_zip_sizes",
    "decode_image",
    "member_error",
    "open_zip",
]

MAX_MEMBER_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 2 * 2**30
MAX_IMAGE_PIXELS = 40_000_000
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
#: what every corrupt-archive message ends with
CORRUPT_ARCHIVE = "the archive is corrupt: delete it and fetch it again"
_CHUNK = 1 << 20
#: what a failing read of a member raises (a CRC or size mismatch, a broken stream; RuntimeError:
#: an encrypted member, NotImplementedError: an unknown compression method)
_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError, ValueError, RuntimeError)
#: what PIL raises for an image it cannot (or must not) decode
_IMAGE_ERRORS = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    zlib.error,
)


def member_error(archive, member: str, reason: str, advice: str = CORRUPT_ARCHIVE) -> DataIntegrityError:
    """The error for a bad member: ``"<archive>: member '<member>' <reason>; <advice>"``."""
    return DataIntegrityError(f"{archive}: member {member!r} {reason}; {advice}")


def open_zip(zip_path: Path) -> zipfile.ZipFile:
    """Open a fetched archive, with errors that name the file and say how to get a good copy."""
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise FileNotFoundError(
            f"{zip_path} does not exist; fetch it with "
            f"`python -m vhe.data.fetch --name {zip_path.name} --dest {zip_path.parent}`"
        )
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataIntegrityError(
            f"{zip_path} is not a readable zip archive ({e}); delete it and fetch it again "
            f"(checksum in vhe/data/MANIFEST.tsv)"
        ) from e


def check_member_name(archive, name: str) -> str:
    """Return ``name`` unless it would leave the archive's folder (absolute, a drive, a ``..``
    component); such a name raises ``DataIntegrityError`` naming the archive and the member."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or ".." in PurePosixPath(posix).parts:
        raise member_error(archive, name, "has a name that leaves the archive's folder (absolute or with '..')")
    return name


def check_zip_sizes(zf: zipfile.ZipFile, archive) -> None:
    """Refuse a zip whose members *declare* more than the limits, before anything is read (a
    ``zipfile`` reader never returns more than a member's declared size)."""
    total = 0
    for info in zf.infolist():
        if info.file_size > MAX_MEMBER_BYTES:
            raise member_error(archive, info.filename, _too_big(info.file_size, declared=True))
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise DataIntegrityError(
            f"{archive}: its members declare {total} bytes in all, over the limit of "
            f"{MAX_TOTAL_BYTES} (vhe.data.archives.MAX_TOTAL_BYTES); {CORRUPT_ARCHIVE}"
        )


def _too_big(n: int, declared: bool) -> str:
    """Why a member over :data:`MAX_MEMBER_BYTES` is refused (``n``: its declared or counted size)."""
    size = f"declares {n} bytes" if declared else f"holds more than {MAX_MEMBER_BYTES} bytes"
    return f"{size} uncompressed, over the limit of {MAX_MEMBER_BYTES} bytes (vhe.data.archives.MAX_MEMBER_BYTES)"


class MemberReader:
    """Reads the members of one archive (or the files of one folder) within the size limits.

    ``archive`` names the archive in errors; ``advice`` ends them. The bytes read so far count
    against :data:`MAX_TOTAL_BYTES` (``total``).
    """

    def __init__(self, archive, advice: str = CORRUPT_ARCHIVE):
        self.archive = archive
        self.advice = advice
        self.total = 0

    def read_zip(self, zf: zipfile.ZipFile, member: str | zipfile.ZipInfo) -> bytes:
        """The bytes of a zip member (``KeyError`` if there is none of that name)."""
        info = member if isinstance(member, zipfile.ZipInfo) else zf.getinfo(member)
        return self._read(lambda: zf.open(info), info.filename, info.file_size)

    def read_tar(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
        """The bytes of a regular-file tar member."""
        if not member.isfile():
            raise self._error(member.name, "is not a regular file (a link or a device)")
        return self._read(lambda: tf.extractfile(member), member.name, member.size)

    def read_file(self, path: Path, name: str) -> bytes:
        """The bytes of a folder file, opened without following a symlink (``name`` as in errors)."""

        def open_nofollow():
            return os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")

        try:
            declared = os.lstat(path).st_size
        except OSError as e:
            raise self._error(name, f"cannot be read ({type(e).__name__}: {e})") from e
        return self._read(open_nofollow, name, declared)

    def scan_tar(self, tf: tarfile.TarFile):
        """Yield the members of ``tf`` in archive order, refusing an archive whose members declare
        more than :data:`MAX_TOTAL_BYTES` in all (a .tar.gz is decompressed to skip a member)."""
        declared = 0
        for m in tf:
            declared += max(m.size, 0)
            if declared > MAX_TOTAL_BYTES:
                raise self._error(
                    m.name,
                    f"takes the sizes declared in {self.archive} past {MAX_TOTAL_BYTES} "
                    f"bytes uncompressed (vhe.data.archives.MAX_TOTAL_BYTES)",
                )
            yield m

    def _error(self, member: str, reason: str) -> DataIntegrityError:
        return member_error(self.archive, member, reason, self.advice)

    def _check(self, member: str, n: int, declared: bool) -> None:
        """Raise if ``n`` bytes of ``member`` (declared, or counted so far) pass a limit."""
        if n > MAX_MEMBER_BYTES:
            raise self._error(member, _too_big(n, declared))
        if self.total + n > MAX_TOTAL_BYTES:
            raise self._error(
                member,
                f"takes what was read from {self.archive} past "
                f"{MAX_TOTAL_BYTES} bytes uncompressed (vhe.data.archives.MAX_TOTAL_BYTES)",
            )

    def _read(self, open_stream: Callable, member: str, declared: int) -> bytes:
        """Read at most the limits and exactly ``declared`` bytes from ``open_stream()``."""
        self._check(member, declared, declared=True)
        buf = bytearray()
        try:
            with open_stream() as stream:
                while chunk := stream.read(min(_CHUNK, declared + 1 - len(buf))):
                    buf += chunk
                    self._check(member, len(buf), declared=False)
                    if len(buf) > declared:
                        raise self._error(member, f"holds more than the {declared} bytes its header declares")
        except DataIntegrityError:
            raise
        except _READ_ERRORS as e:
            raise self._error(member, f"cannot be read ({type(e).__name__}: {e})") from e
        if len(buf) != declared:
            raise self._error(member, f"holds {len(buf)} bytes but its header declares {declared} (truncated)")
        self.total += declared
        return bytes(buf)


def _known_formats() -> list[str]:
    """:data:`IMAGE_FORMATS` that this PIL can open (WEBP needs libwebp)."""
    Image.init()
    return [f for f in IMAGE_FORMATS if f in Image.OPEN]


def decode_image(
    data: bytes,
    where: str,
    what: str = "image",
    advice: str = CORRUPT_ARCHIVE,
    exif_transpose: bool = False,
    mode: str = "L",
) -> Image.Image:
    """Decode an image file's bytes into a PIL image of ``mode``, within :data:`MAX_IMAGE_PIXELS`.

    ``where`` names the file (e.g. ``"<zip>: member 'x.png'"``) in errors; ``what`` the expected
    kind ('PNG'). An image declaring more pixels, PIL's decompression-bomb warning or error, a
    format outside :data:`IMAGE_FORMATS` and anything that fails to decode raise
    ``DataIntegrityError``: ``"<where> is not a decodable <what> (<reason>); <advice>"``. With
    ``exif_transpose`` the EXIF orientation is applied.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_known_formats()) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError(
                        f"it declares {w}x{h} = {w * h} pixels, over the limit of "
                        f"{MAX_IMAGE_PIXELS} (vhe.data.archives.MAX_IMAGE_PIXELS)"
                    )
                im.load()
                out = ImageOps.exif_transpose(im) if exif_transpose else im
                return out.convert(mode)
    except _IMAGE_ERRORS as e:
        raise DataIntegrityError(f"{where} is not a decodable {what} ({type(e).__name__}: {e}); {advice}") from e
