"""The factorial model's evaluation: content x style grids and swaps (figures) and the texture /
character accuracy of every generated cell (``python -m analysis.structured`` runs it; see its
docstring for the metrics).

Diagnostics of whether content and style separate (DESIGN.md, "What each structured experiment
must show"), each a function a test can run on a hand-built model:

* ``kl`` / ``kl_episodes`` (:func:`latent_kls`): KL(q || p) of every latent (c, t, z) on episodes of
  the evaluation pool: a latent the decoder ignores collapses to its prior (KL ~ 0).
* ``t_swap`` (:func:`t_swap_test`): each cell generated twice with the same c and z, once with its
  column's t and once with another column's: the share of swapped cells whose classified texture
  follows the new t (chance 1 / #textures when the texture does not depend on t).
* ``texture.follows_row`` (:func:`row_texture_leak`): the share of cells whose texture is the row
  image's rather than the column's (texture leaking through c), on cells where the two differ.
* ``texture_robustness`` (:func:`texture_robustness`): the texture classifier's accuracy on real
  held-out images with 2% and 5% of their pixels flipped (is the metric valid on noisy, generated-like
  images?).
"""

from __future__ import annotations

import logging
from pathlib import Path

from experiments.artifacts import save_figure

import numpy as np
import torch

from .stats import binomial_above, too_few_units, wilson_interval
from .structured_common import (
    ancestral,
    episode_scores,
    figure_prefix,
    fit_logistic,
    shape_features,
    texture_features,
    _centres,
    _mean_se,
    _nearest,
    _short,
    _tile,
)

log = logging.getLogger(__name__)


# ============================================================================ factorial: figures and metrics
@torch.no_grad()
def _as_sets(images: torch.Tensor) -> torch.Tensor:
    """Support sets (N, k, 1, H, W) as they are; single images (N, 1, H, W) as sets of one."""
    return images if images.dim() == 5 else images[:, None]


def _cells(
    model, rows: torch.Tensor, cols: torch.Tensor, device, n_per_cell: int = 1, chunk: int = 256
) -> torch.Tensor:
    """x ~ p(x | c ~ q(c | row_i), t ~ q(t | col_j), z ~ p(z)) -> (R, C, n, 1, H, W) on the CPU.
    rows, cols: images (N, 1, H, W) or support sets (N, k, 1, H, W) (:func:`support_sets`)."""
    rows, cols = _as_sets(rows), _as_sets(cols)
    R, Cn = len(rows), len(cols)
    ri = torch.arange(R).repeat_interleave(Cn * n_per_cell)  # cell order: row, column, draw
    ci = torch.arange(Cn).repeat_interleave(n_per_cell).repeat(R)
    out = []
    for s in range(0, len(ri), chunk):
        Dc = rows[ri[s : s + chunk]].to(device=device, dtype=torch.float32)
        Dt = cols[ci[s : s + chunk]].to(device=device, dtype=torch.float32)
        x, _ = ancestral(model, len(Dc), inputs={"c": Dc, "t": Dt})
        out.append(x.float().cpu())
    return torch.cat(out).view(R, Cn, n_per_cell, *rows.shape[2:])


