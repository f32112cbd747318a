"""Omniglot readers and set operations.

Every image in the project is single-channel binary: uint8 (N, 1, 28, 28) with values
{0, 1}, ink = 1 (so Bernoulli decoders apply). Two sources:

- the 28x28 arrays ``train_small.npz`` / ``test_small.npz`` (default; ``load_npz_arrays``);
- Lake's original 105x105 PNG archives (``load_lake_archive``), resized by ``preprocess_105``.

Measured (docs/data_gap.md): the arrays are exactly the originals resampled with
nearest-neighbour at the *corner-aligned* grid, i.e. array pixel (i, j) = original pixel
(floor(i*105/28), floor(j*105/28)) -- the convention of ``torch.nn.functional.interpolate(
mode="nearest")`` and OpenCV's INTER_NEAREST. ``preprocess_105`` reproduces this with PIL
(``filter="nearest", align="corner"``, the defaults): each of the 5,840 drawings in
images_background_small1/2 (4,840 distinct; Greek and Latin are in both) and each of the 800
images in all_runs.zip equals an array image bit for bit.
PIL's own default (centre-aligned) grid is offset by half an output pixel and agrees on
only about 95% of pixels.
"""
from __future__ import annotations

import io
import logging
import math
import os
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from ..files import atomic_torch_save
from .fetch import DataIntegrityError

log = logging.getLogger(__name__)

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
#: Defaults chosen by measurement (vhe.data.gap.choose_preprocessing; docs/data_gap.md).
DEFAULT_FILTER = "nearest"
DEFAULT_THRESHOLD = 0.5
DEFAULT_ALIGN = "corner"
IMAGE_SIZE = 28
_FORMAT = "vhe.OmniglotSet"


