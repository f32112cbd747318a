"""Non-learned one-shot classification baselines: pixel nearest neighbour and Lake's modified Hausdorff distance.

Images are binary with ink = 1 (any nonzero pixel is ink), given as (n, 1, H, W) or (n, H, W)
tensors/arrays, e.g. ``vhe.data.runs.OneShotRun.support`` / ``.query``. Both classifiers assign
each query to one support image (one per class) and break ties by the lowest support index.

* ``pixel_nearest_neighbour``: the support image with the highest cosine similarity of the raw
  pixel vectors (an all-zero image has similarity 0 to everything).
* ``mhd_classify``: the support image with the smallest modified Hausdorff distance (Dubuisson &
  Jain 1994) between the mean-centred sets of ink-pixel coordinates, as in Lake's
  ``python/one-shot-classification/demo_classification.py`` (brendenlake/omniglot): 38.8% average
  error over the 20 runs of ``all_runs.zip`` at 105x105. Distances are in pixels. An image
  with no ink has distance +inf to every image (itself and other empty images included), so a
  query without ink is assigned support 0 (all distances tie at +inf).

``mhd_classify`` is exact (float64; equal to ``modified_hausdorff_distance`` of the centred
``ink_points`` to ~1e-13 px) without the |A| x |B| distance matrices: see ``_mean_nearest``. All
20 runs of Lake's all_runs.zip take a few seconds at 105x105 on one core.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ink_points", "modified_hausdorff_distance", "pixel_nearest_neighbour", "mhd_classify"]

_FAR = 1.0e6  # sentinel row coordinate for "no ink in this column on that side" (squared: 1e12 px^2)


def _images(x, what: str) -> torch.Tensor:
    """(n, 1, H, W) or (n, H, W) -> bool (n, H, W) ink mask."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dim() == 4:
        if t.shape[1] != 1:
            raise ValueError(f"{what}: expected one channel, got shape {tuple(t.shape)}")
        t = t[:, 0]
    if t.dim() != 3:
        raise ValueError(f"{what}: expected (n, 1, H, W) or (n, H, W) images, got shape {tuple(t.shape)}")
    return t != 0


def ink_points(image, centre: bool = True) -> torch.Tensor:
    """float64 (n_ink, 2) (row, column) coordinates of the nonzero pixels of one 2-D (or (1, H, W)) image,
    minus their centroid when ``centre`` (as Lake's ``LoadImgAsPoints``). No ink: shape (0, 2)."""
    t = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 2:
        raise ValueError(f"ink_points: expected a 2-D image, got shape {tuple(t.shape)}")
    p = (t != 0).nonzero().to(torch.float64)
    return p - p.mean(0) if centre and len(p) else p


def modified_hausdorff_distance(a_points, b_points) -> float:
    """Modified Hausdorff distance between point sets a (n, d) and b (m, d), in their units (pixels):
    max(mean_a min_b ||a - b||, mean_b min_a ||a - b||), Euclidean. +inf when either set is empty.
    The sets are used as given (centre them first, e.g. with ``ink_points``); brute force, float64."""
    a = torch.as_tensor(a_points, dtype=torch.float64)
    b = torch.as_tensor(b_points, dtype=torch.float64)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"modified_hausdorff_distance: expected (n, d) and (m, d) point sets, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if len(a) == 0 or len(b) == 0:
        return float("inf")
    d = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    return float(torch.maximum(d.min(1).values.mean(), d.min(0).values.mean()))


def pixel_nearest_neighbour(support, query) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine-similarity nearest neighbour on raw pixels.

    support: (N, 1, H, W) or (N, H, W), query: (Q, ...) of the same image shape (any numeric dtype,
    used as float64 values). Returns pred int64 (Q,) support indices (argmax, lowest index on ties)
    and scores float64 (Q, N) cosine similarities in [-1, 1] (0 where either image is all zero).
    """
    s = torch.as_tensor(support).flatten(1).to(torch.float64)
    q = torch.as_tensor(query).flatten(1).to(torch.float64)
    if s.shape[1] != q.shape[1]:
        raise ValueError(f"pixel_nearest_neighbour: support images have {s.shape[1]} pixels, queries {q.shape[1]}")
    ns, nq = s.norm(dim=1), q.norm(dim=1)
    scores = (q @ s.T) / (nq[:, None] * ns[None, :]).clamp_min(torch.finfo(torch.float64).tiny)
    return scores.argmax(1), scores


def _points(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ink of a stack (n, H, W): points int64 (P, 2) (row, col) concatenated, owner int64 (P,),
    count int64 (n,), centroid float64 (n, 2) (0 for an image without ink)."""
    idx = masks.nonzero()  # (P, 3) sorted by image
    owner, points = idx[:, 0], idx[:, 1:]
    count = torch.bincount(owner, minlength=len(masks))
    sums = torch.zeros(len(masks), 2, dtype=torch.float64).index_add_(0, owner, points.to(torch.float64))
    return points, owner, count, sums / count.clamp_min(1)[:, None]