def support_sets(
    pool, index: torch.Tensor, label: torch.Tensor, k: int, g: torch.Generator, avoid=None
) -> torch.Tensor:
    """For each image ``index[i]`` of ``pool``, a support set of ``k`` images with its label
    (``label``: the pool's character or texture per image): the image itself first, then k - 1
    others drawn without replacement, preferring images whose character is not in ``avoid``
    (a tensor of character ids, e.g. the grid's rows for the style columns). Sets are as large as
    training's (train.k_shot) so that q(c | D) and q(t | D) see what they were trained on; a label
    with fewer than k images gives every one of them, repeated in order. -> (N, k, 1, H, W)."""
    out = []
    for i in index.tolist():
        same = (label == label[i]).nonzero().flatten()
        same = same[same != i]
        if avoid is not None and len(same):
            keep = ~torch.isin(pool.character[same], avoid)
            same = torch.cat([same[keep][torch.randperm(int(keep.sum()), generator=g)], same[~keep]])
        else:
            same = same[torch.randperm(len(same), generator=g)]
        members = torch.cat([torch.tensor([i]), same])[:k]
        members = members.repeat((k + len(members) - 1) // len(members))[:k]
        out.append(pool.images[members])
    return torch.stack(out)


def grid_bootstrap(ok: torch.Tensor, n_boot: int = 2000, seed: int = 0) -> list[float] | None:
    """95% percentile interval of the mean of a (rows, columns) boolean grid, rows and columns
    resampled with replacement together (cells of a row share its c, cells of a column its t, so
    they are not independent trials); None with fewer than 2 rows or 2 columns."""
    R, T = ok.shape
    if R < 2 or T < 2:
        return None
    g = torch.Generator().manual_seed(int(seed) + 97)
    r = torch.randint(R, (n_boot, R), generator=g)
    c = torch.randint(T, (n_boot, T), generator=g)
    okf = ok.double()
    means = okf[r[:, :, None], c[:, None, :]].mean(dim=(1, 2))
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return [float(lo), float(hi)]


def _share(ok: torch.Tensor) -> dict:
    """{value, Wilson 95% interval, n} of a boolean tensor's share of True."""
    n, k = int(ok.numel()), int(ok.sum())
    return {"value": k / n if n else None, "ci95": wilson_interval(k, n), "n": n, "k": k}


@torch.no_grad()
def latent_kls(
    model, s, k_shot: dict, resample: dict, device, seed: int, batch_size: int = 64, max_targets: int = 2048
) -> dict:
    """KL(q(k | D_k, ...) || p(k | ...)) of every latent on episodes of the textured set ``s``.

    Up to ``max_targets`` random images of ``s`` are targets; each episode gives the encoders D_c
    (``k_shot["c"]`` other images of the target's character), D_t (of its texture) and the target
    (z), as in training (vhe.DataLoader, labels experiments.factorial.labels_of). The KL of each
    latent is the one ``model.score(..., return_kl=True)`` returns: the single-draw Monte Carlo
    KL(q || p), unweighted, in nats per target (c and t: per support set; z: per image). Returns
    {"kl": {latent: mean}, "kl_episodes": {"se": {latent: SE over targets}, "n_targets", ...}}.
    """
    import vhe
    from experiments.factorial import labels_of

    loader = vhe.DataLoader(
        s.images,
        labels=labels_of(s),
        k_shot=k_shot,
        batch_size=batch_size,
        resample=resample,
        shuffle=False,
        seed=int(seed),
        device=device,
        dtype=torch.float32,
    )
    g = torch.Generator().manual_seed(int(seed) + 21)
    targets = torch.randperm(len(s), generator=g)[: int(max_targets)].sort().values.to(device)
    _, kls = episode_scores(model, loader, targets, True, batch_size, seed)
    means, ses = {}, {}
    for k, v in kls.items():
        means[k], ses[k] = _mean_se(v)
    out = {
        "kl": means,
        "kl_episodes": {
            "se": ses,
            "n_targets": int(len(targets)),
            "k_shot": dict(k_shot),
            "units": "nats: single-draw KL(q(k | D_k) || p(k)) per target, unweighted "
            "(c, t: per support set, z: per image); SE over targets",
        },
    }
    if too_few_units(len(targets)):
        out["kl_episodes"]["se_reason"] = too_few_units(len(targets), "target")
    return out


@torch.no_grad()
def t_swap_test(
    model,
    rows: torch.Tensor,
    cols: torch.Tensor,
    col_texture: torch.Tensor,
    predict_tex,
    device,
    seed: int,
    chunk: int = 256,
) -> dict:
    """Does the texture follow t? Every cell (row i, column j) is generated twice with the same
    c ~ q(c | row_i) and z ~ p(z): with t ~ q(t | col_j), and with the t drawn for another column
    j' != j of the same row (uniformly at random). Both images are classified by ``predict_tex``
    (on texture_features). Reported (shares of cells, Wilson 95% intervals): ``follows_t``, the
    swapped image classified as column j''s texture; ``follows_original_t``, the unswapped one as
    column j's; ``changed``, the classified texture changed with t; ``both``; ``chance`` = 1 /
    #textures among the columns (what ``follows_t`` is when the texture does not depend on t),
    and the one-sided binomial p-value of follows_t above it.
    rows (R, 1, H, W), cols (T, 1, H, W) images or support sets (R | T, k, 1, H, W); col_texture
    (T,) the columns' texture labels.
    """
    R, T = len(rows), len(cols)
    if T < 2:
        return {"skipped": "fewer than 2 style columns to swap t between"}
    ri = torch.arange(R).repeat_interleave(T)
    ci = torch.arange(T).repeat(R)
    g = torch.Generator().manual_seed(int(seed))
    other = (ci + torch.randint(1, T, (R * T,), generator=g)) % T  # another column of the same row
    swap_cell = ri * T + other
    orig, swapped = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        lat = {}
        for s0 in range(0, R * T, chunk):
            Dc = _as_sets(rows)[ri[s0 : s0 + chunk]].to(device=device, dtype=torch.float32)
            Dt = _as_sets(cols)[ci[s0 : s0 + chunk]].to(device=device, dtype=torch.float32)
            x, v = ancestral(model, len(Dc), inputs={"c": Dc, "t": Dt})
            orig.append(x.float().cpu())
            for k, val in v.items():
                lat.setdefault(k, []).append(val)
        lat = {k: torch.cat(v) for k, v in lat.items()}
        for s0 in range(0, R * T, chunk):
            sl = slice(s0, s0 + chunk)
            values = {k: v[sl] for k, v in lat.items()}
            values["t"] = lat["t"][swap_cell[sl].to(lat["t"].device)]
            x, _ = ancestral(model, len(values["t"]), values=values)
            swapped.append(x.float().cpu())
    pred_o = predict_tex(texture_features(torch.cat(orig)))
    pred_s = predict_tex(texture_features(torch.cat(swapped)))
    want_o, want_s = col_texture[ci], col_texture[other]
    chance = 1.0 / int(torch.unique(col_texture).numel())
    follows, changed = _share(pred_s == want_s), _share(pred_s != pred_o)
    return {
        "cells": R * T,
        "rows": R,
        "columns": T,
        "chance": chance,
        "follows_t": follows["value"],
        "follows_t_ci95": follows["ci95"],
        "p_value_above_chance": binomial_above(follows["k"], follows["n"], chance),
        "follows_original_t": _share(pred_o == want_o)["value"],
        "changed": changed["value"],
        "changed_ci95": changed["ci95"],
        "both": _share((pred_o == want_o) & (pred_s == want_s))["value"],
        "design": "each cell twice with the same c ~ q(c | row support set) and z ~ p(z): t ~ q(t | its column's "
        "support set) and the t of another column of the row; texture by the grid's texture classifier",
        "units": "shares of cells in [0, 1], Wilson 95% intervals",
    }


def row_texture_leak(
    tex_pred: torch.Tensor, row_texture: torch.Tensor, col_texture: torch.Tensor, n_textures: int
) -> dict:
    """How often a cell's classified texture is its ROW image's (texture leaking through c), on the
    cells whose row and column images differ in texture (elsewhere the two cannot be told apart).
    All three (n_cells,). Chance 1 / ``n_textures``."""
    differ = row_texture != col_texture
    sh = _share(tex_pred[differ] == row_texture[differ])
    out = {
        "follows_row": sh["value"],
        "follows_row_ci95": sh["ci95"],
        "follows_row_cells": sh["n"],
        "follows_row_chance": 1.0 / n_textures,
    }
    if sh["n"] == 0:
        out["follows_row_reason"] = "no cell whose row and column images differ in texture"
    return out


def flip_pixels(images: torch.Tensor, rate: float, g: torch.Generator) -> torch.Tensor:
    """Binary images (N, 1, H, W) with exactly round(rate * H * W) pixels of each flipped (x -> 1 - x),
    chosen uniformly at random; float32."""
    x = images.float().clone()
    N = x.shape[0]
    flat = x.view(N, -1)
    k = int(round(rate * flat.shape[1]))
    if k:
        idx = torch.rand(N, flat.shape[1], generator=g).argsort(dim=1)[:, :k]
        flat.scatter_(1, idx, 1.0 - flat.gather(1, idx))
    return x


def texture_robustness(
    predict_tex, images: torch.Tensor, labels: torch.Tensor, rates=(0.02, 0.05), seed: int = 0
) -> dict:
    """The texture classifier's accuracy on real images (``images``, texture ``labels``) clean and
    with a share ``rate`` of each image's pixels flipped (:func:`flip_pixels`): is the metric still
    valid on images as noisy as generated ones? Wilson 95% intervals."""
    if not len(images):
        return {"skipped": "no real held-out images"}
    g = torch.Generator().manual_seed(int(seed) + 31)
    clean = _share(predict_tex(texture_features(images)) == labels)
    flips = []
    for r in rates:
        sh = _share(predict_tex(texture_features(flip_pixels(images, float(r), g))) == labels)
        flips.append(
            {
                "flip_rate": float(r),
                "pixels_flipped": int(round(float(r) * images[0].numel())),
                "accuracy": sh["value"],
                "ci95": sh["ci95"],
            }
        )
    return {
        "n_images": int(len(images)),
        "clean_accuracy": clean["value"],
        "clean_ci95": clean["ci95"],
        "flips": flips,
        "units": "accuracies in [0, 1], Wilson 95% intervals",
    }


def _choose_grid(pool, n_rows, n_textures, g):
    """Row images (distinct characters) and one column image per texture (characters not in the rows
    where possible). Returns (row indices, column indices, texture ids of the columns)."""
    chars = torch.randperm(pool.n_classes, generator=g)[:n_rows]
    row_idx = []
    for c in chars.tolist():
        members = (pool.character == c).nonzero().flatten()
        row_idx.append(int(members[torch.randint(len(members), (1,), generator=g)]))
    present = torch.unique(pool.texture)
    texs = present[torch.randperm(len(present), generator=g)[:n_textures]].sort().values
    col_idx = []
    for t in texs.tolist():
        members = (pool.texture == t).nonzero().flatten()
        other = members[~torch.isin(pool.character[members], chars)]
        cand = other if len(other) else members
        col_idx.append(int(cand[torch.randint(len(cand), (1,), generator=g)]))
    return torch.tensor(row_idx), torch.tensor(col_idx), texs


def factorial_grid_figure(pool, rows_i, cols_i, cells, ax=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    R, Cn = len(rows_i), len(cols_i)
    grid = [[None] + [pool.images[j].float() for j in cols_i.tolist()]]
    for i in range(R):
        grid.append([pool.images[int(rows_i[i])].float()] + [cells[i, j, 0] for j in range(Cn)])
    img = _tile(grid, gap_rows=[1], gap_cols=[1])
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(0.45 * (Cn + 1) + 1.2, 0.45 * (R + 1) + 1.0))
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    names = [pool.texture_names[int(pool.texture[j])] for j in cols_i.tolist()]
    ax.set_xticks(_centres(Cn + 1, gaps=[1])[1:])
    ax.set_xticklabels([_short(n, 16) for n in names], fontsize=5, rotation=40, ha="right")
    ax.set_yticks([])
    ax.tick_params(length=0)
    for sp in ax.spines.values():
        sp.set_visible(False)
    ax.set_xlabel("style t ~ q(t | top image) (texture)", fontsize=8)
    ax.set_ylabel("content c ~ q(c | left image)", fontsize=8)
    ax.set_title("x ~ p(x | c, t, z), z ~ p(z)", fontsize=8)
    if own:
        fig.tight_layout()
        return fig
    return None


def factorial_swap_figure(pool, pairs, swaps, ax=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for (ia, ib), (xab, xba) in zip(pairs, swaps):
        rows.append([pool.images[ia].float(), pool.images[ib].float()] + list(xab) + list(xba))
    n = swaps[0][0].shape[0]
    gaps = [2, 2 + n]
    img = _tile(rows, gap_cols=gaps)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(0.45 * (4 + 2 * n) + 1.0, 0.45 * len(rows) + 1.0))
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    c = _centres(len(rows[0]), gaps=gaps)
    ax.set_xticks([c[0], c[1], float(np.mean(c[2 : 2 + n])), float(np.mean(c[2 + n :]))])
    ax.set_xticklabels(["A", "B", "content A\nstyle B", "content B\nstyle A"], fontsize=7)
    ax.set_yticks([])
    ax.tick_params(length=0)
    for sp in ax.spines.values():
        sp.set_visible(False)
    ax.set_title("swap: content of one image, style of the other", fontsize=8)
    if own:
        fig.tight_layout()
        return fig
    return None


def run_factorial(cfg, model, args, device) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.factorial import train_val_textured, wanted_k_shot

    seed = args.seed
    train_set, val_set = train_val_textured(cfg)
    n_tex = int(torch.unique(torch.cat([train_set.texture, val_set.texture])).numel())
    if val_set.n_classes >= max(2, min(args.grid_rows, 4)):
        pool, pool_name = val_set, "validation (held-out) characters"
    else:
        pool = _concat_textured(train_set, val_set)
        pool_name = "all characters (too few held-out characters)"
    g = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    figures = []
    prefix = figure_prefix(cfg)

    # support sets as in training: k_c images of the row's character, k_t of the column's texture
    k = wanted_k_shot(cfg, train_set)
    k_c, k_t = int(k["c"]), int(k["t"])

    def row_sets(idx):
        return support_sets(pool, idx, pool.character, k_c, g)

    def col_sets(idx, rows_idx):
        return support_sets(pool, idx, pool.texture, k_t, g, avoid=pool.character[rows_idx])

    # ---- grid figure (each row and column shows the first image of its support set)
    rows_i, cols_i, texs = _choose_grid(pool, min(args.grid_rows, pool.n_classes), min(args.grid_cols, n_tex), g)
    cells = _cells(model, row_sets(rows_i), col_sets(cols_i, rows_i), device)
    fig = factorial_grid_figure(pool, rows_i, cols_i, cells)
    figures += save_figure(fig, Path(args.figures) / f"{prefix}_grid.png")

    # ---- swap figure
    n_pairs = args.swap_pairs
    pairs = []
    tries = 0
    while len(pairs) < n_pairs and tries < 1000:
        tries += 1
        ia, ib = (int(v) for v in torch.randint(len(pool), (2,), generator=g))
        if pool.character[ia] != pool.character[ib] and (pool.texture[ia] != pool.texture[ib] or tries > 500):
            pairs.append((ia, ib))
    n_draws = 2
    ia = torch.tensor([p[0] for p in pairs] + [p[1] for p in pairs]).repeat_interleave(n_draws)
    ib = torch.tensor([p[1] for p in pairs] + [p[0] for p in pairs]).repeat_interleave(n_draws)
    x, _ = ancestral(
        model,
        len(ia),
        inputs={
            "c": pool.images[ia].to(device, torch.float32)[:, None],
            "t": pool.images[ib].to(device, torch.float32)[:, None],
        },
    )
    x = x.float().cpu().view(2, len(pairs), n_draws, *x.shape[1:])
    swaps = [(x[0, i], x[1, i]) for i in range(len(pairs))]
    fig = factorial_swap_figure(pool, pairs, swaps)
    figures += save_figure(fig, Path(args.figures) / f"{prefix}_swap.png")

    # ---- combined (the file the pipeline tracks)
    R, Cn = len(rows_i), len(cols_i)
    fig, axes = plt.subplots(
        1,
        2,
        figsize=(0.45 * (Cn + 1) + 0.45 * 8 + 2.5, 0.45 * max(R + 1, len(pairs)) + 1.2),
        gridspec_kw={"width_ratios": [Cn + 1.3, 6.3]},
    )
    factorial_grid_figure(pool, rows_i, cols_i, cells, ax=axes[0])
    factorial_swap_figure(pool, pairs, swaps, ax=axes[1])
    fig.tight_layout()
    figures += save_figure(fig, Path(args.figures) / f"{prefix}_samples.png")

    # ---- metrics: classify the cells of a larger grid
    m_rows, m_cols, m_texs = _choose_grid(pool, min(args.metric_rows, pool.n_classes), n_tex, g)
    m_row_sets, m_col_sets = row_sets(m_rows), col_sets(m_cols, m_rows)
    torch.manual_seed(int(seed) + 1)
    mcells = _cells(model, m_row_sets, m_col_sets, device)[:, :, 0]  # (R, T, 1, H, W)
    R, T = mcells.shape[:2]
    flat = mcells.reshape(R * T, *mcells.shape[2:])
    want_tex = pool.texture[m_cols].repeat(R)  # column texture per cell
    want_char = pool.character[m_rows].repeat_interleave(T)  # row character per cell

    predict_tex = fit_logistic(texture_features(train_set.images), train_set.texture, int(train_set.textures.shape[0]))
    tex_pred = predict_tex(texture_features(flat))
    real_tex_acc = (
        float((predict_tex(texture_features(val_set.images)) == val_set.texture).double().mean())
        if len(val_set)
        else None
    )
    row_tex_pred = predict_tex(texture_features(pool.images[m_rows])).repeat_interleave(T)
    copy_tex = float((row_tex_pred == want_tex).double().mean())

    # candidates: the R row characters; references: all real pool images of those characters
    ref_idx = torch.isin(pool.character, pool.character[m_rows]).nonzero().flatten()
    ref_char = pool.character[ref_idx]
    ref = shape_features(pool.images[ref_idx])
    char_pred = ref_char[_nearest(shape_features(flat), ref)]
    real_char_acc = float((ref_char[_nearest(ref, ref, exclude_self=True)] == ref_char).double().mean())
    col_char_pred = ref_char[_nearest(shape_features(pool.images[m_cols]), ref)].repeat(R)
    copy_char = float((col_char_pred == want_char).double().mean())

    tex_ok = tex_pred == want_tex
    char_ok = char_pred == want_char
    leak = row_texture_leak(tex_pred, pool.texture[m_rows].repeat_interleave(T), want_tex, n_tex)

    # ---- diagnostics: does the texture follow t (same c and z, swapped t); KL per latent; the classifier on noise
    swap = t_swap_test(model, m_row_sets, m_col_sets, pool.texture[m_cols], predict_tex, device, int(seed) + 2)
    robust = texture_robustness(predict_tex, val_set.images, val_set.texture, seed=int(seed))
    kls = _pool_kls(cfg, model, pool, device, int(seed), args.batch_size)
    return {
        "data": {
            "pool": pool_name,
            "pool_images": len(pool),
            "pool_characters": pool.n_classes,
            "textures": n_tex,
            "train_images": len(train_set),
        },
        "cells": int(R * T),
        "grid_rows": int(R),
        "grid_columns": int(T),
        "support": {
            "c": k_c,
            "t": k_t,
            "design": "c ~ q(c | k_c images of the row's character), t ~ q(t | k_t images of the column's "
            "texture, characters outside the rows first), as in training (train.k_shot)",
        },
        "texture": {
            "accuracy": float(tex_ok.double().mean()),
            "bootstrap_ci95": grid_bootstrap(tex_ok.view(R, T), seed=int(seed)),
            "chance": 1.0 / n_tex,
            "classifier": "logistic regression on log |FFT| features, trained on the training split",
            "classifier_accuracy_real": real_tex_acc,
            "copy_row_baseline": copy_tex,
            **(
                {}
                if real_tex_acc is not None
                else {"classifier_accuracy_real_reason": "the textured set has no validation images"}
            ),
            **leak,
        },
        "character": {
            "accuracy": float(char_ok.double().mean()),
            "bootstrap_ci95": grid_bootstrap(char_ok.view(R, T), seed=int(seed) + 1),
            "chance": 1.0 / R,
            "classifier": "nearest neighbour (cosine, blurred pixels) among all real images of the grid's "
            "row characters (R-way)",
            "classifier_accuracy_real": real_char_acc,
            "copy_column_baseline": copy_char,
        },
        "both_accuracy": float((tex_ok & char_ok).double().mean()),
        "t_swap": swap,
        "texture_robustness": robust,
        **kls,
        "figures": figures,
    }


def _pool_kls(cfg, model, pool, device, seed: int, batch_size: int) -> dict:
    """:func:`latent_kls` on the evaluation pool with the model's training k_shot (capped by the pool's
    smallest groups) and resampling."""
    import vhe
    from experiments.common import model_section
    from experiments.factorial import labels_of, wanted_k_shot
    from experiments.hierarchical import capped_k_shot

    obj = vhe.get_objective(model_section(cfg).get("objective", "vhe"))
    k_shot = capped_k_shot(labels_of(pool), wanted_k_shot(cfg, pool))
    out = latent_kls(
        model, pool, k_shot, {"c": obj.resample, "t": obj.resample, "z": True}, device, seed, batch_size=batch_size
    )
    out["kl_episodes"]["data"] = "the evaluation pool (the grid's images)"
    return out


def _concat_textured(a, b):
    from vhe.data.textures import TexturedSet

    off = a.n_classes
    return TexturedSet(
        images=torch.cat([a.images, b.images]),
        character=torch.cat([a.character, b.character + off]),
        alphabet=torch.cat([a.alphabet, b.alphabet]),
        texture=torch.cat([a.texture, b.texture]),
        image=torch.arange(len(a) + len(b)),
        source_index=torch.cat([a.source_index, b.source_index]),
        offset=torch.cat([a.offset, b.offset]),
        textures=a.textures,
        character_names=list(a.character_names) + list(b.character_names),
        alphabet_names=list(a.alphabet_names),
        texture_names=list(a.texture_names),
        dilate=a.dilate,
        seed=a.seed,
    )