# --------------------------------------------------------------------------- the set
@dataclass(eq=False)  # tensors inside: compare fields explicitly
class OmniglotSet:
    """A labelled set of binary character images.

    images: uint8 (N, 1, H, W) in {0, 1}, ink = 1. character / alphabet / drawer: int64 (N,);
    character in 0..C-1 indexes ``character_names`` ('Alphabet/characterNN'), alphabet in
    0..A-1 indexes ``alphabet_names``; drawer is the drawing's index within its character
    (0..19; for the npz arrays the row index, see docs/data_gap.md).
    """

    images: torch.Tensor
    character: torch.Tensor
    alphabet: torch.Tensor
    drawer: torch.Tensor
    character_names: list[str]
    alphabet_names: list[str]
    source: str = ""

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dim() != 4 or self.images.shape[1] != 1:
            raise ValueError(f"OmniglotSet.images must be (N, 1, H, W), got {tuple(self.images.shape)}")
        if self.images.dtype != torch.uint8:
            raise ValueError(f"OmniglotSet.images must be uint8 {{0, 1}}, got {self.images.dtype}")
        for name in ("character", "alphabet", "drawer"):
            t = getattr(self, name)
            if t.dtype != torch.int64 or t.shape != (n,):
                raise ValueError(f"OmniglotSet.{name} must be int64 of shape ({n},), "
                                 f"got {t.dtype} {tuple(t.shape)}")
        self.character_names = list(self.character_names)
        self.alphabet_names = list(self.alphabet_names)
        if n and int(self.character.max()) >= len(self.character_names):
            raise ValueError("OmniglotSet.character has labels beyond character_names")
        if n and int(self.alphabet.max()) >= len(self.alphabet_names):
            raise ValueError("OmniglotSet.alphabet has labels beyond alphabet_names")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of characters C (classes)."""
        return len(self.character_names)

    @property
    def n_alphabets(self) -> int:
        """Number of alphabets A."""
        return len(self.alphabet_names)

    def character_alphabet(self) -> torch.Tensor:
        """int64 (C,): the alphabet index of each character."""
        out = torch.full((self.n_classes,), -1, dtype=torch.int64)
        out[self.character] = self.alphabet
        return out

    def class_counts(self) -> torch.Tensor:
        """int64 (C,): number of images per character."""
        return torch.bincount(self.character, minlength=self.n_classes)

    def subset(self, mask_or_index: torch.Tensor | np.ndarray | Sequence[int]) -> "OmniglotSet":
        """Keep the images selected by a bool mask (N,) or an index (M,); re-map character and
        alphabet labels to be contiguous (0..C'-1, 0..A'-1) in their original order."""
        sel = torch.as_tensor(mask_or_index)
        if sel.dtype == torch.bool:
            if sel.shape != (len(self),):
                raise ValueError(f"subset: bool mask must have shape ({len(self)},), got {tuple(sel.shape)}")
            idx = sel.nonzero().flatten()
        else:
            idx = sel.to(torch.int64).flatten()
        chars, new_char = torch.unique(self.character[idx], sorted=True, return_inverse=True)
        alphas, new_alpha = torch.unique(self.alphabet[idx], sorted=True, return_inverse=True)
        return OmniglotSet(
            images=self.images[idx].clone(), character=new_char.to(torch.int64),
            alphabet=new_alpha.to(torch.int64), drawer=self.drawer[idx].clone(),
            character_names=[self.character_names[i] for i in chars.tolist()],
            alphabet_names=[self.alphabet_names[i] for i in alphas.tolist()], source=self.source)

    def first_characters(self, k: int | None) -> "OmniglotSet":
        """The first ``k`` characters in label (= sorted name) order; ``None`` keeps all."""
        if k is None or k >= self.n_classes:
            return self
        if k <= 0:
            raise ValueError(f"max_characters must be positive, got {k}")
        return self.subset(self.character < k)

    def to_dict(self) -> dict:
        """Plain dict of tensors, lists and strings (loadable with ``torch.load(weights_only=True)``)."""
        return {"format": _FORMAT, "version": 1, "images": self.images, "character": self.character,
                "alphabet": self.alphabet, "drawer": self.drawer,
                "character_names": list(self.character_names), "alphabet_names": list(self.alphabet_names),
                "source": self.source}

    @classmethod
    def from_dict(cls, d: dict, where: str = "dict") -> "OmniglotSet":
        """Inverse of ``to_dict``; ``where`` names the origin in error messages."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"{where} is not a saved OmniglotSet (format key {d.get('format') if isinstance(d, dict) else type(d)!r}); "
                             f"create it with `python -m vhe.data.cli prepare-omniglot`")
        return cls(images=d["images"], character=d["character"], alphabet=d["alphabet"], drawer=d["drawer"],
                   character_names=d["character_names"], alphabet_names=d["alphabet_names"],
                   source=d.get("source", ""))

    def save(self, path: str | os.PathLike) -> Path:
        """``torch.save`` a plain dict to ``path`` (parent folders created); returns the path."""
        return atomic_torch_save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "OmniglotSet":
        """Load a set written by ``save`` (uses ``torch.load(weights_only=True)``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; create it with `python -m vhe.data.cli prepare-omniglot`")
        return cls.from_dict(torch.load(path, weights_only=True), where=str(path))


# --------------------------------------------------------------------------- 28x28 arrays

def open_zip(zip_path: Path) -> zipfile.ZipFile:
    """Open a fetched archive, with errors that name the file and say how to get a good copy."""
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise FileNotFoundError(f"{zip_path} does not exist; fetch it with "
                                f"`python -m vhe.data.fetch --name {zip_path.name} --dest {zip_path.parent}`")
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataIntegrityError(f"{zip_path} is not a readable zip archive ({e}); delete it and fetch it again "
                                 f"(checksum in vhe/data/MANIFEST.tsv)") from e

def load_npz_arrays(path: str | os.PathLike, max_characters: int | None = None) -> OmniglotSet:
    """Read ``train_small.npz`` / ``test_small.npz``.

    Input keys 'images_<split>/<Alphabet>/characterNN', each uint8 (n, 784) with 0 = ink and
    255 = paper. Returns an ``OmniglotSet`` with images uint8 (N, 1, 28, 28) {0, 1} (ink = 1),
    characters and alphabets labelled in sorted key order, drawer = row index within the
    character. ``max_characters`` keeps the first K characters (smoke runs).
    Raises ``DataIntegrityError`` for an unreadable file and ``ValueError`` naming the class
    for an empty class, an image that is not 784 values, or values outside {0, 255}.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; fetch it with `python -m vhe.data.fetch --name {path.name} "
                                f"--dest {path.parent}`")
    try:
        npz = np.load(path, allow_pickle=False)
        keys = sorted(npz.files)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataIntegrityError(f"{path} is not a readable .npz archive ({type(e).__name__}: {e}); "
                                 f"delete it and fetch it again (its checksum is in vhe/data/MANIFEST.tsv)") from e
    if not keys:
        raise ValueError(f"{path} contains no arrays; expected keys 'images_<split>/<Alphabet>/characterNN'")
    parsed = []
    for k in keys:
        parts = k.strip("/").split("/")
        if len(parts) < 2:
            raise ValueError(f"{path}: key {k!r} is not '<split>/<Alphabet>/characterNN'")
        parsed.append((parts[-2], parts[-1], k))
    parsed.sort()
    if max_characters is not None:
        parsed = parsed[:max_characters]

    images, character, alphabet, drawer = [], [], [], []
    alphabet_names = sorted({a for a, _, _ in parsed})
    a_index = {a: i for i, a in enumerate(alphabet_names)}
    character_names = []
    with npz:
        for ci, (a, c, k) in enumerate(tqdm(parsed, desc=f"read {path.name}", disable=None)):
            name = f"{a}/{c}"
            try:
                arr = npz[k]
            except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
                raise DataIntegrityError(f"{path}: cannot read array {k!r} ({type(e).__name__}: {e}); "
                                         f"delete the file and fetch it again") from e
            if arr.ndim == 1:
                arr = arr[None]
            if arr.shape[0] == 0:
                raise ValueError(f"{path}: class {name!r} (key {k!r}) has no images")
            arr = arr.reshape(arr.shape[0], -1)
            if arr.shape[1] != IMAGE_SIZE * IMAGE_SIZE:
                raise ValueError(f"{path}: class {name!r} (key {k!r}) has images of {arr.shape[1]} values, "
                                 f"expected {IMAGE_SIZE * IMAGE_SIZE} (28x28)")
            bad = np.setdiff1d(np.unique(arr), [0, 255])
            if bad.size:
                raise ValueError(f"{path}: class {name!r} (key {k!r}) has pixel values {bad[:5].tolist()} "
                                 f"outside {{0, 255}}; expected binarised images (0 = ink, 255 = paper)")
            n = arr.shape[0]
            images.append(torch.from_numpy((arr == 0).astype(np.uint8)).view(n, 1, IMAGE_SIZE, IMAGE_SIZE))
            character.append(torch.full((n,), ci, dtype=torch.int64))
            alphabet.append(torch.full((n,), a_index[a], dtype=torch.int64))
            drawer.append(torch.arange(n, dtype=torch.int64))
            character_names.append(name)
    return OmniglotSet(images=torch.cat(images), character=torch.cat(character), alphabet=torch.cat(alphabet),
                       drawer=torch.cat(drawer), character_names=character_names,
                       alphabet_names=alphabet_names, source=str(path.name))


