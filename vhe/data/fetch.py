"""Fetch public data files: mirror folder first, then the network; always verify the checksum.

``fetch_file(name, url, dest_dir, checksum, algorithm)`` is the one fetching path: existing
file, mirror, download, each verified (SHA-256 or MD5). It never leaves a half-written file
behind: it writes to a temporary file (or folder) in the destination folder and renames it
into place only after the checksum matched.

The manifest (``vhe/data/MANIFEST.tsv``, a verbatim copy of the mirror's) lists every
Omniglot file with its URL and SHA-256 checksum; ``fetch(name, dest_dir)`` fetches one of them.

Command line (used by the Snakemake rules)::

    python -m vhe.data.fetch --name train_small.npz --dest resources/raw \
        [--manifest PATH] [--mirror DIR]

The texture archive of the paper profile (DTD) is not in the manifest: torchvision carries its
URL and md5, and ``vhe.data.textures.fetch_dtd`` passes them to ``fetch_file`` (with
torchvision's downloader).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

DEFAULT_MANIFEST = Path(__file__).with_name("MANIFEST.tsv")
MIRROR_ENV = "VHE_DATA_MIRROR"
DOWNLOAD_TIMEOUT_S = 60.0
#: checksum algorithms ``fetch_file`` accepts (``hashlib`` names)
CHECKSUMS = ("sha256", "md5")
#: ``downloader(url, part, timeout)``: write the file at ``url`` to the path ``part`` (see ``fetch_file``)
Downloader = Callable[[str, Path, float], None]
_CHUNK = 1 << 20
_ARCHIVE_SUFFIXES = (".zip", ".npz", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
#: what a failing download raises (URLError is an OSError; torchvision raises RuntimeError)
_DOWNLOAD_ERRORS = (urllib.error.URLError, OSError, ValueError, http.client.HTTPException, RuntimeError)


class DataIntegrityError(RuntimeError):
    """A file's checksum differs from the expected one (or an archive is corrupt)."""


class DataUnavailableError(RuntimeError):
    """A file is neither in the mirror nor downloadable."""


@dataclass(frozen=True)
class Entry:
    """One manifest row: where a file comes from and its expected SHA-256 (hex, lowercase)."""

    url: str
    sha256: str
    what: str = ""


