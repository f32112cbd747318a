"""One-shot classification runs: Lake's 20 official runs and in-distribution within-alphabet runs.

A run is N-way one-shot: ``support`` holds one image per class, ``query`` the test images,
``answer[i]`` the support index of query i's class. Images are uint8 (n, 1, 28, 28) {0, 1},
ink = 1 (the same format and preprocessing as the evaluation arrays: every image of
all_runs.zip equals an image of test_small.npz bit for bit, docs/data_gap.md).
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..files import atomic_torch_save
from .archives import MemberReader, decode_image, open_zip
from .fetch import DataIntegrityError
from .sets import IMAGE_SIZE, OmniglotSet
from .transforms import DEFAULT_ALIGN, DEFAULT_FILTER, DEFAULT_THRESHOLD, preprocess_105

_FORMAT = "vhe.OneShotRuns"


@dataclass(eq=False)  # tensors inside: compare fields explicitly
class OneShotRun:
    """One N-way one-shot run.

    support: uint8 (N, 1, H, W) {0, 1}, one image per class; query: uint8 (Q, 1, H, W);
    answer: int64 (Q,) index into support; name: str. Optional provenance: ``alphabet``,
    ``characters`` (support class names, length N), ``support_index`` / ``query_index`` int64
    indices into the source OmniglotSet (None for Lake's runs), ``support_files`` /
    ``query_files`` (archive members, Lake's runs only).
    """

    support: torch.Tensor
    query: torch.Tensor
    answer: torch.Tensor
    name: str
    alphabet: str = ""
    characters: list[str] = field(default_factory=list)
    support_index: torch.Tensor | None = None
    query_index: torch.Tensor | None = None
    support_files: list[str] = field(default_factory=list)
    query_files: list[str] = field(default_factory=list)

    @property
    def n_way(self) -> int:
        """Number of classes (support images)."""
        return int(self.support.shape[0])

    def to_dict(self) -> dict:
        """Plain dict of tensors/strings/lists (``torch.load(weights_only=True)``-loadable)."""
        return {
            "support": self.support,
            "query": self.query,
            "answer": self.answer,
            "name": self.name,
            "alphabet": self.alphabet,
            "characters": list(self.characters),
            "support_index": self.support_index,
            "query_index": self.query_index,
            "support_files": list(self.support_files),
            "query_files": list(self.query_files),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "OneShotRun":
        """Inverse of ``to_dict``."""
        return cls(**d)


def save_runs(runs: list[OneShotRun], path: str | os.PathLike) -> Path:
    """``torch.save`` runs as ``{"format", "version", "runs": [plain dict, ...]}``; returns the path."""
    return atomic_torch_save({"format": _FORMAT, "version": 1, "runs": [r.to_dict() for r in runs]}, path)


def load_runs(path: str | os.PathLike) -> list[OneShotRun]:
    """Load runs written by ``save_runs`` (``torch.load(weights_only=True)``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; create it with `python -m vhe.data.cli prepare-runs` or `within-alphabet-runs`"
        )
    d = torch.load(path, weights_only=True)
    if not isinstance(d, dict) or d.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a saved list of one-shot runs (expected format {_FORMAT!r})")
    return [OneShotRun.from_dict(r) for r in d["runs"]]


# --------------------------------------------------------------------------- Lake's runs
_LABEL_LINE = re.compile(r"^\s*(\S+)\s+(\S+)\s*$")


def _decode(zf: zipfile.ZipFile, reader: MemberReader, member: str, size, filter, threshold, align) -> np.ndarray:
    """Read and decode one PNG member (size-limited, vhe.data.archives) and ``preprocess_105`` it."""
    try:
        data = reader.read_zip(zf, member)
    except KeyError as e:
        raise ValueError(f"{reader.archive}: member {member!r} (named in class_labels.txt) is missing") from e
    im = decode_image(data, f"{reader.archive}: member {member!r}", "PNG")
    return preprocess_105(im, size, filter, threshold, align)


def load_lake_runs(
    zip_path: str | os.PathLike,
    size: int = IMAGE_SIZE,
    filter: str = DEFAULT_FILTER,
    threshold: float = DEFAULT_THRESHOLD,
    align: str = DEFAULT_ALIGN,
) -> list[OneShotRun]:
    """Read Lake's ``all_runs.zip``: ``runNN/{training,test}/*.png`` and ``runNN/class_labels.txt``.

    class_labels.txt has one line per query: 'runNN/test/itemMM.png runNN/training/classKK.png'.
    Support = training images in sorted file order, query = test images in sorted order,
    answer[i] = position of query i's training file. Images go through ``preprocess_105``.
    Returns the runs sorted by name (20 runs of 20-way for the official file).
    """
    zip_path = Path(zip_path)
    zf = open_zip(zip_path)
    reader = MemberReader(zip_path)
    runs = []
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/") and "__MACOSX" not in n]
        label_files = sorted(n for n in names if n.endswith("class_labels.txt"))
        if not label_files:
            raise ValueError(f"{zip_path} has no runNN/class_labels.txt; is this Lake's all_runs.zip?")
        for lf in tqdm(label_files, desc=f"read {zip_path.name}", disable=None):
            run_dir = lf[: -len("class_labels.txt")]
            run_name = run_dir.rstrip("/").split("/")[-1] or zip_path.stem
            support_files = sorted(
                n for n in names if n.startswith(run_dir + "training/") and n.lower().endswith(".png")
            )
            query_files = sorted(n for n in names if n.startswith(run_dir + "test/") and n.lower().endswith(".png"))
            if not support_files or not query_files:
                raise ValueError(f"{zip_path}: run {run_name!r} needs {run_dir}training/*.png and {run_dir}test/*.png")
            # names inside class_labels.txt are relative to the archive root's parent
            prefix = run_dir[: -len(run_name) - 1] if run_dir.endswith(run_name + "/") else ""
            try:
                text = reader.read_zip(zf, lf).decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataIntegrityError(
                    f"{zip_path}: cannot read {lf} ({e}); delete the archive and fetch it again"
                ) from e
            pairs = {}
            for i, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                m = _LABEL_LINE.match(line)
                if not m:
                    raise ValueError(
                        f"{zip_path}: {lf} line {i} is not 'test/itemNN.png training/classNN.png': {line!r}"
                    )
                pairs[prefix + m.group(1)] = prefix + m.group(2)
            s_pos = {f: i for i, f in enumerate(support_files)}
            answer = []
            for q in query_files:
                if q not in pairs:
                    raise ValueError(f"{zip_path}: {lf} gives no class for query image {q}")
                if pairs[q] not in s_pos:
                    raise ValueError(
                        f"{zip_path}: {lf} maps {q} to {pairs[q]}, which is not a training image of {run_name}"
                    )
                answer.append(s_pos[pairs[q]])
            dec = lambda m: _decode(zf, reader, m, size, filter, threshold, align)  # noqa: E731
            runs.append(
                OneShotRun(
                    support=torch.from_numpy(np.stack([dec(f) for f in support_files]))[:, None],
                    query=torch.from_numpy(np.stack([dec(f) for f in query_files]))[:, None],
                    answer=torch.tensor(answer, dtype=torch.int64),
                    name=run_name,
                    support_files=support_files,
                    query_files=query_files,
                )
            )
    return sorted(runs, key=lambda r: r.name)


# --------------------------------------------------------------------------- within-alphabet runs
def within_alphabet_runs(s: OmniglotSet, n_runs: int = 20, n_way: int = 20, seed: int = 0) -> list[OneShotRun]:
    """In-distribution N-way one-shot runs mimicking Lake's protocol, from an ``OmniglotSet``.

    Alphabets with >= ``n_way`` characters are visited in a seeded random order, cycling when
    ``n_runs`` exceeds their number; each run takes ``n_way`` random characters of its alphabet
    and two different drawers A != B (drawer labels present in all of them): support = drawer
    A's image of each character, query = drawer B's images in a random order; answer int64
    (n_way,). Deterministic for ``seed`` (torch.Generator). For the npz arrays the drawer label
    is the row index, a per-character permutation of the real drawers (docs/data_gap.md), so
    A and B are distinct people within a character but not the same person across characters.
    """
    if n_way < 2:
        raise ValueError(f"within_alphabet_runs: n_way must be >= 2, got {n_way}")
    char_alpha = s.character_alphabet()
    per_alpha = {a: (char_alpha == a).nonzero().flatten() for a in range(s.n_alphabets)}
    eligible = [a for a in range(s.n_alphabets) if len(per_alpha[a]) >= n_way]
    if not eligible:
        biggest = max((len(v) for v in per_alpha.values()), default=0)
        raise ValueError(
            f"within_alphabet_runs: no alphabet has >= {n_way} characters (largest has {biggest}); "
            f"lower n_way (--n-way) or keep more characters (--max-characters)"
        )
    # (character, drawer) -> image index
    lookup = {(c, d): i for i, (c, d) in enumerate(zip(s.character.tolist(), s.drawer.tolist()))}
    drawers_of: dict[int, set[int]] = {}
    for c, d in lookup:
        drawers_of.setdefault(c, set()).add(d)
    g = torch.Generator().manual_seed(int(seed))
    order = [eligible[i] for i in torch.randperm(len(eligible), generator=g).tolist()]
    runs = []
    for r in range(n_runs):
        a = order[r % len(order)]
        chars = per_alpha[a][torch.randperm(len(per_alpha[a]), generator=g)[:n_way]].tolist()
        common = sorted(set.intersection(*(drawers_of[c] for c in chars)))
        if len(common) < 2:
            raise ValueError(
                f"within_alphabet_runs: the {n_way} characters drawn from alphabet "
                f"{s.alphabet_names[a]!r} share fewer than 2 drawers"
            )
        pick = torch.randperm(len(common), generator=g)[:2].tolist()
        da, db = common[pick[0]], common[pick[1]]
        perm = torch.randperm(n_way, generator=g)
        s_idx = torch.tensor([lookup[(c, da)] for c in chars], dtype=torch.int64)
        q_idx = torch.tensor([lookup[(chars[j], db)] for j in perm.tolist()], dtype=torch.int64)
        runs.append(
            OneShotRun(
                support=s.images[s_idx].clone(),
                query=s.images[q_idx].clone(),
                answer=perm.to(torch.int64),
                name=f"within{r + 1:02d}",
                alphabet=s.alphabet_names[a],
                characters=[s.character_names[c] for c in chars],
                support_index=s_idx,
                query_index=q_idx,
            )
        )
    return runs
