"""The labelled character-image set (``OmniglotSet``): the container, saving and loading, and the
set operations built on it (concatenation, the validation split by character, the k-shot check).

Every image in the project is single-channel binary: uint8 (N, 1, 28, 28) with values
{0, 1}, ink = 1 (so Bernoulli decoders apply). The readers that build a set from the data
files are in ``vhe.data.readers``, the image transforms in ``vhe.data.transforms``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..files import atomic_torch_save

__all__ = ["IMAGE_SIZE", "OmniglotSet", "concat_sets", "split_validation", "check_k_shot"]

#: side of the project's images, in pixels
IMAGE_SIZE = 28
_FORMAT = "vhe.OmniglotSet"


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
                raise ValueError(f"OmniglotSet.{name} must be int64 of shape ({n},), got {t.dtype} {tuple(t.shape)}")
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
            images=self.images[idx].clone(),
            character=new_char.to(torch.int64),
            alphabet=new_alpha.to(torch.int64),
            drawer=self.drawer[idx].clone(),
            character_names=[self.character_names[i] for i in chars.tolist()],
            alphabet_names=[self.alphabet_names[i] for i in alphas.tolist()],
            source=self.source,
        )

    def first_characters(self, k: int | None) -> "OmniglotSet":
        """The first ``k`` characters in label (= sorted name) order; ``None`` keeps all."""
        if k is None or k >= self.n_classes:
            return self
        if k <= 0:
            raise ValueError(f"max_characters must be positive, got {k}")
        return self.subset(self.character < k)

    def to_dict(self) -> dict:
        """Plain dict of tensors, lists and strings (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "format": _FORMAT,
            "version": 1,
            "images": self.images,
            "character": self.character,
            "alphabet": self.alphabet,
            "drawer": self.drawer,
            "character_names": list(self.character_names),
            "alphabet_names": list(self.alphabet_names),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "dict") -> "OmniglotSet":
        """Inverse of ``to_dict``; ``where`` names the origin in error messages."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(
                f"{where} is not a saved OmniglotSet (format key {d.get('format') if isinstance(d, dict) else type(d)!r}); "
                f"create it with `python -m vhe.data.cli prepare-omniglot`"
            )
        return cls(
            images=d["images"],
            character=d["character"],
            alphabet=d["alphabet"],
            drawer=d["drawer"],
            character_names=d["character_names"],
            alphabet_names=d["alphabet_names"],
            source=d.get("source", ""),
        )

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


# --------------------------------------------------------------------------- set operations
def concat_sets(sets: Sequence[OmniglotSet], dedupe: bool = True) -> OmniglotSet:
    """Concatenate sets, merging characters and alphabets by name (labels re-sorted by name).
    With ``dedupe``, a character already present (same name) in an earlier set is skipped
    (images_background_small1/2 both contain Greek and Latin)."""
    seen: set[str] = set()
    rows = []  # (images, char names per image, alphabet names per image, drawer)
    for s in sets:
        names = s.character_names
        keep = (
            torch.tensor([names[c] not in seen for c in s.character.tolist()], dtype=torch.bool)
            if dedupe
            else torch.ones(len(s), dtype=torch.bool)
        )
        seen.update(names)
        idx = keep.nonzero().flatten()
        rows.append(
            (
                s.images[idx],
                [names[c] for c in s.character[idx].tolist()],
                [s.alphabet_names[a] for a in s.alphabet[idx].tolist()],
                s.drawer[idx],
            )
        )
    char_names = sorted({n for r in rows for n in r[1]})
    alpha_names = sorted({n for r in rows for n in r[2]})
    ci = {n: i for i, n in enumerate(char_names)}
    ai = {n: i for i, n in enumerate(alpha_names)}
    images = torch.cat([r[0] for r in rows])
    character = torch.tensor([ci[n] for r in rows for n in r[1]], dtype=torch.int64)
    alphabet = torch.tensor([ai[n] for r in rows for n in r[2]], dtype=torch.int64)
    drawer = torch.cat([r[3] for r in rows])
    order = torch.argsort(character * (int(drawer.max()) + 1 if len(drawer) else 1) + drawer, stable=True)
    return OmniglotSet(
        images=images[order],
        character=character[order],
        alphabet=alphabet[order],
        drawer=drawer[order],
        character_names=char_names,
        alphabet_names=alpha_names,
        source="+".join(s.source for s in sets),
    )


# --------------------------------------------------------------------------- splits and checks
def split_validation(
    s: OmniglotSet, n_val_characters: int | None = None, fraction: float | None = None, seed: int = 0
) -> tuple[OmniglotSet, OmniglotSet]:
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
        raise ValueError(
            f"{len(bad)} class(es) have fewer than k={k} images: {listed}{more}; lower k_shot or drop these classes"
        )