def read_manifest(path: str | os.PathLike = DEFAULT_MANIFEST) -> dict[str, Entry]:
    """Read a tab-separated manifest with a header ``file url sha256 what``.

    Returns ``{file name: Entry(url, sha256, what)}`` in file order. Raises ``ValueError``
    naming the file and line for a malformed row or a checksum that is not 64 hex digits.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"manifest {path} does not exist; pass --manifest PATH (the package ships one at {DEFAULT_MANIFEST})"
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"manifest {path} is empty; expected a header 'file\\turl\\tsha256\\twhat'")
    header = lines[0].split("\t")
    need = ["file", "url", "sha256"]
    if header[:3] != need:
        raise ValueError(f"manifest {path}: header must start with {need} (tab-separated), got {header}")
    out: dict[str, Entry] = {}
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 3:
            raise ValueError(
                f"manifest {path} line {i}: expected at least 3 tab-separated columns "
                f"(file, url, sha256), got {len(cols)}: {line!r}"
            )
        name, url, sha = cols[0].strip(), cols[1].strip(), cols[2].strip().lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"manifest {path} line {i}: sha256 for {name!r} is not 64 hex digits: {sha!r}")
        if name in out:
            raise ValueError(f"manifest {path} line {i}: duplicate file name {name!r}")
        out[name] = Entry(url=url, sha256=sha, what=cols[3].strip() if len(cols) > 3 else "")
    return out


def file_checksum(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Checksum of a file's bytes as lowercase hex digits (``algorithm``: one of ``CHECKSUMS``; 1 MiB chunks)."""
    h = _hasher(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256sum(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes as 64 lowercase hex digits (reads in 1 MiB chunks)."""
    return file_checksum(path, "sha256")


def _hasher(algorithm: str):
    if algorithm not in CHECKSUMS:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; choose one of {sorted(CHECKSUMS)}")
    return hashlib.new(algorithm, usedforsecurity=False)  # a checksum, not a signature (md5 under FIPS)


def verify_checksum(
    path: str | os.PathLike,
    expected: str,
    algorithm: str = "sha256",
    *,
    name: str | None = None,
    source: str | None = None,
    advice: str = "",
    origin: str = "",
) -> None:
    """Raise ``DataIntegrityError`` unless the file at ``path`` has the checksum ``expected``.

    The message: ``checksum mismatch for <name>: expected <algorithm> <expected> (<origin>), got
    <actual> (source: <source>). <advice>``; ``name`` defaults to the file name, ``source`` to
    the path, ``origin`` (where the expected checksum comes from) is left out when empty.
    """
    path = Path(path)
    actual = file_checksum(path, algorithm)
    if actual != expected.lower():
        where = f" ({origin})" if origin else ""
        raise DataIntegrityError(
            f"checksum mismatch for {name or path.name}: expected {algorithm} {expected.lower()}{where}, got {actual} "
            f"(source: {source or path}). {advice}".rstrip()
        )


def _resolve_mirror(mirror: str | os.PathLike | None) -> Path | None:
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    return Path(mirror) if mirror else None


def _atomic_copy(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` through a temporary file in dest's folder, then rename."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, _CHUNK)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _urllib_download(url: str, part: Path, timeout: float) -> None:
    """The default downloader: stream ``url`` into the file ``part`` with ``urllib``."""
    with open(part, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
        total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
        with tqdm(
            total=int(total) if total else None, unit="B", unit_scale=True, desc=f"download {part.name}", disable=None
        ) as bar:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                bar.update(len(chunk))


def _noun(name: str) -> str:
    """How the messages call a file: 'archive' for an archive (zip, npz, tar), else 'file'."""
    return "archive" if name.lower().endswith(_ARCHIVE_SUFFIXES) else "file"


def fetch_file(
    name: str,
    url: str,
    dest_dir: str | os.PathLike,
    checksum: str,
    algorithm: str = "sha256",
    *,
    mirror: str | os.PathLike | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    download: bool = True,
    downloader: Downloader | None = None,
    label: str = "",
    origin: str = "",
    fallback: str = "",
) -> Path:
    """Make ``dest_dir/name`` exist with the checksum ``checksum`` (``algorithm``: sha256 or md5) and return its path.

    Order: an existing destination file is verified and kept; else ``mirror/name``
    (``mirror`` argument, else ``$VHE_DATA_MIRROR``) is verified and copied; else, with
    ``download``, ``url`` is downloaded by ``downloader(url, part, timeout)`` (default: ``urllib``,
    ``timeout`` seconds per blocking operation), which writes the file ``part`` (named ``name``,
    in a temporary folder inside ``dest_dir``), and verified. Writes are atomic (temporary file
    or folder in ``dest_dir`` + ``os.replace``; removed on failure).

    ``label`` describes the file in the unavailable message, ``origin`` says where the expected
    checksum comes from, ``fallback`` is a last remedy appended to the messages about a failed or
    corrupt download (e.g. another data source).

    Raises ``DataIntegrityError`` on a checksum mismatch (message: file, expected and actual
    checksum, source, what to do) and ``DataUnavailableError`` when the file is not in the
    mirror and downloading is off or fails (any ``OSError`` -- ``URLError`` among them --,
    ``HTTPException``, ``ValueError`` or ``RuntimeError`` of the downloader); the message names
    the file, where it looked, the URL and checksum, and the fix.
    """
    digits = 2 * _hasher(algorithm).digest_size
    checksum = checksum.strip().lower()
    if len(checksum) != digits or any(c not in "0123456789abcdef" for c in checksum):
        raise ValueError(f"{algorithm} checksum for {name!r} is not {digits} hex digits: {checksum!r}")
    fix = f" {fallback}" if fallback else ""
    check = dict(algorithm=algorithm, name=name, origin=origin)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / name

    if dest.exists():
        verify_checksum(
            dest,
            checksum,
            **check,
            source=f"existing file {dest}",
            advice=f"Delete {dest} and run again to fetch a fresh copy (or replace it with a good copy of {url}).",
        )
        log.info("%s already present and verified (%s)", dest, algorithm)
        return dest

    mirror_dir = _resolve_mirror(mirror)
    mirror_file = mirror_dir / name if mirror_dir is not None else None
    if mirror_file is not None and mirror_file.is_file():
        verify_checksum(
            mirror_file,
            checksum,
            **check,
            source=f"mirror file {mirror_file}",
            advice=f"Fix the mirror: replace {mirror_file} with a good copy from {url} (or unset "
            f"${MIRROR_ENV} / --mirror / config data.mirror to download it).",
        )
        _atomic_copy(mirror_file, dest)
        log.info("copied %s from mirror %s", name, mirror_dir)
        return dest

    looked = f"{dest} does not exist, " + (
        f"nor does the mirror file {mirror_file}"
        if mirror_file is not None
        else f"no mirror given (--mirror) and no mirror is set (${MIRROR_ENV} or config data.mirror)"
    )
    by_hand = (
        f"download {url} by hand and put the {_noun(name)} at {dest} or in a mirror folder (${MIRROR_ENV} or "
        f"config data.mirror); its {algorithm} must be {checksum}.{fix}"
    )
    what = f"cannot fetch {name}" + (f" ({label})" if label else "")
    if not download:
        raise DataUnavailableError(f"{what}: {looked}, and downloading is off. Fix: {by_hand}")
    tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{name}."))
    try:
        part = tmp / name
        try:
            (downloader or _urllib_download)(url, part, timeout)
            if not part.is_file():
                raise FileNotFoundError(f"the download wrote no file {part.name}")
        except DataIntegrityError:
            raise
        except _DOWNLOAD_ERRORS as e:
            raise DataUnavailableError(
                f"{what}: {looked}, and downloading {url} failed ({type(e).__name__}: {e}). "
                f"Fix: check the network and retry, or {by_hand}"
            ) from e
        verify_checksum(
            part,
            checksum,
            **check,
            source=f"download of {url}",
            advice=f"The download is corrupt or the file changed upstream: check the network (proxy, "
            f"captive portal) and retry, or put a verified copy in the mirror folder "
            f"(${MIRROR_ENV}).{fix}",
        )
        os.replace(part, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("downloaded %s from %s (%s verified)", name, url, algorithm)
    return dest


def fetch(
    name: str,
    dest_dir: str | os.PathLike,
    manifest: dict[str, Entry] | str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Make ``dest_dir/name`` exist with the manifest's SHA-256 and return its path.

    ``fetch_file`` with the manifest's URL and SHA-256: an existing destination file is verified
    and kept; else ``mirror/name`` (``mirror`` argument, else ``$VHE_DATA_MIRROR``) is verified
    and copied; else the URL is downloaded with ``urllib`` (``timeout`` seconds per blocking
    operation). Writes are atomic (temporary file or folder in ``dest_dir`` + ``os.replace``;
    removed on failure).

    Raises ``KeyError`` for a name not in the manifest, ``DataIntegrityError`` on a checksum
    mismatch (message: file, expected and actual checksum, source, what to do) and
    ``DataUnavailableError`` when the file is not in the mirror and the download fails.
    """
    if manifest is None:
        manifest = DEFAULT_MANIFEST
    if not isinstance(manifest, dict):
        manifest = read_manifest(manifest)
    if name not in manifest:
        raise KeyError(f"{name!r} is not in the manifest; known files: {sorted(manifest)}")
    entry = manifest[name]
    return fetch_file(name, entry.url, dest_dir, entry.sha256, "sha256", mirror=mirror, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: fetch one manifest file into a folder; exit status 1 with a message on error."""
    p = argparse.ArgumentParser(prog="python -m vhe.data.fetch", description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="file name as listed in the manifest")
    p.add_argument("--dest", required=True, help="destination folder")
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="manifest TSV (default: the packaged one)")
    p.add_argument("--mirror", default=None, help=f"mirror folder (default: ${MIRROR_ENV} if set)")
    p.add_argument("--timeout", type=float, default=DOWNLOAD_TIMEOUT_S, help="download timeout, seconds")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        manifest = read_manifest(a.manifest)
        path = fetch(a.name, a.dest, manifest, mirror=a.mirror, timeout=a.timeout)
    except (DataIntegrityError, DataUnavailableError, KeyError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