# --------------------------------------------------------------------------- 105x105 originals
def _to_pil_gray(img) -> Image.Image:
    if isinstance(img, Image.Image):
        return img.convert("L")
    a = np.asarray(img)
    if a.ndim != 2:
        raise ValueError(f"preprocess_105 expects a 2-D greyscale image, got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    else:
        a = a.astype(np.uint8)
    return Image.fromarray(a)  # 2-D uint8 -> mode "L"


def preprocess_105(img, size: int = IMAGE_SIZE, filter: str = DEFAULT_FILTER,
                   threshold: float = DEFAULT_THRESHOLD, align: str = DEFAULT_ALIGN) -> np.ndarray:
    """Resize one original drawing (paper bright, ink dark) to a binary ``size`` x ``size`` image.

    img: PIL image (any mode) or 2-D array: uint8 0..255, float in [0, 1], or bool (True =
    paper, like PIL mode '1'). filter: a PIL resampling name (``FILTERS``). align: 'center'
    (PIL's grid: output pixel i covers input [i*s, (i+1)*s), s = W/size) or 'corner' (output
    pixel i centred on input coordinate i*s, e.g. nearest picks input pixel floor(i*s), as
    torch/OpenCV nearest do; done with PIL's ``box`` on a paper-padded copy).
    threshold: ink where 1 - intensity/255 > threshold (intensity after resampling).
    Returns uint8 (size, size) in {0, 1}, ink = 1.
    """
    key = filter.lower() if isinstance(filter, str) else filter
    if key not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; choose one of {sorted(FILTERS)}")
    if align not in ("center", "corner"):
        raise ValueError(f"align must be 'center' or 'corner', got {align!r}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    im = _to_pil_gray(img)
    w, h = im.size
    if align == "corner":
        hx, hy = w / size / 2.0, h / size / 2.0
        pad = int(math.ceil(max(hx, hy))) + 1
        im = ImageOps.expand(im, border=pad, fill=255)
        box = (pad - hx, pad - hy, pad - hx + w, pad - hy + h)
        out = im.resize((size, size), FILTERS[key], box=box)
    else:
        out = im.resize((size, size), FILTERS[key])
    ink = 1.0 - np.asarray(out, dtype=np.float32) / 255.0
    return (ink > threshold).astype(np.uint8)


_DRAWER_RE = re.compile(r"_(\d+)$")


def _is_junk(member: str) -> bool:
    parts = member.split("/")
    return any(p.startswith("__MACOSX") for p in parts) or parts[-1].startswith("._")


@dataclass(eq=False)  # tensors inside: compare fields explicitly
class LakeOriginals:
    """Decoded original drawings before resizing.

    gray: uint8 (N, H, W) intensities 0..255, paper bright (255) and ink dark (0); character,
    alphabet, drawer: int64 (N,); names as in ``OmniglotSet``.
    """

    gray: torch.Tensor
    character: torch.Tensor
    alphabet: torch.Tensor
    drawer: torch.Tensor
    character_names: list[str]
    alphabet_names: list[str]
    source: str = ""

    def resize(self, size: int = IMAGE_SIZE, filter: str = DEFAULT_FILTER, threshold: float = DEFAULT_THRESHOLD,
               align: str = DEFAULT_ALIGN) -> OmniglotSet:
        """``preprocess_105`` every drawing; returns an ``OmniglotSet`` of uint8 (N, 1, size, size) {0, 1}."""
        imgs = np.stack([preprocess_105(g, size, filter, threshold, align) for g in self.gray.numpy()])
        return OmniglotSet(images=torch.from_numpy(imgs)[:, None], character=self.character.clone(),
                           alphabet=self.alphabet.clone(), drawer=self.drawer.clone(),
                           character_names=list(self.character_names), alphabet_names=list(self.alphabet_names),
                           source=self.source)


def _iter_lake_archive(zip_path: Path, max_characters: int | None):
    """Scan a Lake archive; returns (character keys, alphabet names, generator of
    (char index, alphabet index, drawer, PIL image 'L')). Validation as in ``load_lake_archive``."""
    zf = open_zip(zip_path)
    pngs: list[zipfile.ZipInfo] = []
    folders: set[str] = set()      # every folder that holds a file or is listed
    for info in zf.infolist():
        name = info.filename
        if _is_junk(name):
            log.warning("%s: skipping non-image member %s", zip_path.name, name)
            continue
        if info.is_dir():
            folders.add(name.rstrip("/"))
            continue
        folders.add(name.rsplit("/", 1)[0] if "/" in name else "")
        if name.lower().endswith(".png"):
            pngs.append(info)
        else:
            log.warning("%s: skipping non-image member %s", zip_path.name, name)
    if not pngs:
        zf.close()
        raise ValueError(f"{zip_path} contains no .png images; expected "
                         f"'<root>/<Alphabet>/characterNN/<id>_<drawer>.png'")
    depths = sorted({p.filename.count("/") for p in pngs})
    if len(depths) != 1 or depths[0] < 2:
        zf.close()
        raise ValueError(f"{zip_path}: images are not all at '<root>/<Alphabet>/characterNN/*.png' "
                         f"(found folder depths {depths})")
    by_char: dict[tuple[str, str], list[zipfile.ZipInfo]] = defaultdict(list)
    for info in pngs:
        parts = info.filename.split("/")
        by_char[(parts[-3], parts[-2])].append(info)
    for folder in sorted(folders):
        parts = folder.split("/") if folder else []
        if len(parts) == depths[0] and (parts[-2], parts[-1]) not in by_char:
            zf.close()
            raise ValueError(f"{zip_path}: character folder {folder!r} contains no .png images "
                             f"(a character needs at least one drawing)")
    keys = sorted(by_char)
    if max_characters is not None:
        keys = keys[:max_characters]
    alphabet_names = sorted({a for a, _ in keys})
    a_index = {a: i for i, a in enumerate(alphabet_names)}

    def gen():
        total = sum(len(by_char[k]) for k in keys)
        with zf, tqdm(total=total, desc=f"read {zip_path.name}", disable=None) as bar:
            for ci, key in enumerate(keys):
                for pos, info in enumerate(sorted(by_char[key], key=lambda i: i.filename)):
                    try:
                        with Image.open(io.BytesIO(zf.read(info))) as im:
                            im = im.convert("L")
                    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, zipfile.BadZipFile) as e:
                        raise DataIntegrityError(
                            f"{zip_path}: member {info.filename!r} is not a decodable PNG "
                            f"({type(e).__name__}: {e}); the archive is corrupt: delete it and fetch it again") from e
                    m = _DRAWER_RE.search(Path(info.filename).stem)
                    yield ci, a_index[key[0]], (int(m.group(1)) - 1 if m else pos), im
                    bar.update(1)

    return keys, alphabet_names, gen()


def read_lake_originals(zip_path: str | os.PathLike, max_characters: int | None = None) -> LakeOriginals:
    """Decode every drawing of a Lake archive without resizing (see ``LakeOriginals``); all
    drawings must have the same size (105x105 in Lake's archives)."""
    zip_path = Path(zip_path)
    keys, alphabet_names, items = _iter_lake_archive(zip_path, max_characters)
    gray, character, alphabet, drawer = [], [], [], []
    for ci, ai, d, im in items:
        gray.append(np.asarray(im, dtype=np.uint8))
        character.append(ci)
        alphabet.append(ai)
        drawer.append(d)
    shapes = {g.shape for g in gray}
    if len(shapes) != 1:
        raise ValueError(f"{zip_path}: drawings have different sizes {sorted(shapes)}; use load_lake_archive")
    return LakeOriginals(gray=torch.from_numpy(np.stack(gray)), character=torch.tensor(character, dtype=torch.int64),
                         alphabet=torch.tensor(alphabet, dtype=torch.int64), drawer=torch.tensor(drawer, dtype=torch.int64),
                         character_names=[f"{a}/{c}" for a, c in keys], alphabet_names=alphabet_names,
                         source=zip_path.name)


def load_lake_archive(zip_path: str | os.PathLike, size: int = IMAGE_SIZE, filter: str = DEFAULT_FILTER,
                      threshold: float = DEFAULT_THRESHOLD, align: str = DEFAULT_ALIGN,
                      max_characters: int | None = None) -> OmniglotSet:
    """Read one of Lake's original archives (``<root>/<Alphabet>/characterNN/<id>_<DD>.png``).

    Each 105x105 PNG (ink dark) goes through ``preprocess_105(size, filter, threshold, align)``;
    the defaults reproduce the 28x28 arrays exactly. Returns an ``OmniglotSet`` (images uint8
    (N, 1, size, size) {0, 1}, ink = 1) with characters in sorted (alphabet, character) order
    and drawer = DD - 1 from the file name. Non-PNG members (``.DS_Store``, ``Thumbs.db``,
    ``__MACOSX/``) are skipped with a logged warning; a PNG that fails to decode raises
    ``DataIntegrityError`` naming the member; a character folder without images raises
    ``ValueError`` naming it; a corrupt zip raises ``DataIntegrityError`` naming the file.
    """
    zip_path = Path(zip_path)
    keys, alphabet_names, items = _iter_lake_archive(zip_path, max_characters)
    images, character, alphabet, drawer = [], [], [], []
    for ci, ai, d, im in items:
        images.append(torch.from_numpy(preprocess_105(im, size, filter, threshold, align)))
        character.append(ci)
        alphabet.append(ai)
        drawer.append(d)
    return OmniglotSet(images=torch.stack(images)[:, None], character=torch.tensor(character, dtype=torch.int64),
                       alphabet=torch.tensor(alphabet, dtype=torch.int64), drawer=torch.tensor(drawer, dtype=torch.int64),
                       character_names=[f"{a}/{c}" for a, c in keys], alphabet_names=alphabet_names,
                       source=zip_path.name)


def concat_sets(sets: Sequence[OmniglotSet], dedupe: bool = True) -> OmniglotSet:
    """Concatenate sets, merging characters and alphabets by name (labels re-sorted by name).
    With ``dedupe``, a character already present (same name) in an earlier set is skipped
    (images_background_small1/2 both contain Greek and Latin)."""
    seen: set[str] = set()
    rows = []  # (images, char names per image, alphabet names per image, drawer)
    for s in sets:
        names = s.character_names
        keep = torch.tensor([names[c] not in seen for c in s.character.tolist()], dtype=torch.bool) if dedupe \
            else torch.ones(len(s), dtype=torch.bool)
        seen.update(names)
        idx = keep.nonzero().flatten()
        rows.append((s.images[idx], [names[c] for c in s.character[idx].tolist()],
                     [s.alphabet_names[a] for a in s.alphabet[idx].tolist()], s.drawer[idx]))
    char_names = sorted({n for r in rows for n in r[1]})
    alpha_names = sorted({n for r in rows for n in r[2]})
    ci = {n: i for i, n in enumerate(char_names)}
    ai = {n: i for i, n in enumerate(alpha_names)}
    images = torch.cat([r[0] for r in rows])
    character = torch.tensor([ci[n] for r in rows for n in r[1]], dtype=torch.int64)
    alphabet = torch.tensor([ai[n] for r in rows for n in r[2]], dtype=torch.int64)
    drawer = torch.cat([r[3] for r in rows])
    order = torch.argsort(character * (int(drawer.max()) + 1 if len(drawer) else 1) + drawer, stable=True)
    return OmniglotSet(images=images[order], character=character[order], alphabet=alphabet[order],
                       drawer=drawer[order], character_names=char_names, alphabet_names=alpha_names,
                       source="+".join(s.source for s in sets))


# --------------------------------------------------------------------------- centring
def center_ink(images: torch.Tensor) -> torch.Tensor:
    """Shift every image by whole pixels so that its ink centroid lies at the image centre.

    images: uint8 (N, 1, H, W) in {0, 1}, ink = 1. Returns a new uint8 tensor of the same shape:
    image n moved by (round((H-1)/2 - r_n), round((W-1)/2 - c_n)) pixels, where (r_n, c_n) is
    the mean (row, column) of its ink pixels; pixels moved in from outside are paper (0), ink
    moved past the border is dropped (``images.sum() - center_ink(images).sum()`` counts it).
    Images without ink are returned unchanged. Lake's modified-Hausdorff baseline centres its
    ink point sets the same way before comparing them.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"center_ink expects a uint8 tensor (N, 1, H, W), got {shape}")
    if images.dtype != torch.uint8:
        raise ValueError(f"center_ink expects uint8 images in {{0, 1}}, got dtype {images.dtype}")
    n, _, h, w = images.shape
    out = images.clone()
    if n == 0:
        return out
    ink = images[:, 0].to(torch.float64)
    mass = ink.sum(dim=(1, 2))
    rows = torch.arange(h, dtype=torch.float64)
    cols = torch.arange(w, dtype=torch.float64)
    safe = mass.clamp(min=1.0)
    r = (ink.sum(dim=2) * rows).sum(dim=1) / safe
    c = (ink.sum(dim=1) * cols).sum(dim=1) / safe
    dy = torch.where(mass > 0, torch.round((h - 1) / 2 - r), torch.zeros_like(r)).to(torch.int64)
    dx = torch.where(mass > 0, torch.round((w - 1) / 2 - c), torch.zeros_like(c)).to(torch.int64)
    # one padded copy per distinct shift (a few dozen), sliced back to (H, W)
    pad = int(max(dy.abs().max(), dx.abs().max()))
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    for sy, sx in torch.unique(torch.stack([dy, dx], dim=1), dim=0).tolist():
        sel = (dy == sy) & (dx == sx)
        out[sel] = padded[sel, :, pad - sy: pad - sy + h, pad - sx: pad - sx + w]
    return out


# --------------------------------------------------------------------------- dihedral group
def dihedral(images: torch.Tensor, k: int) -> torch.Tensor:
    """Apply element ``k`` (0..7) of the dihedral group D4 to the last two dims (..., H, W).

    k = 0..3: rotation by k*90 degrees counter-clockwise; k = 4..7: transpose, then rotation
    by (k-4)*90 degrees. k = 0 is the identity; k >= 4 are reflections (their own inverse).
    Returns a new tensor of the same dtype (shape (..., W, H) for odd/transposed cases).
    """
    if not (isinstance(k, int) and 0 <= k < 8):
        raise ValueError(f"dihedral: k must be an int in 0..7, got {k!r}")
    x = images.transpose(-2, -1) if k >= 4 else images
    return torch.rot90(x, k % 4, dims=(-2, -1)).contiguous()


def dihedral_inverse(k: int) -> int:
    """The group element that undoes ``dihedral(., k)``: rotations invert, reflections are involutions."""
    if not 0 <= k < 8:
        raise ValueError(f"dihedral_inverse: k must be in 0..7, got {k}")
    return (4 - k) % 4 if k < 4 else k


def augment_dihedral(s: OmniglotSet, new_alphabets: bool = True) -> OmniglotSet:
    """Add the 8 dihedral transforms of every character as new character classes (8C classes).

    Transform k of character c gets label k*C + c and name 'Alphabet/characterNN' (k = 0) or
    'Alphabet/characterNN@d<k>'; with ``new_alphabets`` each (alphabet, k) is also a new
    alphabet 'Alphabet@d<k>' (label k*A + a), so an alphabet's characters share one transform.
    Images uint8 (8N, 1, H, W), requires H == W.
    """
    if s.images.shape[-1] != s.images.shape[-2]:
        raise ValueError(f"augment_dihedral needs square images, got {tuple(s.images.shape[-2:])}")
    C, A = s.n_classes, s.n_alphabets
    suffix = lambda k: "" if k == 0 else f"@d{k}"  # noqa: E731
    return OmniglotSet(
        images=torch.cat([dihedral(s.images, k) for k in range(8)]),
        character=torch.cat([s.character + k * C for k in range(8)]),
        alphabet=torch.cat([s.alphabet + (k * A if new_alphabets else 0) for k in range(8)]),
        drawer=s.drawer.repeat(8),
        character_names=[n + suffix(k) for k in range(8) for n in s.character_names],
        alphabet_names=([n + suffix(k) for k in range(8) for n in s.alphabet_names] if new_alphabets
                        else list(s.alphabet_names)),
        source=s.source + "+dihedral")


# --------------------------------------------------------------------------- splits and checks
def split_validation(s: OmniglotSet, n_val_characters: int | None = None, fraction: float | None = None,
                     seed: int = 0) -> tuple[OmniglotSet, OmniglotSet]:
    """Split by character into (train, val), each with contiguous labels.

    Give ``n_val_characters`` or ``fraction`` (of characters, rounded, at least 1). The held-out
    characters are the first of ``torch.randperm(C, generator=torch.Generator().manual_seed(seed))``,
    so the split is deterministic for a seed and independent of the torch global RNG.
    """
    C = s.n_classes
    if (n_val_characters is None) == (fraction is None):
        raise ValueError("split_validation: give exactly one of n_val_characters or fraction")
    if fraction is not None:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"split_validation: fraction must be in (0, 1), got {fraction}")
        n_val_characters = max(1, int(round(fraction * C)))
    if not 0 < n_val_characters < C:
        raise ValueError(f"split_validation: need 0 < n_val_characters < {C} characters, got {n_val_characters}")
    g = torch.Generator().manual_seed(int(seed))
    val_chars = torch.randperm(C, generator=g)[:n_val_characters]
    is_val = torch.isin(s.character, val_chars)
    return s.subset(~is_val), s.subset(is_val)


def check_k_shot(s: OmniglotSet, k: int) -> None:
    """Raise ``ValueError`` naming every class (up to 10) with fewer than ``k`` images and its count."""
    counts = s.class_counts()
    bad = (counts < k).nonzero().flatten().tolist()
    if bad:
        listed = ", ".join(f"{s.character_names[c]!r} has {int(counts[c])}" for c in bad[:10])
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise ValueError(f"{len(bad)} class(es) have fewer than k={k} images: {listed}{more}; "
                         f"lower k_shot or drop these classes")
