"""Metrics and sample figures of the structured models (hierarchical, factorial).

    python -m analysis.structured --config results/<run>/configs/<model>.json \\
        --checkpoint results/<run>/checkpoints/<model>/best.pt \\
        --out results/<run>/metrics/<model>.json --figures results/<run>/figures \\
        [--class-checkpoint results/<run>/checkpoints/vhe_deconv/best.pt \\
         --class-config results/<run>/configs/vhe_deconv.json]

Dispatches on ``cfg["model"]["experiment"]``. Figure stems are ``<prefix>_<name>`` with prefix
the experiment name (or the model name when it differs, as paper_figures.outputs does), each
written as PNG and PDF into ``--figures``:

hierarchical (``hierarchical_samples``): for a few held-out (evaluation) alphabets, the first row
    shows one image of each of a few of the alphabet's characters; a ~ q(a | D_a) with D_a = all
    images of those characters; each following row is one new character c ~ p(c | a), drawn
    several times (x ~ p(x | c, z), z ~ p(z)); the last row shows real characters of the same
    alphabet that were not given, for comparison.
    Metrics: ``bound_per_image``: the training objective (VHE bound, kl_factor 1, the model's own
    resample/rescale) averaged over episodes whose targets are evaluation images and whose
    support sets come from the evaluation set (D_a: 10 images of the target's alphabet, D_c:
    k_shot images of its character), in nats per image, with its standard error and the mean
    KL per latent; the same bound for the class-structured model of ``--class-checkpoint`` on
    the same targets (its own k_shot and objective), their paired difference and
    ``alphabet_improves_bound`` (hierarchical bound > class bound; ``class_model.same_training_steps``
    says whether both checkpoints come from the same training step). Also (``--n-samples`` > 0) the
    importance-sampled -log p(X)/|X| of ``--nll-classes`` whole evaluation characters under both
    models (a and c class-level, inferred from the character's own images only; K stated) and the
    paired improvement (class minus hierarchical). ``alphabet_style`` (see :func:`alphabet_style`):
    the share of new characters c ~ p(c | a) that an alphabet classifier trained on real images
    assigns to the alphabet a was inferred from (chance 1 / #alphabets, and the classifier's
    accuracy on real characters it never saw as the ceiling).

factorial (``factorial_grid``, ``factorial_swap``, and ``factorial_samples`` = both side by side,
    the file the pipeline tracks): the grid's rows take the content from one image each
    (c ~ q(c | row image)), its columns the style (t ~ q(t | column image)), cells are samples
    x ~ p(x | c, t, z) with z ~ p(z); the swap figure shows pairs (A, B) and the samples with
    (content A, style B) and (content B, style A). Rows and columns come from the held-out
    (validation) characters of the textured set (all characters when it has too few).
    Metrics (``texture`` / ``character``): every cell of a larger grid (up to
    ``--metric-rows`` content images x one style image per texture) is classified:
    its texture by a logistic regression on Fourier-magnitude features (translation invariant)
    trained on the real training-split images' texture labels, its character by the nearest
    neighbour (cosine, blurred pixels: the silhouette, blind to the texture) among all real images
    of the grid's row characters (an R-way choice). Reported: accuracy against the column's texture /
    the row's character, chance (1 / #textures, 1 / R), the classifiers' accuracy on
    real held-out images (their ceiling), and copy baselines (the row image's own texture
    prediction vs the column texture; the column image's character vs the row character).

Everything is seeded by ``--seed`` (default ``evaluation.seed``). The JSON is written atomically
and carries provenance (git commit, torch version, date, seed, command).
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import sys
from pathlib import Path

from vhe.files import atomic_path, atomic_write_text

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger("analysis.structured")

__all__ = ["main", "parse_args", "load_model", "ancestral", "episode_bounds", "run_hierarchical", "run_factorial",
           "alphabet_style", "texture_features", "shape_features", "fit_logistic", "figure_prefix"]

BUILDER_MODULES = {"hierarchical": "experiments.hierarchical", "factorial": "experiments.factorial"}


# ============================================================================ plumbing
def _atomic_write_json(obj, path: Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", path)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _save_figure(fig, figures: Path, stem: str) -> list[str]:
    """Save ``fig`` as <stem>.png and <stem>.pdf (atomically); returns the paths."""
    import matplotlib.pyplot as plt

    figures = Path(figures)
    figures.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        path = figures / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        out.append(str(path))
    plt.close(fig)
    return out


def figure_prefix(cfg) -> str:
    """Figure names carry the experiment name, or the model name when it differs (paper_figures.outputs)."""
    m = cfg["model"]
    return m["experiment"] if m.get("name", m["experiment"]) == m["experiment"] else m["name"]


def _provenance(cfg, device, seed) -> dict:
    from experiments.trainer import provenance

    p = provenance(cfg, device)
    p["seed"] = int(seed)
    return p


def load_model(cfg, checkpoint, device):
    """The VHE of ``cfg["model"]`` with the weights of a trainer checkpoint, in eval mode -> (model, ckpt)."""
    from experiments.common import model_section

    exp_name = model_section(cfg)["experiment"]
    from experiments.checkpoints import load_weights

    builder = importlib.import_module(BUILDER_MODULES[exp_name]) if exp_name in BUILDER_MODULES else None
    if builder is not None and hasattr(builder, "make_model"):
        model = builder.make_model(cfg, device)
    else:  # any other experiment: the full builder (loads its training data)
        from experiments.registry import build_experiment

        model = build_experiment(cfg, device).model
    ckpt = load_weights(model, checkpoint, device)
    return model, ckpt


# ============================================================================ sampling and scoring
@torch.no_grad()
def ancestral(model, batch_size: int, values: dict | None = None, inputs: dict | None = None):
    """Sample from the model (``VHE.sample``): latents in ``values`` are fixed, those in ``inputs``
    come from their encoders, the rest from their priors. Returns (x (B, ...), {latent: value}),
    where x is the decoder's mean (pixel probabilities) when it has ``probs`` (deconvolutional
    decoders: independent pixels, whose binary samples look like speckle), else a sample."""
    x, lat = model.sample(inputs=inputs, values=values, batch_size=batch_size, return_latents=True)
    if hasattr(model.decoder, "probs"):
        x = model.decoder.probs(*[lat[p] for p in model.parents(model.observed)])
    return x, lat


@torch.no_grad()
def episode_bounds(model, loader, targets: torch.Tensor, rescale: bool, batch_size: int = 64, seed: int = 0):
    """The training objective (kl_factor 1) for episodes with the given targets.

    Returns (per-target bounds (n,) float64 numpy, {latent: mean KL nats}).
    """
    model.eval()
    gen_state = loader.generator.get_state()
    loader.generator.manual_seed(int(seed))
    bounds, kls = [], {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for i in range(0, len(targets), batch_size):
            b = loader.episode(targets[i:i + batch_size])
            bound, kl = model.score(b.inputs, b.sizes, x=b.target, kl_factor=1.0, rescale=rescale,
                                    return_kl=True, reduction="none")
            bounds.append(bound.double().cpu())
            for k, v in kl.items():
                kls[k] = kls.get(k, 0.0) + float(v.double().sum())
    loader.generator.set_state(gen_state)
    bounds = torch.cat(bounds).numpy()
    return bounds, {k: v / len(targets) for k, v in kls.items()}


def _mean_se(a) -> tuple[float, float]:
    a = np.asarray(a, dtype=np.float64)
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan")
    return float(a.mean()), se


# ============================================================================ drawing helpers
def _offsets(n: int, size: int, pad: int, gaps) -> list[int]:
    """Start of each of n cells along one axis; a gap index adds a band before that cell."""
    extra = 3 * pad + 2
    out, y = [], pad
    for i in range(n):
        if i in gaps:
            y += extra
        out.append(y)
        y += size + pad
    return out


def _tile(rows, pad: int = 1, gap_rows=(), gap_cols=(), fill=0.6) -> np.ndarray:
    """rows: list of lists of images ((1, H, W) tensors in [0, 1], ink = 1) or None (blank).

    Returns a float (H', W') array, ink black on white, grey padding; ``gap_rows`` /
    ``gap_cols`` (indices) get an extra band of padding before them.
    """
    h, w = next(im.shape[-2:] for r in rows for im in r if im is not None)
    n_cols = max(len(r) for r in rows)
    ys = _offsets(len(rows), h, pad, set(gap_rows))
    xs = _offsets(n_cols, w, pad, set(gap_cols))
    out = np.full((ys[-1] + h + pad, xs[-1] + w + pad), fill, dtype=np.float32)
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            y, x = ys[i], xs[j]
            if im is None:
                out[y:y + h, x:x + w] = 1.0
            else:
                out[y:y + h, x:x + w] = 1.0 - im.detach().float().cpu().reshape(h, w).clamp(0, 1).numpy()
    return out


def _centres(n: int, size: int = 28, pad: int = 1, gaps=()) -> list[float]:
    """Pixel centres of the cells of ``_tile`` along one axis (for tick labels)."""
    return [o + size / 2 - 0.5 for o in _offsets(n, size, pad, set(gaps))]


def _short(name: str, n: int = 28) -> str:
    name = name.replace("_", " ")
    return name if len(name) <= n else name[: n - 1] + "…"


# ============================================================================ hierarchical
def _pick_targets(s, max_classes, seed):
    """Indices of the images of ``max_classes`` random characters of s (all images when None)."""
    if max_classes is None or max_classes >= s.n_classes:
        return torch.arange(len(s)), s.n_classes
    g = torch.Generator().manual_seed(int(seed))
    chars = torch.randperm(s.n_classes, generator=g)[: int(max_classes)]
    return torch.isin(s.character, chars).nonzero().flatten(), int(max_classes)


def _class_tensors(s, chars: torch.Tensor, device) -> torch.Tensor:
    """(C, N, 1, H, W) float images of the given characters (N = the smallest class size)."""
    per = [torch.nonzero(s.character == c).flatten() for c in chars.tolist()]
    n = min(len(p) for p in per)
    return torch.stack([s.images[p[:n]] for p in per]).to(device=device, dtype=torch.float32)


def _nll(model, X, n_samples, chunk=8):
    from vhe.evaluate import log_marginal

    out = []
    for i in range(0, len(X), chunk):
        out.append(log_marginal(model, X[i:i + chunk], n_samples=n_samples, per_element=("z",)).double().cpu())
    return -torch.cat(out).numpy() / X.shape[1]   # (C,) nats per image


def hierarchical_figure(model, s, device, seed, n_alphabets=4, n_shown=5, n_new=5, n_draws=6):
    """The hierarchical sample figure (see the module docstring) -> matplotlib figure, facts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(int(seed))
    char_alpha = s.character_alphabet()
    chars_of = {a: (char_alpha == a).nonzero().flatten() for a in range(s.n_alphabets)}
    alphas = [a for a in range(s.n_alphabets) if len(chars_of[a]) >= 1]
    rich = [a for a in alphas if len(chars_of[a]) > n_shown] or alphas
    order = torch.randperm(len(rich), generator=g).tolist()
    chosen = [rich[i] for i in order[:n_alphabets]]
    panels, facts = [], []
    torch.manual_seed(int(seed))
    for a in chosen:
        cs = chars_of[a][torch.randperm(len(chars_of[a]), generator=g)]
        shown, rest = cs[:n_shown], cs[n_shown:]
        shown_imgs = [s.images[(s.character == c).nonzero().flatten()[0]].float() for c in shown.tolist()]
        D_a = s.images[torch.isin(s.character, shown)].to(device=device, dtype=torch.float32)[None]
        _, v = ancestral(model, 1, inputs={"a": D_a}, values=None)
        a_val = v["a"]
        _, new = model.sample(values={"a": a_val.expand(n_new, -1)}, return_latents=True)  # c ~ p(c | a)
        c_val = new["c"]
        c_rep = c_val.repeat_interleave(n_draws, dim=0)
        x, _ = ancestral(model, n_new * n_draws, values={"a": a_val.expand(n_new * n_draws, -1), "c": c_rep})
        x = x.view(n_new, n_draws, *x.shape[1:]).cpu()
        real_rest = [s.images[(s.character == c).nonzero().flatten()[0]].float()
                     for c in rest[: max(n_shown, n_draws)].tolist()]
        rows = [shown_imgs] + [list(x[i]) for i in range(n_new)] + ([real_rest] if real_rest else [])
        labels = ["given"] + [f"new {i + 1}" for i in range(n_new)] + (["real, not given"] if real_rest else [])
        gaps = [1] + ([n_new + 1] if real_rest else [])
        panels.append((s.alphabet_names[a], rows, labels, gaps))
        facts.append({"alphabet": s.alphabet_names[a], "given_characters": len(shown), "D_a_images": int(D_a.shape[1]),
                      "new_characters": n_new, "draws_per_character": n_draws})
    width = max(n_shown, n_draws)
    fig, axes = plt.subplots(1, len(panels), figsize=(1.1 + 0.42 * width * len(panels) + 0.9 * len(panels),
                                                       0.42 * (n_new + 3) + 0.9), squeeze=False)
    for ax, (name, rows, labels, gaps) in zip(axes[0], panels):
        ax.imshow(_tile(rows, gap_rows=gaps), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(_centres(len(rows), gaps=gaps))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xticks([])
        ax.tick_params(length=0)
        for sp in ax.spines.values():
            sp.set_visible(False)
        ax.set_title(_short(name), fontsize=8)
    fig.suptitle("New characters from p(c | a), a ~ q(a | given characters); each row: one c, x ~ p(x | c, z)",
                 fontsize=8)
    fig.tight_layout()
    return fig, facts


@torch.no_grad()
def alphabet_style(model, s, device, seed, n_shown: int = 5, n_new: int = 10) -> dict:
    """Are new characters drawn from p(c | a) in the style of the alphabet that a was inferred from?

    For every alphabet of ``s`` with more than ``n_shown + 1`` characters: a ~ q(a | all images of
    ``n_shown`` random characters of it) ("given"), then ``n_new`` new characters c ~ p(c | a), one
    image each (decoder mean, z ~ p(z)). An alphabet classifier (logistic regression on
    ``shape_features``) is trained on the real images of half of each alphabet's remaining
    characters; its accuracy on the images of the other half (characters it never saw) is the
    ceiling. Reported: the fraction of new characters classified as the alphabet they were
    conditioned on, chance (1 / #alphabets: every alphabet gets the same number of new characters,
    so a model that ignores a scores it whatever the classifier's biases), the ceiling, and
    ``nearest_is_given``: the fraction of new characters whose nearest real image (cosine on shape
    features, all images of the alphabet) belongs to a given character (high = copies, not new
    characters), next to the share of the alphabet's images that are given ones (what a random
    real image would score).
    """
    g = torch.Generator().manual_seed(int(seed) + 7)
    char_alpha = s.character_alphabet()
    alphas = [a for a in range(s.n_alphabets) if int((char_alpha == a).sum()) > n_shown + 1]
    if len(alphas) < 2:
        return {"skipped": "fewer than 2 alphabets with enough characters"}
    train_chars, test_chars, new_feats, new_alpha, near_given, given_share = [], [], [], [], [], []
    torch.manual_seed(int(seed) + 7)
    for a in alphas:
        cs = (char_alpha == a).nonzero().flatten()
        cs = cs[torch.randperm(len(cs), generator=g)]
        shown, rest = cs[:n_shown], cs[n_shown:]
        half = max(1, len(rest) // 2)
        train_chars.append(rest[:half])
        test_chars.append(rest[half:])
        D_a = s.images[torch.isin(s.character, shown)].to(device=device, dtype=torch.float32)[None]
        _, v = ancestral(model, 1, inputs={"a": D_a})
        x, _ = ancestral(model, n_new, values={"a": v["a"].expand(n_new, -1)})
        feats = shape_features(x.float().cpu())
        new_feats.append(feats)
        new_alpha += [a] * n_new
        in_alpha = torch.isin(s.character, cs)
        ref_given = torch.isin(s.character[in_alpha], shown)
        near_given.append(ref_given[_nearest(feats, shape_features(s.images[in_alpha]))].double())
        given_share.append(float(ref_given.double().mean()))
    lab = torch.full((s.n_alphabets,), -1, dtype=torch.int64)
    lab[torch.tensor(alphas)] = torch.arange(len(alphas))
    tr = torch.isin(s.character, torch.cat(train_chars))
    te = torch.isin(s.character, torch.cat(test_chars))
    predict = fit_logistic(shape_features(s.images[tr]), lab[s.alphabet[tr]], len(alphas))
    ceiling = float((predict(shape_features(s.images[te])) == lab[s.alphabet[te]]).double().mean()) if te.any() else None
    want = lab[torch.tensor(new_alpha)]
    acc = float((predict(torch.cat(new_feats)) == want).double().mean())
    return {"alphabets": len(alphas), "given_characters": n_shown, "new_per_alphabet": n_new,
            "accuracy": acc, "chance": 1.0 / len(alphas),
            "classifier": "logistic regression on blurred silhouettes (shape_features), trained on real images "
                          "of half of each alphabet's non-given characters",
            "classifier_accuracy_real": ceiling,
            "nearest_is_given": float(torch.cat(near_given).mean()),
            "given_share_of_images": float(np.mean(given_share))}


def run_hierarchical(cfg, model, args, device) -> dict:
    from experiments import datasets
    from experiments.common import model_section
    from experiments.hierarchical import capped_k_shot, labels_of, wanted_k_shot

    import vhe

    m = model_section(cfg)
    objective = vhe.get_objective(m.get("objective", "vhe"))
    seed = args.seed
    ev = datasets.load_split(cfg, "evaluation")
    max_classes = args.max_classes if args.max_classes is not None else (cfg.get("evaluation") or {}).get("max_classes")
    targets, n_target_chars = _pick_targets(ev, max_classes, seed)
    targets = targets.to(device)
    k_shot = capped_k_shot(labels_of(ev), wanted_k_shot(cfg))
    loader = vhe.DataLoader(ev.images, labels=labels_of(ev), k_shot=k_shot, batch_size=args.batch_size,
                            resample={"a": objective.resample, "c": objective.resample, "z": True}, shuffle=False,
                            seed=seed, device=device, dtype=torch.float32)
    hb, hkl = episode_bounds(model, loader, targets, objective.rescale, args.batch_size, seed)
    h_mean, h_se = _mean_se(hb)
    out = {
        "evaluation_set": {"images": len(ev), "characters": ev.n_classes, "alphabets": ev.n_alphabets,
                           "targets": int(len(targets)), "target_characters": int(n_target_chars),
                           "k_shot": k_shot, "sizes": "|X_a| = images in the alphabet, |X_c| = images of the "
                                                      "character, |X_z| = 1"},
        "bound_per_image": h_mean, "bound_se": h_se, "kl": hkl,
        "class_model": None, "alphabet_improves_bound": None, "bound_difference": None, "bound_difference_se": None,
    }
    class_model = None
    if args.class_checkpoint:
        from experiments.config import load_config
        from experiments.registry import load_checkpoint

        ccfg = None
        if args.class_config:
            ccfg = load_config(args.class_config)
        class_model, ccfg, cckpt = load_checkpoint(args.class_checkpoint, device=device, cfg=ccfg)
        cm = model_section(ccfg)
        cobj = vhe.get_objective(cm.get("objective", "vhe"))
        clabels = {"c": ev.character, "z": torch.arange(len(ev))}
        ck = capped_k_shot(clabels, {"c": int(cm["train"]["k_shot"]), "z": 1})
        cloader = vhe.DataLoader(ev.images, labels=clabels, k_shot=ck, batch_size=args.batch_size,
                                 resample={"c": cobj.resample, "z": True}, shuffle=False, seed=seed, device=device,
                                 dtype=torch.float32)
        cb, ckl = episode_bounds(class_model, cloader, targets, cobj.rescale, args.batch_size, seed)
        c_mean, c_se = _mean_se(cb)
        d_mean, d_se = _mean_se(hb - cb)
        out["class_model"] = {"name": cm.get("name"), "objective": cobj.name, "decoder": cm.get("decoder"),
                              "checkpoint": str(args.class_checkpoint), "checkpoint_step": cckpt.get("step"),
                              "k_shot": ck, "bound_per_image": c_mean, "bound_se": c_se, "kl": ckl}
        out["bound_difference"] = d_mean
        out["bound_difference_se"] = d_se
        out["alphabet_improves_bound"] = bool(h_mean > c_mean)
    # importance-sampled -log p(X)/|X| of whole evaluation characters (no alphabet context)
    if args.n_samples and args.n_samples > 0:
        n_chars = min(args.nll_classes, ev.n_classes)
        g = torch.Generator().manual_seed(int(seed) + 1)
        chars = torch.randperm(ev.n_classes, generator=g)[:n_chars]
        X = _class_tensors(ev, chars, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            hn = _nll(model, X, args.n_samples)
            nll, nll_se = _mean_se(hn)
            res = {"n_samples": int(args.n_samples), "characters": int(n_chars),
                   "images_per_character": int(X.shape[1]), "nll_per_image": nll, "nll_se": nll_se}
            if class_model is not None:
                torch.manual_seed(int(seed))
                cn = _nll(class_model, X, args.n_samples)
                c_mean, c_se = _mean_se(cn)
                d_mean, d_se = _mean_se(cn - hn)
                res.update({"class_nll_per_image": c_mean, "class_nll_se": c_se,
                            "nll_improvement": d_mean, "nll_improvement_se": d_se})
        out["nll"] = res
    out["alphabet_style"] = alphabet_style(model, ev, device, seed, n_shown=args.n_shown, n_new=args.style_new)
    fig, facts = hierarchical_figure(model, ev, device, seed, n_alphabets=args.n_alphabets, n_shown=args.n_shown,
                                     n_new=args.n_new, n_draws=args.n_draws)
    out["figure_facts"] = facts
    out["figures"] = _save_figure(fig, args.figures, f"{figure_prefix(cfg)}_samples")
    return out


# ============================================================================ factorial: classifiers
def texture_features(x: torch.Tensor) -> torch.Tensor:
    """Translation-invariant texture features: log Fourier magnitude of the image, DC removed,
    each image's spectrum normalised to unit norm. x (N, 1, H, W) -> (N, H*W)."""
    x = x.float().reshape(x.shape[0], *x.shape[-2:])
    mag = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)).abs()
    mag = mag / mag.flatten(1).norm(dim=1).clamp(min=1e-6)[:, None, None]
    return torch.log1p(50.0 * mag).flatten(1)


def _gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def shape_features(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Texture-blind silhouette features: the image blurred (Gaussian, ``sigma`` px), centred and
    L2-normalised. x (N, 1, H, W) -> (N, H*W)."""
    x = x.float().reshape(x.shape[0], 1, *x.shape[-2:])
    r = int(math.ceil(3 * sigma))
    k = _gaussian_kernel(sigma, r).to(x.device)
    y = F.conv2d(F.pad(x, (r, r, 0, 0)), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r)), k.view(1, 1, -1, 1))
    y = y.flatten(1)
    y = y - y.mean(dim=1, keepdim=True)
    return y / y.norm(dim=1, keepdim=True).clamp(min=1e-6)


def fit_logistic(X: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float = 1e-3, steps: int = 200):
    """Multinomial logistic regression (standardised features, L2, LBFGS) -> predict(X) -> labels."""
    X = X.double()
    mu, sd = X.mean(0), X.std(0).clamp(min=1e-6)
    Z = (X - mu) / sd
    W = torch.zeros(Z.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    yt = y.long()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(Z @ W + b, yt) + l2 * W.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    W, b = W.detach(), b.detach()

    def predict(Xn: torch.Tensor) -> torch.Tensor:
        return (((Xn.double() - mu) / sd) @ W + b).argmax(dim=1)

    return predict


def _nearest(query: torch.Tensor, ref: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    sim = query @ ref.T
    if exclude_self:
        sim.fill_diagonal_(-float("inf"))
    return sim.argmax(dim=1)


# ============================================================================ factorial: figures and metrics
@torch.no_grad()
def _cells(model, rows: torch.Tensor, cols: torch.Tensor, device, n_per_cell: int = 1,
           chunk: int = 256) -> torch.Tensor:
    """x ~ p(x | c ~ q(c | row_i), t ~ q(t | col_j), z ~ p(z)) -> (R, C, n, 1, H, W) on the CPU."""
    R, Cn = len(rows), len(cols)
    ri = torch.arange(R).repeat_interleave(Cn * n_per_cell)                  # cell order: row, column, draw
    ci = torch.arange(Cn).repeat_interleave(n_per_cell).repeat(R)
    out = []
    for s in range(0, len(ri), chunk):
        Dc = rows[ri[s:s + chunk]].to(device=device, dtype=torch.float32)[:, None]
        Dt = cols[ci[s:s + chunk]].to(device=device, dtype=torch.float32)[:, None]
        x, _ = ancestral(model, len(Dc), inputs={"c": Dc, "t": Dt})
        out.append(x.float().cpu())
    return torch.cat(out).view(R, Cn, n_per_cell, *rows.shape[1:])


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
    ax.set_xticks([c[0], c[1], float(np.mean(c[2:2 + n])), float(np.mean(c[2 + n:]))])
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

    from experiments.factorial import train_val_textured

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

    # ---- grid figure
    rows_i, cols_i, texs = _choose_grid(pool, min(args.grid_rows, pool.n_classes), min(args.grid_cols, n_tex), g)
    cells = _cells(model, pool.images[rows_i], pool.images[cols_i], device)
    fig = factorial_grid_figure(pool, rows_i, cols_i, cells)
    figures += _save_figure(fig, args.figures, f"{prefix}_grid")

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
    x, _ = ancestral(model, len(ia), inputs={"c": pool.images[ia].to(device, torch.float32)[:, None],
                                             "t": pool.images[ib].to(device, torch.float32)[:, None]})
    x = x.float().cpu().view(2, len(pairs), n_draws, *x.shape[1:])
    swaps = [(x[0, i], x[1, i]) for i in range(len(pairs))]
    fig = factorial_swap_figure(pool, pairs, swaps)
    figures += _save_figure(fig, args.figures, f"{prefix}_swap")

    # ---- combined (the file the pipeline tracks)
    R, Cn = len(rows_i), len(cols_i)
    fig, axes = plt.subplots(1, 2, figsize=(0.45 * (Cn + 1) + 0.45 * 8 + 2.5, 0.45 * max(R + 1, len(pairs)) + 1.2),
                             gridspec_kw={"width_ratios": [Cn + 1.3, 6.3]})
    factorial_grid_figure(pool, rows_i, cols_i, cells, ax=axes[0])
    factorial_swap_figure(pool, pairs, swaps, ax=axes[1])
    fig.tight_layout()
    figures += _save_figure(fig, args.figures, f"{prefix}_samples")

    # ---- metrics: classify the cells of a larger grid
    m_rows, m_cols, m_texs = _choose_grid(pool, min(args.metric_rows, pool.n_classes), n_tex, g)
    torch.manual_seed(int(seed) + 1)
    mcells = _cells(model, pool.images[m_rows], pool.images[m_cols], device)[:, :, 0]  # (R, T, 1, H, W)
    R, T = mcells.shape[:2]
    flat = mcells.reshape(R * T, *mcells.shape[2:])
    want_tex = pool.texture[m_cols].repeat(R)                 # column texture per cell
    want_char = pool.character[m_rows].repeat_interleave(T)   # row character per cell

    predict_tex = fit_logistic(texture_features(train_set.images), train_set.texture, int(train_set.textures.shape[0]))
    tex_pred = predict_tex(texture_features(flat))
    real_tex_acc = (float((predict_tex(texture_features(val_set.images)) == val_set.texture).double().mean())
                    if len(val_set) else None)
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
    return {
        "data": {"pool": pool_name, "pool_images": len(pool), "pool_characters": pool.n_classes,
                 "textures": n_tex, "train_images": len(train_set)},
        "cells": int(R * T), "grid_rows": int(R), "grid_columns": int(T),
        "texture": {"accuracy": float(tex_ok.double().mean()), "chance": 1.0 / n_tex,
                    "classifier": "logistic regression on log |FFT| features, trained on the training split",
                    "classifier_accuracy_real": real_tex_acc, "copy_row_baseline": copy_tex},
        "character": {"accuracy": float(char_ok.double().mean()), "chance": 1.0 / R,
                      "classifier": "nearest neighbour (cosine, blurred pixels) among all real images of the grid's "
                                    "row characters (R-way)",
                      "classifier_accuracy_real": real_char_acc, "copy_column_baseline": copy_char},
        "both_accuracy": float((tex_ok & char_ok).double().mean()),
        "figures": figures,
    }


def _concat_textured(a, b):
    from vhe.data.textures import TexturedSet

    off = a.n_classes
    return TexturedSet(images=torch.cat([a.images, b.images]), character=torch.cat([a.character, b.character + off]),
                       alphabet=torch.cat([a.alphabet, b.alphabet]), texture=torch.cat([a.texture, b.texture]),
                       image=torch.arange(len(a) + len(b)), source_index=torch.cat([a.source_index, b.source_index]),
                       offset=torch.cat([a.offset, b.offset]), textures=a.textures,
                       character_names=list(a.character_names) + list(b.character_names),
                       alphabet_names=list(a.alphabet_names), texture_names=list(a.texture_names), dilate=a.dilate,
                       seed=a.seed)


# ============================================================================ CLI
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m analysis.structured", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="per-model config JSON (results/<run>/configs/<model>.json)")
    p.add_argument("--evaluation", default=None,
                   help="JSON/YAML with the evaluation section (replaces the config's; the pipeline's configs/evaluation.json)")
    p.add_argument("--checkpoint", required=True, help="trainer checkpoint (best.pt)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--figures", required=True, help="figures folder (results/<run>/figures)")
    p.add_argument("--class-checkpoint", default=None, help="hierarchical: class-structured model to compare with")
    p.add_argument("--class-config", default=None, help="its per-model config (default: the one in the checkpoint)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:i] (default: the config's)")
    p.add_argument("--seed", type=int, default=None, help="default: evaluation.seed")
    p.add_argument("--batch-size", type=int, default=64, help="episodes per batch when scoring")
    p.add_argument("--max-classes", type=int, default=None,
                   help="hierarchical: evaluation characters whose images are targets "
                        "(default: evaluation.max_classes; none: all)")
    p.add_argument("--n-samples", type=int, default=None,
                   help="hierarchical: K for -log p(X) per character (default: evaluation.n_samples; 0 skips)")
    p.add_argument("--nll-classes", type=int, default=30,
                   help="hierarchical: evaluation characters for -log p(X) (each costs K x 20 decodes per model)")
    p.add_argument("--n-alphabets", type=int, default=4, help="hierarchical: alphabets in the figure")
    p.add_argument("--n-shown", type=int, default=5, help="hierarchical: given characters per alphabet (D_a)")
    p.add_argument("--n-new", type=int, default=5, help="hierarchical: new characters per alphabet")
    p.add_argument("--n-draws", type=int, default=6, help="hierarchical: draws of each new character")
    p.add_argument("--style-new", type=int, default=10,
                   help="hierarchical: new characters per alphabet for the alphabet-style check")
    p.add_argument("--grid-rows", type=int, default=6, help="factorial: content images in the grid figure")
    p.add_argument("--grid-cols", type=int, default=8, help="factorial: style images in the grid figure")
    p.add_argument("--swap-pairs", type=int, default=6, help="factorial: pairs in the swap figure")
    p.add_argument("--metric-rows", type=int, default=40, help="factorial: content images in the metric grid")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def matched_step_bounds(history_a: Path, history_b: Path) -> dict | None:
    """Validation bounds (nats per image) of two training runs at the last step both validated at:
    {"step", "model", "class_model"} from their history.csv files (None if they share no step)."""
    import csv

    def bounds(path):
        if not path.is_file():
            return {}
        with open(path, newline="") as f:
            return {int(float(r["step"])): float(r["val_bound"]) for r in csv.DictReader(f) if r.get("val_bound")}

    a, b = bounds(history_a), bounds(history_b)
    common = sorted(set(a) & set(b))
    if not common:
        return None
    s = common[-1]
    return {"step": s, "model": a[s], "class_model": b[s],
            "note": "validation bounds of each model's own validation episodes at the same training step"}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from experiments.common import model_section, resolve_device
    from experiments.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, evaluation=args.evaluation)
        m = model_section(cfg)
    except (ConfigError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    exp_name = m["experiment"]
    if exp_name not in BUILDER_MODULES:
        print(f"error: analysis.structured handles hierarchical and factorial models; {m.get('name')!r} is "
              f"{exp_name!r} (use analysis.evaluate)", file=sys.stderr)
        return 2
    ev = cfg.get("evaluation") or {}
    if args.seed is None:
        args.seed = int(ev.get("seed", 0))
    if args.n_samples is None:
        args.n_samples = int(ev.get("n_samples", 0) or 0)
    args.figures = Path(args.figures)
    device = resolve_device(args.device if args.device is not None else cfg.get("device", "auto"))
    torch.manual_seed(args.seed)
    model, ckpt = load_model(cfg, args.checkpoint, device)
    log.info("%s: %s model from %s (step %s)", m.get("name"), exp_name, args.checkpoint, ckpt.get("step"))
    if exp_name == "hierarchical":
        res = run_hierarchical(cfg, model, args, device)
    else:
        res = run_factorial(cfg, model, args, device)
    step = ckpt.get("step") if isinstance(ckpt, dict) else None
    if isinstance(res.get("class_model"), dict):   # a bound comparison is fair only at equal training
        res["class_model"]["same_training_steps"] = step is not None and step == res["class_model"]["checkpoint_step"]
        if getattr(args, "class_checkpoint", None):
            res["class_model"]["val_bound_at_matched_step"] = matched_step_bounds(
                Path(args.checkpoint).parent / "history.csv", Path(args.class_checkpoint).parent / "history.csv")
    out = {"model": m.get("name"), "experiment": exp_name, "objective": m.get("objective"),
           "decoder": m.get("decoder"), "checkpoint": str(args.checkpoint),
           "checkpoint_step": step,
           "units": "bounds and -log p in nats per image (bounds: higher is better); KL in nats; accuracies in [0, 1]",
           **res, "provenance": _provenance(cfg, device, args.seed)}
    _atomic_write_json(out, Path(args.out))
    log.info("wrote %s and %d figure files", args.out, len(res.get("figures", [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
