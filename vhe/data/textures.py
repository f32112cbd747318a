"""Binary textures and textured Omniglot (the factorial content x style experiment).

All images in the project are single-channel binary {0, 1} with ink = 1 (uint8 storage), so
Bernoulli decoders apply; textures follow the same convention (1 = ink).

Three texture sources (config ``textures.source``); images (DTD, folders) become binary tiles
through one function (``_binarise``: greyscale, centre square crop, BOX resize, ink below the
median):

- ``procedural`` (the default, and the cpu/smoke profiles; no network): each texture is
  periodic on its ``size`` x ``size`` tile (all wave vectors have an integer number of cycles
  per tile), so a crop at any offset is a circular shift (``torch.roll``) without seams;
- ``dtd`` (the paper profile): the Describable Textures Dataset archive as
  ``torchvision.datasets.DTD`` knows it (its URL and md5, its layout
  ``dtd/images/<category>/*.jpg``), fetched mirror first by ``fetch_dtd`` and converted by
  ``dtd_textures`` (one image per category, categories in name order);
- a local folder, zip or tar of images, converted by ``load_texture_folder``.
"""

from __future__ import annotations

import logging
import math
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..files import atomic_torch_save
from .archives import CORRUPT_ARCHIVE, MemberReader, check_member_name, decode_image
from .fetch import DataIntegrityError, fetch_file, verify_checksum
from .sets import OmniglotSet

log = logging.getLogger(__name__)

_FORMAT = "vhe.TexturedSet"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------- procedural textures
def _wave(size: int, kx: float, ky: float, phase: float) -> torch.Tensor:
    """cos(2*pi*(kx*x + ky*y)/size + phase) on a size x size grid (float64 (size, size)); x = column."""
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    return torch.cos(2 * math.pi * (kx * x + ky * y) / size + phase)


def _cycles(size: int, period: float, angle_deg: float) -> tuple[int, int]:
    """Integer wave vector (cycles per tile) closest to ``period`` pixels at ``angle_deg``."""
    n = size / period
    a = math.radians(angle_deg)
    return int(round(n * math.cos(a))), int(round(n * math.sin(a)))


def texture_catalogue() -> list[tuple[str, str, dict]]:
    """The ordered list of procedural textures as (name, family, parameters).

    Families are interleaved so that the first T textures span all families:
    oriented gratings (0/90/45/135 degrees x periods 3 and 4 px: ink with 1-px gaps), checkerboards
    (cells of 1, 2 and 3.5 px, and a diagonal one), dot lattices (square and hexagonal holes
    in ink, square ink dots) and thresholded smoothed noise (band-pass "mazes" of period 4
    and 6 px, low-pass speckle). Sizes are in pixels at the 28x28 scale; denser-than-half
    textures keep the character's silhouette readable.
    """
    grat = [
        (f"grating_{a}deg_p{p}", "grating", {"angle": a, "period": p, "duty": (p - 1) / p})
        for p in (3, 4)
        for a in (0, 90, 45, 135)
    ]
    check = [
        ("checker_c1", "checker", {"cell": 1, "diagonal": False}),
        ("checker_c2", "checker", {"cell": 2, "diagonal": False}),
        ("checker_diag_k2", "checker", {"cell": 7, "diagonal": True}),
        ("checker_c3.5", "checker", {"cell": 3.5, "diagonal": False}),
    ]
    dots = [
        ("dots_holes_s4", "dots", {"spacing": 4, "hex": False, "holes": True}),
        ("dots_hexholes_s5", "dots", {"spacing": 5, "hex": True, "holes": True}),
        ("dots_ink_s4", "dots", {"spacing": 4, "hex": False, "holes": False}),
    ]
    noise = [
        ("noise_maze_p4", "noise", {"scale": 0.08, "period": 4, "duty": 0.6}),
        ("noise_speckle", "noise", {"scale": 0.8, "period": None, "duty": 0.6}),
        ("noise_maze_p6", "noise", {"scale": 0.05, "period": 6, "duty": 0.6}),
    ]
    fams = [grat, check, dots, noise]
    out = []
    for i in range(max(len(f) for f in fams)):
        for f in fams:
            if i < len(f):
                out.append(f[i])
    return out