def _mean_nearest(
    target: torch.Tensor,
    t_centroid: torch.Tensor,
    points: torch.Tensor,
    owner: torch.Tensor,
    count: torch.Tensor,
    centroid: torch.Tensor,
) -> torch.Tensor:
    """For each source image k: mean over its centred ink points of the distance to the nearest centred ink
    pixel of ``target`` (bool (H, W), with ink), float64 (K,) pixels (nan for a source without ink).

    Source point b of image k lies at p = b - m_k + m_T in the target's frame. Nearest-ink distances
    are separable: d^2(p) = min over target columns x of (p_x - x)^2 + dy_x(p_y)^2, where dy_x(p_y) is
    the distance from p_y to the nearest ink row of column x: the last ink row <= floor(p_y) (table
    ``up``) or the first one >= floor(p_y) + 1 (table ``down``). dy depends only on (k, source row)
    and (p_x - x)^2 only on (k, source column), so both are tabulated and each point costs one add
    and one min per target column (the target's column bounding box).
    """
    h, w_full = target.shape
    cols = target.any(0).nonzero().flatten()
    x0 = int(cols[0])
    m = target[:, x0 : int(cols[-1]) + 1]
    w = m.shape[1]
    rows = torch.arange(h, dtype=torch.float64)[:, None]
    far = torch.tensor(_FAR, dtype=torch.float64)
    edge = torch.full((1, w), _FAR, dtype=torch.float64)
    up = torch.cat([-edge, torch.where(m, rows, -far).cummax(0).values])  # (h + 1, w): r0 = -1 .. h-1
    down = torch.cat([torch.where(m, rows, far).flip(0).cummin(0).values.flip(0), edge])  # (h + 1, w): r1 = 0 .. h
    k = len(centroid)
    shift = t_centroid[None] - centroid  # (K, 2)
    py = torch.arange(h, dtype=torch.float64)[None] + shift[:, :1]  # (K, h) source rows
    f = py.floor().long()
    r0, r1 = f.clamp(-1, h - 1) + 1, (f + 1).clamp(0, h)
    py = py[..., None]
    dy = torch.minimum((py - up[r0]).square(), (down[r1] - py).square())  # (K, h, w)
    px = torch.arange(w_full, dtype=torch.float64)[None] + shift[:, 1:]  # (K, W) source columns
    dx = (px[..., None] - torch.arange(x0, x0 + w, dtype=torch.float64)).square()  # (K, W, w)
    d2 = dy.reshape(k * h, w).index_select(0, owner * h + points[:, 0])  # (P, w)
    d2 += dx.reshape(k * w_full, w).index_select(0, owner * w_full + points[:, 1])
    d = d2.amin(1).sqrt()
    return torch.zeros(k, dtype=torch.float64).index_add_(0, owner, d) / count


def mhd_classify(support, query) -> tuple[torch.Tensor, torch.Tensor]:
    """Lake's modified-Hausdorff-distance classifier.

    support: (N, 1, H, W) or (N, H, W) binary images (ink = nonzero); query: (Q, ...) of the same
    image size. Each image becomes its mean-centred ink coordinates; query i is assigned the
    support image with the smallest ``modified_hausdorff_distance`` (lowest index on ties).
    Returns pred int64 (Q,) and distances float64 (Q, N) in pixels (+inf where either image has no ink).
    """
    s_mask, q_mask = _images(support, "support"), _images(query, "query")
    if s_mask.shape[1:] != q_mask.shape[1:]:
        raise ValueError(
            f"mhd_classify: support images are {tuple(s_mask.shape[1:])}, queries {tuple(q_mask.shape[1:])}"
        )
    n, nq = len(s_mask), len(q_mask)
    s_pts, s_own, s_cnt, s_cen = _points(s_mask)
    q_pts, q_own, q_cnt, q_cen = _points(q_mask)
    q_to_s = torch.full((nq, n), float("inf"), dtype=torch.float64)  # mean over query ink of min over support ink
    s_to_q = torch.full((nq, n), float("inf"), dtype=torch.float64)  # mean over support ink of min over query ink
    for j in range(n):
        if s_cnt[j] and len(q_pts):
            q_to_s[:, j] = _mean_nearest(s_mask[j], s_cen[j], q_pts, q_own, q_cnt, q_cen)
    for i in range(nq):
        if q_cnt[i] and len(s_pts):
            s_to_q[i] = _mean_nearest(q_mask[i], q_cen[i], s_pts, s_own, s_cnt, s_cen)
    dist = torch.maximum(q_to_s, s_to_q)
    dist[(q_cnt == 0)[:, None] | (s_cnt == 0)[None, :]] = float("inf")
    pred = dist.argmin(1) if n else torch.zeros(nq, dtype=torch.int64)
    return pred, dist
