"""Domain gap between the 28x28 arrays and Lake's originals resized by ``preprocess_105``.

Definitions (per image, then averaged over images; all at 28x28, units in pixels):

- ink fraction: number of ink pixels / number of pixels;
- stroke thickness: 2 * A / P, with A = number of ink pixels and P = number of 4-neighbour
  ink/paper edges (pixel sides; the image border counts as paper). A stroke of width w and
  length L >> w has A = wL and P ~ 2L, so 2A/P ~ w. Images without ink are left out;
- pixel agreement (matched): for each resized original, the largest fraction of equal pixels
  over the array images of the same character (same 'Alphabet/characterNN' name); exact
  fraction: share of originals with agreement 1.

The arrays' rows are a per-character permutation of the drawers, so images are matched
within a character by best agreement, not by index.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .readers import read_lake_originals
from .sets import OmniglotSet, concat_sets
from .transforms import FILTERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preprocessing:
    """One resize recipe for ``preprocess_105``: PIL filter name, ink threshold in [0, 1), grid alignment."""

    filter: str
    threshold: float
    align: str

    def kwargs(self) -> dict:
        """Keyword arguments for ``preprocess_105`` / ``load_lake_archive``."""
        return asdict(self)


def default_candidates(
    thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7), aligns: Sequence[str] = ("center", "corner")
) -> list[Preprocessing]:
    """Every PIL filter x threshold x alignment (nearest only at threshold 0.5: its output is binary)."""
    out = []
    for f, a in itertools.product(FILTERS, aligns):
        for t in [0.5] if f == "nearest" else thresholds:
            out.append(Preprocessing(f, float(t), a))
    return out


def ink_fraction(images: torch.Tensor) -> torch.Tensor:
    """Per-image ink fraction of binary images (..., H, W) {0, 1}; returns float64 (...)."""
    x = images.to(torch.float64)
    return x.mean(dim=(-2, -1))


def stroke_thickness(images: torch.Tensor) -> torch.Tensor:
    """Per-image stroke width 2*A/P in pixels of binary images (..., H, W) {0, 1} (module doc);
    float64 (...), NaN for images without ink."""
    lead, (h, w) = images.shape[:-2], images.shape[-2:]
    x = images.reshape(-1, h, w).to(torch.bool)
    p = torch.zeros(x.shape[0], h + 2, w + 2, dtype=torch.bool)
    p[:, 1:-1, 1:-1] = x
    perim = (p[:, 1:, :] ^ p[:, :-1, :]).flatten(1).sum(1) + (p[:, :, 1:] ^ p[:, :, :-1]).flatten(1).sum(1)
    area = x.flatten(1).sum(1)
    out = 2.0 * area.to(torch.float64) / perim.clamp_min(1).to(torch.float64)
    out = torch.where(area > 0, out, torch.full_like(out, float("nan")))
    return out.reshape(lead)


def image_stats(s: OmniglotSet) -> dict:
    """``{"n_images", "ink_fraction", "thickness"}``: means over images (thickness over inked images)."""
    imgs = s.images[:, 0]
    th = stroke_thickness(imgs)
    return {
        "n_images": len(s),
        "ink_fraction": float(ink_fraction(imgs).mean()),
        "thickness": float(th[~th.isnan()].mean()),
    }


def _rows_by_label(labels: np.ndarray, n: int) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n)]


def matched_agreement(arrays: OmniglotSet, lake: OmniglotSet) -> dict:
    """Best pixel agreement of each ``lake`` image with the ``arrays`` images of the same character name.

    Returns ``{"n_characters", "n_images", "pixel_agreement" (mean), "min_agreement", "exact_fraction"}``;
    zeros/None when no character name is shared.
    """
    a_index = {n: i for i, n in enumerate(arrays.character_names)}
    shared = [(li, a_index[n]) for li, n in enumerate(lake.character_names) if n in a_index]
    if not shared:
        return {
            "n_characters": 0,
            "n_images": 0,
            "pixel_agreement": None,
            "min_agreement": None,
            "exact_fraction": None,
        }
    a_flat = arrays.images.flatten(1).numpy().astype(np.float32)
    l_flat = lake.images.flatten(1).numpy().astype(np.float32)
    a_rows = _rows_by_label(arrays.character.numpy(), arrays.n_classes)
    l_rows = _rows_by_label(lake.character.numpy(), lake.n_classes)
    n_pix = a_flat.shape[1]
    best = []
    for li, ai in shared:
        L, A = l_flat[l_rows[li]], a_flat[a_rows[ai]]
        equal = L @ A.T + (1.0 - L) @ (1.0 - A).T  # (nL, nA) number of equal pixels (exact in float32)
        best.append(torch.from_numpy(np.rint(equal.max(axis=1)).astype(np.float64) / n_pix))
    best = torch.cat(best)
    return {
        "n_characters": len(shared),
        "n_images": int(best.numel()),
        "pixel_agreement": float(best.mean()),
        "min_agreement": float(best.min()),
        "exact_fraction": float((best == 1).to(torch.float64).mean()),
    }


def measure_domain_gap(arrays: OmniglotSet, lake: OmniglotSet, _ref_cache: dict | None = None) -> dict:
    """Compare two sources of 28x28 binary images (see module doc for the definitions).

    Returns ``{"arrays": stats, "arrays_matched": stats of the array characters also in lake
    (None if none), "lake": stats, "matched": matched_agreement(...), "ink_fraction_rel_diff",
    "thickness_rel_diff"}``, stats = ``image_stats``; the relative differences are
    (lake - reference) / reference with reference = arrays_matched, or arrays when no
    character is shared.
    """
    cache = _ref_cache if _ref_cache is not None else {}
    if "arrays" not in cache:
        cache["arrays"] = image_stats(arrays)
    shared = frozenset(lake.character_names) & frozenset(arrays.character_names)
    key = ("matched", shared)
    if key not in cache:
        if shared:
            keep = torch.tensor([n in shared for n in arrays.character_names])[arrays.character]
            cache[key] = image_stats(arrays.subset(keep))
        else:
            cache[key] = None
    out = {
        "arrays": cache["arrays"],
        "arrays_matched": cache[key],
        "lake": image_stats(lake),
        "matched": matched_agreement(arrays, lake),
    }
    r = out["arrays_matched"] or out["arrays"]
    out["ink_fraction_rel_diff"] = (out["lake"]["ink_fraction"] - r["ink_fraction"]) / r["ink_fraction"]
    out["thickness_rel_diff"] = (out["lake"]["thickness"] - r["thickness"]) / r["thickness"]
    return out


def _score(gap: dict) -> float:
    """Lower is better: |rel. ink diff| + |rel. thickness diff| + (1 - matched agreement)."""
    s = abs(gap["ink_fraction_rel_diff"]) + abs(gap["thickness_rel_diff"])
    if gap["matched"]["pixel_agreement"] is not None:
        s += 1.0 - gap["matched"]["pixel_agreement"]
    return s


def choose_preprocessing(
    arrays: OmniglotSet,
    lake_zip_paths: Iterable[str | os.PathLike],
    candidates: Sequence[Preprocessing] | None = None,
    size: int = 28,
    max_characters: int | None = None,
) -> dict:
    """Try each candidate recipe on Lake's archives and rank by how well the result matches ``arrays``.

    Score (lower is better) = |relative ink-fraction difference| + |relative thickness
    difference| + (1 - matched pixel agreement), against the array images of the same
    characters. Characters present in several archives are used once. ``max_characters``
    limits each archive to its first K characters (tests, smoke runs).
    Returns ``{"best": Preprocessing fields, "results": [{**fields, "score", **gap} ...] best first}``.
    """
    candidates = list(candidates) if candidates is not None else default_candidates()
    if not candidates:
        raise ValueError("choose_preprocessing: no candidates given")
    originals = [read_lake_originals(p, max_characters=max_characters) for p in lake_zip_paths]
    if not originals:
        raise ValueError("choose_preprocessing: give at least one Lake archive")
    results, cache = [], {}
    for cand in tqdm(candidates, desc="preprocessing candidates", disable=None):
        lake = concat_sets([o.resize(size, **cand.kwargs()) for o in originals], dedupe=True)
        gap = measure_domain_gap(arrays, lake, _ref_cache=cache)
        results.append({**cand.kwargs(), "score": _score(gap), **gap})
    results.sort(key=lambda r: r["score"])
    best = {k: results[0][k] for k in ("filter", "threshold", "align")}
    log.info("best preprocessing %s (score %.4g)", best, results[0]["score"])
    return {"best": best, "results": results}