def _render(family: str, p: dict, size: int, g: torch.Generator) -> torch.Tensor:
    phase = float(torch.rand((), generator=g, dtype=torch.float64)) * 2 * math.pi
    if family == "grating":
        kx, ky = _cycles(size, p["period"], p["angle"])
        # cos > cos(pi*duty) holds on a fraction `duty` of each period
        return _wave(size, kx, ky, phase) > math.cos(math.pi * p["duty"])
    if family == "checker":
        k = max(1, int(round(size / (2 * p["cell"]))))
        if p["diagonal"]:
            return (_wave(size, k, k, phase) * _wave(size, k, -k, phase + 0.1)) > 0
        return (_wave(size, k, 0, phase + 1e-3) * _wave(size, 0, k, phase + 1e-3)) > 0
    if family == "dots":
        k = max(1, int(round(size / p["spacing"])))
        if p["hex"]:
            # three waves ~120 degrees apart with integer wave vectors: a (near-)hexagonal lattice
            s = (_wave(size, k, 0, phase) + _wave(size, -k // 2, k, phase) + _wave(size, -k // 2, -k, phase)) / 1.5
        else:
            s = _wave(size, k, 0, phase) + _wave(size, 0, k, phase)
        return s <= 1.0 if p["holes"] else s > 1.0
    if family == "noise":
        # periodic white noise filtered in Fourier space: low-pass Gaussian of std `scale` px, or a
        # band-pass ring at 1/period cycles/px of width `scale`; ink where above the (1-duty) quantile
        white = torch.randn(size, size, generator=g, dtype=torch.float64)
        f = torch.fft.fftfreq(size, dtype=torch.float64)
        fy, fx = torch.meshgrid(f, f, indexing="ij")
        r = torch.sqrt(fx**2 + fy**2)
        if p["period"] is None:
            env = torch.exp(-2 * (math.pi * p["scale"]) ** 2 * r**2)
        else:
            env = torch.exp(-0.5 * ((r - 1.0 / p["period"]) / p["scale"]) ** 2)
        smooth = torch.fft.ifft2(torch.fft.fft2(white) * env).real
        return smooth > torch.quantile(smooth.flatten(), 1.0 - p["duty"])
    raise ValueError(f"unknown texture family {family!r}")


def procedural_textures(n_textures: int, size: int = 28, seed: int = 0, return_names: bool = False):
    """The first ``n_textures`` textures of ``texture_catalogue()`` as binary tiles.

    Returns uint8 (T, size, size) in {0, 1} (1 = ink), each periodic on its tile so crops at
    any offset are circular shifts; with ``return_names`` also the list of T names. ``seed``
    sets the phases and the noise (torch.Generator), so output is deterministic per seed.
    """
    cat = texture_catalogue()
    if not 1 <= n_textures <= len(cat):
        raise ValueError(
            f"procedural_textures: n_textures must be in 1..{len(cat)}, got {n_textures} "
            f"(textures.source: dtd or a folder of images gives more)"
        )
    g = torch.Generator().manual_seed(int(seed))
    tex = torch.stack([_render(fam, p, size, g) for _, fam, p in cat[:n_textures]]).to(torch.uint8)
    names = [n for n, _, _ in cat[:n_textures]]
    return (tex, names) if return_names else tex


def texture_family(name: str) -> str:
    """Family of a catalogue texture name ('grating', 'checker', 'dots', 'noise' or 'folder')."""
    for _, fam, _ in texture_catalogue():
        if name.startswith(fam):
            return fam
    return "folder"


# --------------------------------------------------------------------------- texture folders
def _binarise(im: Image.Image, size: int, threshold: float | None, crop: int | None) -> np.ndarray:
    """The one image -> binary texture tile conversion: uint8 (size, size) {0, 1}, ink = 1.

    Greyscale, centre square crop of ``crop`` source pixels (default: the shorter side),
    BOX-resized to ``size`` x ``size`` pixels, ink where intensity/255 < ``threshold`` (default:
    the image's median, so about half the pixels are ink; a flat image falls back to the mean).
    """
    im = im.convert("L")
    w, h = im.size
    side = min(w, h) if crop is None else min(crop, w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BOX)
    a = np.asarray(im, dtype=np.float32) / 255.0
    t = float(np.median(a)) if threshold is None else threshold
    ink = a < t
    if ink.all() or not ink.any():  # flat image: fall back to the mean
        ink = a < a.mean()
    return ink.astype(np.uint8)


#: how a bad file of a texture folder is fixed (an archive's: CORRUPT_ARCHIVE)
_FOLDER_ADVICE = "replace or remove it"


def _folder_files(root: Path) -> list[tuple[str, Path]]:
    """(name relative to ``root``, path) of every regular file under ``root``, sorted by name.

    Symbolic links are never followed: one that points inside ``root`` is skipped with a warning
    (its target is read under its own name), one that points outside raises ``DataIntegrityError``
    naming the link and its target.
    """
    base = root.resolve()
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for n in sorted(dirs + files):
            p = Path(folder) / n
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                target = p.resolve()
                if not target.is_relative_to(base):
                    raise DataIntegrityError(
                        f"{root}: {rel!r} is a symbolic link to {target}, outside the texture "
                        f"folder; links are not followed: copy the file into the folder or "
                        f"remove the link"
                    )
                log.warning("%s: skipping symbolic link %s (links are not followed)", root, rel)
            elif n in files and p.is_file():
                found.append((rel, p))
    return sorted(found)


def _iter_members(path: Path):
    """Yield (name, callable returning the bytes) for every file of a folder, zip or tar archive,
    sorted by name, read lazily within the size limits of ``vhe.data.archives``."""
    if path.is_dir():
        reader = MemberReader(path, advice=_FOLDER_ADVICE)
        for rel, p in _folder_files(path):
            yield rel, (lambda rel=rel, p=p: reader.read_file(p, rel))
    elif path.is_file() and zipfile.is_zipfile(path):
        reader = MemberReader(path)
        try:
            with zipfile.ZipFile(path) as zf:
                for n in sorted(zf.namelist()):
                    if not n.endswith("/"):
                        yield check_member_name(path, n), (lambda n=n: reader.read_zip(zf, n))
        except zipfile.BadZipFile as e:
            raise DataIntegrityError(f"{path} is not a readable zip archive ({e}); delete it and fetch it again") from e
    elif path.is_file() and tarfile.is_tarfile(path):
        reader = MemberReader(path)
        try:
            with tarfile.open(path) as tf:
                for m in reader.scan_tar(tf):  # streaming order (sorted order would need two passes over a .tar.gz)
                    if m.isfile():
                        yield check_member_name(path, m.name), (lambda m=m: reader.read_tar(tf, m))
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataIntegrityError(f"{path} is not a readable tar archive ({e}); delete it and fetch it again") from e
    elif path.is_file():
        raise DataIntegrityError(
            f"{path} is neither a folder nor a readable zip/tar archive; delete it and fetch it again"
        )
    else:
        raise FileNotFoundError(f"texture source {path} does not exist; give a folder, zip or tar of images")


def _image_to_tile(src, name: str, source: Path, size: int, threshold: float | None, crop: int | None) -> np.ndarray:
    """Decode one image (a callable returning its bytes) and ``_binarise`` it.

    Returns uint8 (size, size) {0, 1}; an image that fails to decode, or is over the size limits
    of ``vhe.data.archives``, raises ``DataIntegrityError`` naming ``source`` and the member ``name``.
    """
    advice = _FOLDER_ADVICE if source.is_dir() else CORRUPT_ARCHIVE
    im = decode_image(src(), f"{source}: {name!r}", advice=advice, exif_transpose=True)
    return _binarise(im, size, threshold, crop)


def load_texture_folder(
    path_or_zip: str | os.PathLike, size: int = 28, threshold: float | None = None, crop: int | None = None
) -> tuple[torch.Tensor, list[str]]:
    """Binarise every image of a folder (recursively), zip or tar(.gz) archive into a texture tile.

    Each image: greyscale, centre square crop (``crop`` source pixels, default the shorter
    side), BOX-resized to ``size`` x ``size``, ink = 1 where intensity/255 < ``threshold``
    (default: the image's median, so about half the pixels are ink). Returns uint8
    (T, size, size) {0, 1} and the member names, sorted by name. Non-image files are skipped
    with a warning; an image that fails to decode raises ``DataIntegrityError`` naming it.
    Tiles from photographs are not periodic: crops wrap around with a seam.

    Untrusted input is bounded: files and members are read within the size limits of
    ``vhe.data.archives`` (images within its pixel limit), an archive member named to leave the
    archive is refused, and a folder's symbolic links are never followed -- one that points
    outside the folder raises ``DataIntegrityError`` naming the link; all as corrupt input.
    """
    path = Path(path_or_zip)
    found: list[tuple[str, np.ndarray]] = []
    for name, src in _iter_members(path):
        base = name.rsplit("/", 1)[-1]
        if not name.lower().endswith(IMAGE_EXTENSIONS) or "__MACOSX" in name or base.startswith("._"):
            log.warning("%s: skipping non-image %s", path, name)
            continue
        found.append((name, _image_to_tile(src, name, path, size, threshold, crop)))
    if not found:
        raise ValueError(f"{path} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    found.sort(key=lambda t: t[0])
    return torch.from_numpy(np.stack([t for _, t in found])), [n for n, _ in found]


# --------------------------------------------------------------------------- DTD through torchvision
def dtd_reference() -> tuple[str, str, str]:
    """(URL, md5, archive file name) of the Describable Textures Dataset as
    ``torchvision.datasets.DTD`` gives them (``_URL``, ``_MD5``; read at call time)."""
    from torchvision.datasets import DTD

    return DTD._URL, DTD._MD5, DTD._URL.rstrip("/").rsplit("/", 1)[-1]


def dtd_archive_name() -> str:
    """File name of torchvision's DTD archive (``dtd-r1.0.1.tar.gz``)."""
    return dtd_reference()[2]


#: how the fetch messages describe the archive, where its URL and md5 come from, and the last remedy
_DTD_LABEL = "Describable Textures Dataset, textures.source: dtd"
_DTD_ORIGIN = "torchvision.datasets.DTD"
_DTD_FALLBACK = "Or use textures.source: procedural (no download)."


def _torchvision_downloader(md5: str):
    """A ``vhe.data.fetch`` downloader that calls torchvision's ``download_url`` (``md5`` passed on).

    A failed download that left a non-empty file (torchvision raises ``RuntimeError`` after
    downloading a file with another md5) returns normally, so ``fetch_file`` verifies that file
    and reports both checksums.
    """

    def download(url: str, part: Path, timeout: float) -> None:
        from torchvision.datasets import utils as tv_utils

        try:
            tv_utils.download_url(url, str(part.parent), filename=part.name, md5=md5)
        except (OSError, RuntimeError, ValueError):  # URLError is an OSError; a bad md5 a RuntimeError
            if part.is_file() and part.stat().st_size > 0:
                return
            raise

    return download


def fetch_dtd(
    dest_dir: str | os.PathLike = "resources/raw", mirror: str | os.PathLike | None = None, download: bool = True
) -> Path:
    """Make ``dest_dir/dtd-r1.0.1.tar.gz`` exist with torchvision's md5 and return its path.

    ``vhe.data.fetch.fetch_file`` with ``DTD._URL`` and ``DTD._MD5`` (``dtd_reference``), so in
    the order of every fetch: an existing destination file is verified and kept; else
    ``mirror/dtd-r1.0.1.tar.gz`` (``mirror`` argument, else ``$VHE_DATA_MIRROR``) is verified and
    copied (atomically); else, with ``download``, torchvision's ``download_url`` fetches the URL
    (about 600 MB) into a temporary folder in ``dest_dir`` and the md5 is checked before the file
    is moved into place.

    Raises ``DataIntegrityError`` when a copy has the wrong md5 (the file is named, with both
    checksums and what to do) and ``DataUnavailableError`` when there is no local copy and the
    download is impossible (the message names the file, where it looked and the fix).
    """
    url, md5, name = dtd_reference()
    return fetch_file(
        name,
        url,
        dest_dir,
        md5,
        "md5",
        mirror=mirror,
        download=download,
        downloader=_torchvision_downloader(md5),
        label=_DTD_LABEL,
        origin=_DTD_ORIGIN,
        fallback=_DTD_FALLBACK,
    )


def dtd_textures(
    archive: str | os.PathLike,
    n_textures: int,
    size: int = 28,
    threshold: float | None = None,
    crop: int | None = None,
    verify: bool = True,
) -> tuple[torch.Tensor, list[str]]:
    """Binary texture tiles from torchvision's DTD archive (``dtd-r1.0.1.tar.gz``), read in place.

    The archive's images are ``dtd/images/<category>/<name>.jpg`` (47 categories x 120 images in
    the real set). Textures are taken one image per category, categories in name order, the
    first image (by name) of each; past the last category a second round takes each category's
    second image, and so on, so ``n_textures`` <= 47 gives distinct categories. Each image is
    converted by ``_binarise`` exactly as ``load_texture_folder`` does (``size`` pixels, median
    or ``threshold``, ``crop`` source pixels); tiles are not periodic (crops wrap with a seam).

    Returns uint8 (T, size, size) {0, 1} (ink = 1) and T names ``<category>/<file>``. With
    ``verify`` the archive's md5 is checked first (``DataIntegrityError`` on a mismatch); an
    archive without that layout or with too few images raises ``DataIntegrityError`` /
    ``ValueError``.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(
            f"DTD archive {archive} does not exist; fetch it with "
            f"`python -m vhe.data.cli fetch-dtd --dest {archive.parent}`"
        )
    if verify:
        _, md5, _ = dtd_reference()
        verify_checksum(
            archive,
            md5,
            "md5",
            origin=_DTD_ORIGIN,
            source=f"archive {archive}",
            advice=f"Delete {archive} and fetch it again (`python -m vhe.data.cli fetch-dtd --dest {archive.parent}`).",
        )
    if n_textures < 1:
        raise ValueError(f"dtd_textures: n_textures must be >= 1, got {n_textures}")
    reader = MemberReader(archive)
    try:
        with tarfile.open(archive, "r:*") as tf:
            by_cat: dict[str, list[tarfile.TarInfo]] = {}
            for m in reader.scan_tar(tf):
                parts = m.name.lstrip("./").split("/")
                if (
                    m.isfile()
                    and len(parts) == 4
                    and parts[:2] == ["dtd", "images"]
                    and parts[3].lower().endswith(IMAGE_EXTENSIONS)
                    and not parts[3].startswith("._")
                ):
                    by_cat.setdefault(parts[2], []).append(m)
            if not by_cat:
                raise DataIntegrityError(
                    f"{archive} holds no images in torchvision's DTD layout "
                    f"dtd/images/<category>/*.jpg; delete it and fetch it again"
                )
            cats = sorted(by_cat)
            for c in cats:
                by_cat[c].sort(key=lambda m: m.name)
            total = sum(len(v) for v in by_cat.values())
            if n_textures > total:
                raise ValueError(f"dtd_textures: n_textures={n_textures} but {archive} has {total} images")
            chosen: list[tarfile.TarInfo] = []
            for j in range(max(len(v) for v in by_cat.values())):
                chosen += [by_cat[c][j] for c in cats if j < len(by_cat[c])]
            chosen = chosen[:n_textures]
            tiles: dict[str, np.ndarray] = {}
            for m in sorted(chosen, key=lambda m: m.offset_data):  # archive order: forward reads of the .tar.gz
                tiles[m.name] = _image_to_tile(
                    lambda m=m: reader.read_tar(tf, m), m.name, archive, size, threshold, crop
                )
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataIntegrityError(
            f"{archive} is not a readable tar archive ({type(e).__name__}: {e}); delete it and fetch it again"
        ) from e
    names = ["/".join(m.name.lstrip("./").split("/")[2:]) for m in chosen]
    return torch.from_numpy(np.stack([tiles[m.name] for m in chosen])), names


# --------------------------------------------------------------------------- textured Omniglot
@dataclass(eq=False)  # tensors inside: compare fields explicitly
class TexturedSet:
    """Omniglot characters rendered with textures.

    images: uint8 (N, 1, H, W) {0, 1}, ink = 1 (texture pixels inside the dilated character,
    empty background); character, alphabet, texture: int64 (N,) labels indexing
    ``character_names`` / ``alphabet_names`` / ``texture_names``; image: int64 (N,) unique ids
    0..N-1; source_index: int64 (N,) index of the drawing in the source OmniglotSet; offset:
    int64 (N, 2) texture crop offset (dy, dx) in pixels; textures: uint8 (T, S, S) the tiles.
    """

    images: torch.Tensor
    character: torch.Tensor
    alphabet: torch.Tensor
    texture: torch.Tensor
    image: torch.Tensor
    source_index: torch.Tensor
    offset: torch.Tensor
    textures: torch.Tensor
    character_names: list[str]
    alphabet_names: list[str]
    texture_names: list[str]
    dilate: int = 1
    seed: int = 0

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of characters."""
        return len(self.character_names)

    @property
    def n_textures(self) -> int:
        """Number of textures."""
        return len(self.texture_names)

    def to_dict(self) -> dict:
        """Plain dict (``torch.load(weights_only=True)``-loadable)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {"format": _FORMAT, "version": 1, **d}

    def save(self, path: str | os.PathLike) -> Path:
        """``torch.save`` the plain dict (parent folders created); returns the path."""
        return atomic_torch_save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TexturedSet":
        """Load a set written by ``save`` (``torch.load(weights_only=True)``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; create it with `python -m vhe.data.cli textured`")
        d = torch.load(path, weights_only=True)
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a saved TexturedSet (expected format {_FORMAT!r})")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def dilate_binary(images: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate binary images (..., H, W) {0, 1} with a (2r+1) x (2r+1) square; same shape and dtype."""
    if radius <= 0:
        return images.clone()
    shape = images.shape
    x = images.reshape(-1, 1, *shape[-2:]).to(torch.float32)
    y = F.max_pool2d(x, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return y.reshape(shape).to(images.dtype)


def crop_texture(tile: torch.Tensor, dy: int, dx: int, h: int, w: int) -> torch.Tensor:
    """An h x w window of a periodic tile (S, S) starting at (dy, dx), wrapping around."""
    S0, S1 = tile.shape[-2:]
    rows = (torch.arange(h) + dy) % S0
    cols = (torch.arange(w) + dx) % S1
    return tile[..., rows[:, None], cols[None, :]]


def textured_omniglot(
    s: OmniglotSet,
    textures: torch.Tensor,
    n_per_character: int,
    seed: int = 0,
    dilate: int = 1,
    texture_names: list[str] | None = None,
) -> TexturedSet:
    """Render ``n_per_character`` textured images of every character of ``s``.

    Image = dilate(drawing, ``dilate`` pixels, square) AND texture crop at a random offset;
    background empty. Per character, drawings and textures are taken from seeded random
    permutations (cycled), so each character gets min(M, T) distinct textures and textures
    are balanced. textures: uint8 (T, S, S) {0, 1} periodic tiles. Returns a ``TexturedSet``
    with N = C * M images, uint8 (N, 1, H, W) {0, 1}.
    """
    if n_per_character < 1:
        raise ValueError(f"n_per_character must be >= 1, got {n_per_character}")
    if textures.dim() != 3:
        raise ValueError(f"textures must be (T, S, S), got {tuple(textures.shape)}")
    T = textures.shape[0]
    H, W = s.images.shape[-2:]
    g = torch.Generator().manual_seed(int(seed))
    by_char = [torch.nonzero(s.character == c).flatten() for c in range(s.n_classes)]
    src, tex, char = [], [], []
    for c, idx in enumerate(by_char):
        if len(idx) == 0:
            raise ValueError(f"character {s.character_names[c]!r} has no images")
        d_perm = idx[torch.randperm(len(idx), generator=g)]
        t_perm = torch.randperm(T, generator=g)
        for j in range(n_per_character):
            src.append(int(d_perm[j % len(idx)]))
            tex.append(int(t_perm[j % T]))
            char.append(c)
    n = len(src)
    src_t = torch.tensor(src, dtype=torch.int64)
    tex_t = torch.tensor(tex, dtype=torch.int64)
    offset = torch.stack(
        [
            torch.randint(0, textures.shape[1], (n,), generator=g),
            torch.randint(0, textures.shape[2], (n,), generator=g),
        ],
        dim=1,
    )
    masks = dilate_binary(s.images[src_t], dilate)
    rows = (torch.arange(H)[None, :] + offset[:, :1]) % textures.shape[1]  # (n, H)
    cols = (torch.arange(W)[None, :] + offset[:, 1:]) % textures.shape[2]  # (n, W)
    crops = textures[tex_t[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, H, W)
    images = (masks[:, 0] & crops).to(torch.uint8)[:, None]
    names = texture_names if texture_names is not None else [f"texture{t:02d}" for t in range(T)]
    return TexturedSet(
        images=images,
        character=torch.tensor(char, dtype=torch.int64),
        alphabet=s.alphabet[src_t].clone(),
        texture=tex_t,
        image=torch.arange(n, dtype=torch.int64),
        source_index=src_t,
        offset=offset,
        textures=textures.to(torch.uint8).clone(),
        character_names=list(s.character_names),
        alphabet_names=list(s.alphabet_names),
        texture_names=list(names),
        dilate=int(dilate),
        seed=int(seed),
    )
