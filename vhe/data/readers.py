"""Readers of the two Omniglot sources, each returning an ``OmniglotSet`` (``vhe.data.sets``):

- the 28x28 arrays ``train_small.npz`` / ``test_small.npz`` (default; ``load_npz_arrays``);
- Lake's original 105x105 PNG archives (``load_lake_archive``), resized by
  ``vhe.data.transforms.preprocess_105`` (its defaults reproduce the arrays bit for bit), or
  decoded without resizing (``read_lake_originals``).

Archive members and images are read through ``vhe.data.archives`` (bounded reads).
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .archives import MemberReader, check_zip_sizes, decode_image, open_zip
from .fetch import DataIntegrityError
from .sets import IMAGE_SIZE, OmniglotSet
from .transforms import DEFAULT_ALIGN, DEFAULT_FILTER, DEFAULT_THRESHOLD, preprocess_105

__all__ = ["load_npz_arrays", "LakeOriginals", "read_lake_originals", "load_lake_archive"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- 28x28 arrays
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
        raise FileNotFoundError(
            f"{path} does not exist; fetch it with `python -m vhe.data.fetch --name {path.name} --dest {path.parent}`"
        )
    try:
        npz = np.load(path, allow_pickle=False)
        keys = sorted(npz.files)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataIntegrityError(
            f"{path} is not a readable .npz archive ({type(e).__name__}: {e}); "
            f"delete it and fetch it again (its checksum is in vhe/data/MANIFEST.tsv)"
        ) from e
    try:
        check_zip_sizes(npz.zip, path)  # zipfile then never returns more than the sizes checked here
    except DataIntegrityError:
        npz.close()
        raise
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
            except (zipfile.BadZipFile, ValueError, OSError, EOFError, MemoryError) as e:  # Memory: a lying .npy header
                raise DataIntegrityError(
                    f"{path}: cannot read array {k!r} ({type(e).__name__}: {e}); delete the file and fetch it again"
                ) from e
            if arr.ndim == 1:
                arr = arr[None]
            if arr.shape[0] == 0:
                raise ValueError(f"{path}: class {name!r} (key {k!r}) has no images")
            arr = arr.reshape(arr.shape[0], -1)
            if arr.shape[1] != IMAGE_SIZE * IMAGE_SIZE:
                raise ValueError(
                    f"{path}: class {name!r} (key {k!r}) has images of {arr.shape[1]} values, "
                    f"expected {IMAGE_SIZE * IMAGE_SIZE} (28x28)"
                )
            bad = np.setdiff1d(np.unique(arr), [0, 255])
            if bad.size:
                raise ValueError(
                    f"{path}: class {name!r} (key {k!r}) has pixel values {bad[:5].tolist()} "
                    f"outside {{0, 255}}; expected binarised images (0 = ink, 255 = paper)"
                )
            n = arr.shape[0]
            images.append(torch.from_numpy((arr == 0).astype(np.uint8)).view(n, 1, IMAGE_SIZE, IMAGE_SIZE))
            character.append(torch.full((n,), ci, dtype=torch.int64))
            alphabet.append(torch.full((n,), a_index[a], dtype=torch.int64))
            drawer.append(torch.arange(n, dtype=torch.int64))
            character_names.append(name)
    return OmniglotSet(
        images=torch.cat(images),
        character=torch.cat(character),
        alphabet=torch.cat(alphabet),
        drawer=torch.cat(drawer),
        character_names=character_names,
        alphabet_names=alphabet_names,
        source=str(path.name),
    )


# --------------------------------------------------------------------------- 105x105 originals
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

    def resize(
        self,
        size: int = IMAGE_SIZE,
        filter: str = DEFAULT_FILTER,
        threshold: float = DEFAULT_THRESHOLD,
        align: str = DEFAULT_ALIGN,
    ) -> OmniglotSet:
        """``preprocess_105`` every drawing; returns an ``OmniglotSet`` of uint8 (N, 1, size, size) {0, 1}."""
        imgs = np.stack([preprocess_105(g, size, filter, threshold, align) for g in self.gray.numpy()])
        return OmniglotSet(
            images=torch.from_numpy(imgs)[:, None],
            character=self.character.clone(),
            alphabet=self.alphabet.clone(),
            drawer=self.drawer.clone(),
            character_names=list(self.character_names),
            alphabet_names=list(self.alphabet_names),
            source=self.source,
        )


def _iter_lake_archive(zip_path: Path, max_characters: int | None):
    """Scan a Lake archive; returns (character keys, alphabet names, generator of
    (char index, alphabet index, drawer, PIL image 'L')). Validation as in ``load_lake_archive``."""
    zf = open_zip(zip_path)
    pngs: list[zipfile.ZipInfo] = []
    folders: set[str] = set()  # every folder that holds a file or is listed
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
        raise ValueError(
            f"{zip_path} contains no .png images; expected '<root>/<Alphabet>/characterNN/<id>_<drawer>.png'"
        )
    depths = sorted({p.filename.count("/") for p in pngs})
    if len(depths) != 1 or depths[0] < 2:
        zf.close()
        raise ValueError(
            f"{zip_path}: images are not all at '<root>/<Alphabet>/characterNN/*.png' (found folder depths {depths})"
        )
    by_char: dict[tuple[str, str], list[zipfile.ZipInfo]] = defaultdict(list)
    for info in pngs:
        parts = info.filename.split("/")
        by_char[(parts[-3], parts[-2])].append(info)
    for folder in sorted(folders):
        parts = folder.split("/") if folder else []
        if len(parts) == depths[0] and (parts[-2], parts[-1]) not in by_char:
            zf.close()
            raise ValueError(
                f"{zip_path}: character folder {folder!r} contains no .png images "
                f"(a character needs at least one drawing)"
            )
    keys = sorted(by_char)
    if max_characters is not None:
        keys = keys[:max_characters]
    alphabet_names = sorted({a for a, _ in keys})
    a_index = {a: i for i, a in enumerate(alphabet_names)}

    def gen():
        total = sum(len(by_char[k]) for k in keys)
        reader = MemberReader(zip_path)
        with zf, tqdm(total=total, desc=f"read {zip_path.name}", disable=None) as bar:
            for ci, key in enumerate(keys):
                for pos, info in enumerate(sorted(by_char[key], key=lambda i: i.filename)):
                    im = decode_image(reader.read_zip(zf, info), f"{zip_path}: member {info.filename!r}", "PNG")
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
    return LakeOriginals(
        gray=torch.from_numpy(np.stack(gray)),
        character=torch.tensor(character, dtype=torch.int64),
        alphabet=torch.tensor(alphabet, dtype=torch.int64),
        drawer=torch.tensor(drawer, dtype=torch.int64),
        character_names=[f"{a}/{c}" for a, c in keys],
        alphabet_names=alphabet_names,
        source=zip_path.name,
    )


def load_lake_archive(
    zip_path: str | os.PathLike,
    size: int = IMAGE_SIZE,
    filter: str = DEFAULT_FILTER,
    threshold: float = DEFAULT_THRESHOLD,
    align: str = DEFAULT_ALIGN,
    max_characters: int | None = None,
) -> OmniglotSet:
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
    return OmniglotSet(
        images=torch.stack(images)[:, None],
        character=torch.tensor(character, dtype=torch.int64),
        alphabet=torch.tensor(alphabet, dtype=torch.int64),
        drawer=torch.tensor(drawer, dtype=torch.int64),
        character_names=[f"{a}/{c}" for a, c in keys],
        alphabet_names=alphabet_names,
        source=zip_path.name,
    )
