"""Fetch public data files: mirror folder first, then the network; always verify sha256.

The manifest (``vhe/data/MANIFEST.tsv``, a verbatim copy of the mirror's) lists every
file with its URL and SHA-256 checksum. ``fetch`` never leaves a half-written file behind:
it writes to a temporary file in the destination folder and renames it into place only
after the checksum matched.

Command line (used by the Snakemake rules)::

    python -m vhe.data.fetch --name train_small.npz --dest resources/raw \
        [--manifest PATH] [--mirror DIR]

The texture archive of the paper profile (DTD) is not in the manifest: torchvision carries its
URL and md5, and ``vhe.data.textures.fetch_dtd`` fetches it in the same order (existing file,
mirror, network).
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
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

DEFAULT_MANIFEST = Path(__file__).with_name("MANIFEST.tsv")
MIRROR_ENV = "VHE_DATA_MIRROR"
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class DataIntegrityError(RuntimeError):
    """A file's SHA-256 checksum differs from the manifest (or an archive is corrupt)."""


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
        raise FileNotFoundError(f"manifest {path} does not exist; pass --manifest PATH "
                                f"(the package ships one at {DEFAULT_MANIFEST})")
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
            raise ValueError(f"manifest {path} line {i}: expected at least 3 tab-separated columns "
                             f"(file, url, sha256), got {len(cols)}: {line!r}")
        name, url, sha = cols[0].strip(), cols[1].strip(), cols[2].strip().lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"manifest {path} line {i}: sha256 for {name!r} is not 64 hex digits: {sha!r}")
        if name in out:
            raise ValueError(f"manifest {path} line {i}: duplicate file name {name!r}")
        out[name] = Entry(url=url, sha256=sha, what=cols[3].strip() if len(cols) > 3 else "")
    return out


def sha256sum(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes as 64 lowercase hex digits (reads in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _mismatch(name: str, expected: str, actual: str, source: str, advice: str) -> DataIntegrityError:
    return DataIntegrityError(
        f"checksum mismatch for {name}: expected sha256 {expected}, got {actual} "
        f"(source: {source}). {advice}")


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


def _download(url: str, dest: Path, expected: str, name: str, timeout: float) -> None:
    """Stream ``url`` into a temporary file next to ``dest``; rename only if the checksum matches."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      desc=f"download {name}", disable=None) as bar:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        actual = h.hexdigest()
        if actual != expected:
            raise _mismatch(name, expected, actual, url,
                            "The download is corrupt or the file changed upstream: check the network "
                            "(proxy, captive portal) and retry, or put a verified copy in the mirror "
                            f"folder (${MIRROR_ENV}).")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(name: str, dest_dir: str | os.PathLike, manifest: dict[str, Entry] | str | os.PathLike | None = None,
          mirror: str | os.PathLike | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Make ``dest_dir/name`` exist with the manifest's SHA-256 and return its path.

    Order: an existing destination file is verified and kept; else ``mirror/name``
    (``mirror`` argument, else ``$VHE_DATA_MIRROR``) is verified and copied; else the URL is
    downloaded with ``urllib`` (``timeout`` seconds per blocking operation). Writes are atomic
    (temporary file in ``dest_dir`` + ``os.replace``; the temporary file is removed on failure).

    Raises ``DataIntegrityError`` on a checksum mismatch (message: file, expected and actual
    checksum, source, what to do) and ``DataUnavailableError`` when the file is not in the
    mirror and the download fails.
    """
    if manifest is None:
        manifest = DEFAULT_MANIFEST
    if not isinstance(manifest, dict):
        manifest = read_manifest(manifest)
    if name not in manifest:
        raise KeyError(f"{name!r} is not in the manifest; known files: {sorted(manifest)}")
    entry = manifest[name]
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / name

    if dest.exists():
        actual = sha256sum(dest)
        if actual != entry.sha256:
            raise _mismatch(name, entry.sha256, actual, f"existing file {dest}",
                            f"Delete {dest} and run again to fetch a fresh copy.")
        log.info("%s already present and verified", dest)
        return dest

    mirror_dir = _resolve_mirror(mirror)
    mirror_file = mirror_dir / name if mirror_dir is not None else None
    if mirror_file is not None and mirror_file.is_file():
        actual = sha256sum(mirror_file)
        if actual != entry.sha256:
            raise _mismatch(name, entry.sha256, actual, f"mirror file {mirror_file}",
                            f"Fix the mirror: replace {mirror_file} with a good copy from {entry.url} "
                            f"(or unset {MIRROR_ENV} / --mirror to download it).")
        _atomic_copy(mirror_file, dest)
        log.info("copied %s from mirror %s", name, mirror_dir)
        return dest

    try:
        _download(entry.url, dest, entry.sha256, name, timeout)
    except DataIntegrityError:
        raise
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        tried = (f"mirror file {mirror_file} does not exist" if mirror_file is not None
                 else f"no mirror given (--mirror or ${MIRROR_ENV})")
        raise DataUnavailableError(
            f"cannot fetch {name}: {tried}, and downloading {entry.url} failed ({type(e).__name__}: {e}). "
            f"Either check the network, or download {entry.url} by hand into a folder and point "
            f"${MIRROR_ENV} (or config data.mirror) at it; its sha256 must be {entry.sha256}.") from e
    log.info("downloaded %s from %s", name, entry.url)
    return dest


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
