"""Evaluate one trained model: test likelihood, bounds, KL(c), one-shot classification, samples.

    python -m analysis.evaluate --config results/<run>/configs/<model>.json \
        --checkpoint results/<run>/checkpoints/<model>/best.pt \
        --out results/<run>/metrics/<model>.json --figures results/<run>/figures \
        [--n-samples K] [--max-classes M] [--device cpu] [...]

Options given on the command line override ``cfg["evaluation"]``. The model is rebuilt with
``experiments.registry.build_experiment(cfg, device)`` and its weights are read from the trainer's
checkpoint (``{"model": state_dict, "step", ...}``). Every estimator is the library's
(:mod:`vhe.evaluate`); this module only chooses the data, aggregates and records.

How: :func:`evaluate` sets up a :class:`Context` (model, config, settings for the model's decoder,
device, seed, timer, test classes) and runs the :data:`SECTIONS` in order -- likelihood, bounds,
kl_c, classification, samples_figure -- in one loop (:func:`run_section`) that seeds each
(``evaluation.seed`` + its offset), times it (``eval_seconds``) and records under ``not_defined``
what it raises :class:`~vhe.evaluate.EvaluationError` for. Each section is a small function
``run_<name>(ctx) -> dict`` of its entries of the metrics dict.

Metrics (docs/design.md "Metrics"; every likelihood number is *negative*, in nats per image, lower
is better):

* ``nll_estimate``: -log p̂(X) / |X|, averaged over the test classes (the first ``max_classes``
  evaluation characters, ``images_per_class`` drawings each), log p̂(X) from
  ``vhe.evaluate.log_marginal`` with ``K`` importance samples (c ~ q(c | X), z_i ~ q(z_i | x_i, c)).
  ``elbo`` is -ELBO / |X| with the same samples (mean of log w instead of logsumexp), so
  ``nll_estimate <= elbo`` class by class (``per_class``). For the VAE (no class latent)
  log p(X) is the sum of the per-image log p(x_i).
* ``bounds.test.value`` / ``bounds.train.value``: minus the training objective (``model.score`` with the
  objective's ``rescale``, sizes = class sizes, kl_factor 1) per target image, one episode per
  image of the test classes / of as many training (background) classes, with support sets drawn
  like training ones (the training loader's k_shot and resample).
* ``kl_c``: KL(q(c | D) || p(c)) in nats over the test classes, |D| = the training k_shot.
* ``classification``: one-shot / few-shot accuracy of every estimator of ``vhe.evaluate.classify``
  named in ``evaluation.estimators`` (``classification_samples`` = K samples per score), as
  ``classification[<set>][<estimator>]`` for the sets ``validation_runs`` (within-alphabet runs of the
  background set's *validation* characters: where the headline estimator is chosen),
  ``lake_runs``, ``within_alphabet_runs`` (evaluation set) and ``episodes[<way>way_<shot>shot]``.
  Each entry: accuracy, ``ci95`` — the normal approximation over runs (episodes), mean ± 1.96
  sd / sqrt(n), when there are at least 10 (with some spread), else the Wilson interval over all
  trials — ``ci95_wilson`` (always Wilson over all trials), ``ci_method``, and ``per_trial`` (1/0 per
  query, runs in order, for paired tests between models on the same trials).

A quantity that the model's graph does not define (no class latent: VAE; a latent that a test
class does not determine, e.g. the factorial model's texture t) is null and its reason is in
``not_defined[<key>]``. So is an interval from fewer than 2 units (:mod:`analysis.stats`): with one
test class ``nll_stderr`` (and ``kl_c.std``) is null, with fewer than 2 trials ``ci95`` is null and
``ci95_reason`` says why. Output keys are listed in :data:`OUTPUT_KEYS`.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import vhe
from vhe.evaluate import EvaluationError, class_scores_many, eval_mode, kl_class, log_marginal
from vhe.files import json_ready, write_json
from vhe.loader import encode_labels
from experiments.artifacts import provenance, save_figure
from experiments.checkpoints import load_weights
from experiments.sections import Evaluation

from .timing import PhaseTimer
from .stats import Z95, mean_se, too_few_units, wilson_interval  # noqa: F401 (re-exported)

log = logging.getLogger("analysis.evaluate")

__all__ = [
    "evaluate",
    "main",
    "parse_args",
    "class_structure",
    "wilson_interval",
    "accuracy_summary",
    "samples_figure",
    "OUTPUT_KEYS",
    "EvaluationError",
    "SECTIONS",
    "Section",
    "Context",
    "run_section",
    "evaluation_settings",
]

#: per-element latents (one value per image); every other latent must be class-level
ELEMENT_LATENTS = ("z",)
#: why a metric can be non-finite (written as null and listed under ``non_finite``), by key prefix
NON_FINITE_REASONS = {
    "nll_estimate": "the importance-sampled log-likelihood is not finite: the checkpoint's weights or outputs "
    "are nan/inf (a diverged model)",
    "nll_stderr": "the log-likelihood is not finite (see nll_estimate)",
    "elbo": "the bound is not finite: a diverged model",
    "per_class": "a class's log-likelihood or bound is not finite: a diverged model",
    "bounds": "the bound is not finite: a diverged model",
    "kl_c": "KL(c) is not finite: the encoder's outputs are nan/inf (a diverged model)",
    "classification": "a classification score is not finite: a diverged model",
}
#: the latent shared by the images of one character
CLASS_LATENT = "c"
#: how each latent's groups are labelled in an OmniglotSet
LABEL_OF = {"a": "alphabet", "c": "character"}
FRAME_RGB = (0.55, 0.70, 0.90)
#: runs (episodes) needed before ``ci95`` uses the normal approximation over them instead of Wilson
MIN_UNITS_NORMAL = 10

#: top-level keys of the metrics JSON (values may be null where noted in the module docstring)
OUTPUT_KEYS = (
    "model",
    "experiment",
    "objective",
    "decoder",
    "run",
    "seed",
    "provenance",
    "checkpoint",
    "evaluation",
    "graph",
    "K",
    "n_classes",
    "images_per_class",
    "test_classes",
    "nll_estimate",
    "nll_stderr",
    "elbo",
    "per_class",
    "bounds",
    "kl_c",
    "classification",
    "not_defined",
    "figures",
    "eval_seconds",
)


# --------------------------------------------------------------------------- helpers
def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def ancestors(model: vhe.VHE, latent: str) -> set[str]:
    """Latents ``latent`` depends on (directly or not), excluding itself."""
    out, todo = set(), [latent]
    while todo:
        for p in model.parents_of[todo.pop()]:
            if p not in out:
                out.add(p)
                todo.append(p)
    return out


def class_structure(model: vhe.VHE) -> tuple[list[str], list[str]]:
    """(class-level latents, per-element latents) when a test *class* is one character.

    Class-level: the class latent c and its ancestors (e.g. the alphabet a of the hierarchical
    model), inferred from the character's images; per-element: z. Any other latent is shared by a
    group that a character does not determine (the factorial model's texture t), so log p(X) of a
    character's images is not defined: raises :class:`vhe.evaluate.EvaluationError`.
    """
    elem = [k for k in model.order if k in ELEMENT_LATENTS]
    allowed = ({CLASS_LATENT} | ancestors(model, CLASS_LATENT)) if CLASS_LATENT in model.order else set()
    other = [k for k in model.order if k not in allowed and k not in elem]
    if other:
        raise EvaluationError(
            f"not defined for this graph: latent(s) {other} are neither the class latent {CLASS_LATENT!r} (or its "
            f"ancestors) nor per-image ({list(ELEMENT_LATENTS)}); the images of one test character do not share "
            f"them, so per-character likelihoods, bounds and classification are not defined "
            f"(latents {model.order}; see analysis.structured)"
        )
    cls = [k for k in model.order if k in allowed]
    for k in cls:
        bad = model.parents_of[k] & set(elem)
        if bad:
            raise EvaluationError(
                f"not defined for this graph: class-level latent {k!r} depends on per-element latent(s) {sorted(bad)}"
            )
    return cls, elem


def _labels(dataset, latent: str) -> torch.Tensor:
    if latent in ELEMENT_LATENTS:
        return torch.arange(len(dataset))
    if latent in LABEL_OF:
        return getattr(dataset, LABEL_OF[latent])
    raise EvaluationError(f"not defined for this graph: no label for latent {latent!r} in an Omniglot set")


def accuracy_summary(units: list[dict], unit: str) -> dict:
    """Pool per-run (per-episode) results ``{"correct", "n_queries", ...}`` into accuracy and 95% intervals."""
    correct = sum(u["correct"] for u in units)
    n = sum(u["n_queries"] for u in units)
    accs = np.array([u["correct"] / u["n_queries"] for u in units], dtype=np.float64)
    wilson = wilson_interval(correct, n)
    out = {
        "accuracy": correct / n if n else None,
        "n_trials": n,
        "correct": correct,
        f"n_{unit}s": len(units),
        "ci95_wilson": wilson,
    }
    sd = float(accs.std(ddof=1)) if len(units) >= 2 else 0.0
    if len(units) >= MIN_UNITS_NORMAL and sd > 0:
        half = Z95 * sd / math.sqrt(len(units))
        m = float(accs.mean())
        out.update(
            ci95=[max(0.0, m - half), min(1.0, m + half)],
            ci95_halfwidth=half,
            std_over_units=sd,
            ci_method=f"normal approximation over {unit}s: mean ± 1.96 sd/sqrt({len(units)})",
        )
    else:
        out.update(ci95=wilson, ci_method=f"Wilson score interval over all {n} trials")
    if wilson is None:  # analysis.stats: no interval from fewer than 2 trials
        out.update(ci95_reason=too_few_units(n, "trial"))
    return out


def _seed(seed: int, offset: int = 0) -> None:
    torch.manual_seed(int(seed) + offset)


# --------------------------------------------------------------------------- data
def stratified_classes(eval_set, max_classes: int | None) -> list[int]:
    """Class ids of the test classes: all of them, or ``max_classes`` drawn from every alphabet in
    turn (the first character of each alphabet, then the second, ...), so that a subset spreads
    over the whole evaluation set. Depends only on the set: the same classes for every model."""
    n_all = eval_set.n_classes
    if max_classes is None or int(max_classes) >= n_all:
        return list(range(n_all))
    first = torch.full((n_all,), -1, dtype=torch.long)
    for i in range(len(eval_set.character) - 1, -1, -1):  # each class's alphabet, from its images
        first[int(eval_set.character[i])] = int(eval_set.alphabet[i])
    by_alphabet: dict[int, list[int]] = {}
    for c in range(n_all):
        by_alphabet.setdefault(int(first[c]), []).append(c)
    queues = [by_alphabet[a] for a in sorted(by_alphabet)]
    picked, rank = [], 0
    while len(picked) < int(max_classes):
        for q in queues:
            if rank < len(q) and len(picked) < int(max_classes):
                picked.append(q[rank])
        rank += 1
    return sorted(picked)


def test_classes(eval_set, max_classes: int | None):
    """(X uint8 (B, N, 1, H, W), image indices (B, N), class names) of the test classes
    (:func:`stratified_classes`), each with its first N drawings, N = the smallest class size among them."""
    classes = stratified_classes(eval_set, max_classes)
    counts = eval_set.class_counts()[classes] if classes else torch.zeros(0)
    if not classes or int(counts.min()) == 0:
        raise ValueError(f"the evaluation set has no usable test classes (counts {counts.tolist()})")
    N = int(counts.min())
    idx = []
    for c in classes:
        members = (eval_set.character == c).nonzero().flatten()
        members = members[torch.argsort(eval_set.drawer[members], stable=True)]
        idx.append(members[:N])
    idx = torch.stack(idx)
    return eval_set.images[idx], idx, [eval_set.character_names[c] for c in classes]


# --------------------------------------------------------------------------- measurements (the sections' work)
def likelihood(model, X, K, elem, max_elements, class_chunk=16):
    """-log p̂(X)/N and -ELBO/N per class (nats per image)."""
    N = X.shape[1]
    est, elbo = [], []
    for b0 in tqdm(range(0, len(X), class_chunk), desc=f"log p(X), K={K}", disable=None):
        e, l = log_marginal(
            model, X[b0 : b0 + class_chunk], n_samples=K, per_element=elem, max_elements=max_elements, return_elbo=True
        )
        est.append(e.cpu())
        elbo.append(l.cpu())
    nll = -(torch.cat(est).double()) / N
    nelbo = -(torch.cat(elbo).double()) / N
    return nll, nelbo


def bound(model, objective, dataset, targets, k_shot, resample, batch_size, seed, device, desc):
    """Minus the training objective per target image (one episode per target), and its KLs."""
    labels = {k: _labels(dataset, k) for k in k_shot}
    capped = {}
    for k, lab in labels.items():
        counts = torch.bincount(torch.as_tensor(encode_labels(lab)))
        capped[k] = max(1, min(int(k_shot[k]), int(counts.min())))
    loader = vhe.DataLoader(
        dataset.images,
        labels=labels,
        k_shot=capped,
        batch_size=batch_size,
        resample=resample,
        shuffle=False,
        seed=seed,
        device=device,
        dtype=torch.float32,
    )
    total, n, kl_tot = 0.0, 0, {}
    targets = torch.as_tensor(targets, dtype=torch.long).flatten()
    with eval_mode(model):
        for chunk in tqdm(targets.split(batch_size), desc=desc, disable=None):
            b = loader.episode(chunk.to(loader.device))
            value, kl = model.score(
                b.inputs, b.sizes, x=b.target, rescale=objective.rescale, reduction="sum", return_kl=True
            )
            total += float(value)
            for k, v in kl.items():
                kl_tot[k] = kl_tot.get(k, 0.0) + float(v)
            n += len(chunk)
    return {
        "value": -total / n,
        "n_images": n,
        "n_classes": int(dataset.character[targets].unique().numel()),
        "k_shot": capped,
        "resample": dict(resample),
        "rescale": bool(objective.rescale),
        "kl_per_image": {k: v / n for k, v in kl_tot.items()},
    }


def kl_c_section(model, X, k, n_samples, elem, seed, class_chunk=32):
    B, N = X.shape[:2]
    k = max(1, min(int(k), N))
    g = torch.Generator().manual_seed(int(seed))
    pick = torch.rand(B, N, generator=g).argsort(dim=1)[:, :k].to(X.device)
    D = X[torch.arange(B, device=X.device)[:, None], pick]
    kls = []
    for b0 in tqdm(range(0, B, class_chunk), desc="KL(c)", disable=None):
        kls.append(
            kl_class(model, D[b0 : b0 + class_chunk], latent=CLASS_LATENT, n_samples=n_samples, per_element=elem)
            .double()
            .cpu()
        )
    kls = torch.cat(kls)
    return {
        "mean": float(kls.mean()),
        "std": float(kls.std()) if B > 1 else None,
        "k_shot": k,
        "n_classes": B,
        "n_samples": n_samples,
        "per_class": kls.tolist(),
    }


def classify_runs(model, runs, n_samples, elem, device, max_elements, desc, methods=("conditional",)):
    """Accuracy of every estimator in ``methods`` on one-shot runs, from shared draws
    (vhe.evaluate.class_scores_many): {method: accuracy_summary + per-run results + per_trial}."""
    acc = {m: {"units": [], "per_trial": [], "non_finite": 0} for m in methods}
    for r in tqdm(runs, desc=f"{desc} ({', '.join(methods)})", disable=None):
        support = r.support.to(device=device, dtype=torch.float32).unsqueeze(1)  # (W, 1, C, H, W)
        query = r.query.to(device=device, dtype=torch.float32)
        scores = class_scores_many(
            model, support, query, methods, n_samples=n_samples, per_element=elem, max_elements=max_elements
        )
        for method, sc in scores.items():
            a = acc[method]
            a["non_finite"] += _non_finite_trials(sc)
            hits = (sc.argmax(dim=1).cpu() == torch.as_tensor(r.answer).cpu()).long()
            correct = int(hits.sum())
            a["per_trial"] += hits.tolist()
            a["units"].append(
                {
                    "name": r.name,
                    "n_way": r.n_way,
                    "n_queries": int(len(query)),
                    "correct": correct,
                    "accuracy": correct / len(query),
                }
            )
    out = {}
    for method, a in acc.items():
        o = accuracy_summary(a["units"], "run")
        o.update(
            n_way=sorted({u["n_way"] for u in a["units"]}),
            shot=1,
            method=method,
            n_samples=n_samples,
            runs=a["units"],
            per_trial=a["per_trial"],
        )
        out[method] = _mark_non_finite(o, a["non_finite"])
    return out


def _non_finite_trials(scores: torch.Tensor) -> int:
    """Trials (rows of a (Q, W) score matrix) with a non-finite score."""
    return int((~torch.isfinite(scores.reshape(len(scores), -1))).any(dim=1).sum())


def _mark_non_finite(out: dict, n: int) -> dict:
    """A summary whose trials had non-finite scores (a diverged model) gets NaN accuracy and
    intervals (written as null, with the reason, by vhe.files.write_json) and ``non_finite_trials``."""
    if n:
        nan = float("nan")
        out.update(accuracy=nan, ci95=[nan, nan], ci95_wilson=[nan, nan], non_finite_trials=n)
    return out


def classify_episodes(
    model, dataset, way, shot, n_episodes, n_samples, elem, seed, device, max_elements, methods=("conditional",)
):
    """N-way K-shot episodes: ``way`` distinct characters, ``shot`` support + 1 query drawings each
    (they depend only on ``seed``), every estimator of ``methods`` scored from shared draws:
    {method: accuracy_summary + per_trial}."""
    counts = dataset.class_counts()
    eligible = (counts >= shot + 1).nonzero().flatten()
    if len(eligible) < way:
        skipped = {
            "accuracy": None,
            "way": way,
            "shot": shot,
            "skipped": f"{way}-way {shot}-shot needs {way} characters with >= {shot + 1} drawings; the "
            f"evaluation set has {len(eligible)}",
        }
        return {m: dict(skipped) for m in methods}
    members = {int(c): (dataset.character == c).nonzero().flatten() for c in eligible.tolist()}
    g = torch.Generator().manual_seed(int(seed))
    acc = {m: {"units": [], "per_trial": [], "non_finite": 0} for m in methods}
    for _ in tqdm(range(n_episodes), desc=f"{way}-way {shot}-shot ({', '.join(methods)})", disable=None):
        chars = eligible[torch.randperm(len(eligible), generator=g)[:way]]
        sup, qry = [], []
        for c in chars.tolist():
            m = members[c]
            pick = m[torch.randperm(len(m), generator=g)[: shot + 1]]
            sup.append(dataset.images[pick[:shot]])
            qry.append(dataset.images[pick[shot]])
        support = torch.stack(sup).to(device=device, dtype=torch.float32)
        query = torch.stack(qry).to(device=device, dtype=torch.float32)
        scores = class_scores_many(
            model, support, query, methods, n_samples=n_samples, per_element=elem, max_elements=max_elements
        )
        for method, sc in scores.items():
            a = acc[method]
            a["non_finite"] += _non_finite_trials(sc)
            hits = (sc.argmax(dim=1).cpu() == torch.arange(way)).long()
            a["per_trial"] += hits.tolist()
            a["units"].append({"n_queries": way, "correct": int(hits.sum())})
    out = {}
    for method, a in acc.items():
        o = accuracy_summary(a["units"], "episode")
        o.update(
            way=way, shot=shot, queries_per_episode=way, method=method, n_samples=n_samples, per_trial=a["per_trial"]
        )
        out[method] = _mark_non_finite(o, a["non_finite"])
    return out


def validation_runs(cfg, n_runs: int, n_way: int, seed: int):
    """Within-alphabet runs from the background set's validation characters (never seen in training)."""
    from experiments import datasets
    from vhe.data.runs import within_alphabet_runs

    val_set = datasets.train_val_sets(cfg)[1]
    return within_alphabet_runs(val_set, n_runs=n_runs, n_way=n_way, seed=seed)


# --------------------------------------------------------------------------- figure
def _decoded(model, values, use_probs):
    """Pixel probabilities (when the decoder has ``probs``) or the sampled images."""
    dec = model.decoder
    if use_probs:
        parents = model.parents(model.observed)
        with eval_mode(model):
            return dec.probs(*[values[p] for p in parents])
    return None


def _to_display(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1], ink = 1 -> (H, W) or (H, W, 3) with ink dark on white paper."""
    a = 1.0 - img.detach().float().clamp(0, 1).cpu().numpy()
    if a.shape[0] == 1:
        return a[0]
    if a.shape[0] == 3:
        return np.transpose(a, (1, 2, 0))
    return a.mean(axis=0)


def samples_figure(
    model, name, path_png, eval_set=None, cls_latents=(), n_rows=8, n_samples=8, seed=0, note: str | None = None
) -> list[str]:
    """1-shot conditional samples (first column: the support image) or, without class latents,
    unconditional samples; pixel probabilities when the decoder has ``probs``. Writes PNG and PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _seed(seed, 7)
    use_probs = callable(getattr(model.decoder, "probs", None))
    device = next(model.parameters()).device
    conditional = bool(cls_latents) and eval_set is not None
    supports = []
    if conditional:
        C = eval_set.n_classes
        chars = sorted(set(np.linspace(0, C - 1, min(n_rows, C)).round().astype(int).tolist()))
        for c in chars:
            i = int((eval_set.character == c).nonzero().flatten()[0])
            supports.append(eval_set.images[i].to(device=device, dtype=torch.float32))
        n_rows = len(supports)
        # one call for every row (autoregressive decoders sample all rows in one pass)
        D = torch.stack(supports).repeat_interleave(n_samples, dim=0)[:, None]  # (R*S, 1, C, H, W)
        x, values = model.sample(inputs={k: D for k in cls_latents}, return_latents=True)
    else:
        x, values = model.sample(batch_size=n_rows * n_samples, return_latents=True)
    p = _decoded(model, values, use_probs)
    shown = (p if p is not None else x).view(n_rows, n_samples, *x.shape[1:])
    rows = list(shown)
    first = _to_display(rows[0][0])
    H, W = first.shape[:2]
    pad, gap = 1, 4
    ncol = n_samples + (1 if conditional else 0)
    width = ncol * (W + pad) + pad + (gap if conditional else 0)
    height = len(rows) * (H + pad) + pad
    canvas = np.empty((height, width, 3), dtype=np.float32)
    canvas[:] = FRAME_RGB  # a frame colour that neither paper (white) nor grey probabilities match
    for r, row in enumerate(rows):
        y = pad + r * (H + pad)
        items = ([supports[r]] if conditional else []) + list(row)
        for j, img in enumerate(items):
            x0 = pad + j * (W + pad) + (gap if conditional and j >= 1 else 0)
            a = _to_display(img)
            canvas[y : y + H, x0 : x0 + W] = a[..., None] if a.ndim == 2 else a
    what = "pixel probabilities" if use_probs else "Bernoulli samples"
    if conditional:
        title = f"{name}: 1-shot conditional samples ({what})\nfirst column: the support image (test character)"
    else:
        title = f"{name}: unconditional samples ({what})"
    if note:
        title += f"\n{note}"
    fig_w = max(4.0, width / 28 * 0.8)
    fig, ax = plt.subplots(figsize=(fig_w, fig_w * height / width + 0.9))
    ax.imshow(canvas.clip(0, 1), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    return save_figure(fig, path_png)


def placeholder_figure(path_png, text: str) -> list[str]:
    """A figure that says why there is nothing to show (PNG + PDF at ``path_png``)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2))
    ax.set_axis_off()
    ax.text(0.5, 0.5, textwrap.fill(text, 70), ha="center", va="center", fontsize=8, transform=ax.transAxes)
    return save_figure(fig, path_png)


# --------------------------------------------------------------------------- the sections of evaluate()
@dataclass
class Context:
    """What every section of :func:`evaluate` reads: the model (``exp``: model, objective and
    training loader), the config and its evaluation settings for the model's decoder, the device,
    seed and timer, and, once loaded, the test classes. ``not_defined`` is the result's dict of the
    same name: a section records there a part it could not compute (the loop records the rest)."""

    cfg: dict
    exp: object  # experiments.common.Experiment
    ev: Evaluation
    device: torch.device
    seed: int
    timer: PhaseTimer
    checkpoint: dict  # path, step, val_bound, version
    max_elements: int
    batch_size: int
    figures: str | Path | None
    not_defined: dict = field(default_factory=dict)
    cls: list = field(default_factory=list)  # class-level latents (class_structure)
    elem: list = field(default_factory=lambda: list(ELEMENT_LATENTS))  # per-image latents
    structure_error: str | None = None  # why per-character metrics are not defined for this graph
    diverged: str | None = None  # why the checkpoint cannot be evaluated (non-finite weights)
    eval_set: object = None  # the evaluation split (an OmniglotSet)
    X: torch.Tensor | None = None  # its test classes' images, (B, N, C, H, W) float on the device
    idx: torch.Tensor | None = None  # their indices into eval_set, (B, N)

    @property
    def model(self) -> vhe.VHE:
        return self.exp.model

    @property
    def name(self) -> str | None:
        return self.cfg["model"].get("name")

    @property
    def unusable(self) -> str | None:
        """Why no metric can be computed (a diverged checkpoint, or a graph without test classes)."""
        return self.diverged or self.structure_error


def run_likelihood(ctx: Context) -> dict:
    """-log p̂(X)/|X| and -ELBO/|X| per test class (K = evaluation.n_samples), their mean and SE."""
    nll, nelbo = likelihood(ctx.model, ctx.X, int(ctx.ev.n_samples), ctx.elem, ctx.max_elements)
    n_classes = ctx.X.shape[0]
    if too_few_units(n_classes, "test class"):  # analysis.stats: no standard error from one class
        ctx.not_defined["nll_stderr"] = too_few_units(n_classes, "test class")
    return {
        "nll_estimate": float(nll.mean()),
        "elbo": float(nelbo.mean()),
        "nll_stderr": mean_se(nll)[1],
        "per_class": {"nll": nll.tolist(), "elbo": nelbo.tolist()},
    }


def run_bounds(ctx: Context) -> dict:
    """The training objective's bound on the test classes and on as many training classes."""
    from experiments import datasets

    tl = ctx.exp.train_loader
    k_shot, resample = dict(tl.k_shot), dict(tl.resample)
    bs = max(1, int(ctx.batch_size))
    objective, seed = ctx.exp.objective, ctx.seed
    test_b = bound(
        ctx.model, objective, ctx.eval_set, ctx.idx.flatten(), k_shot, resample, bs, seed + 2, ctx.device, "test bound"
    )
    train_set = datasets.train_val_sets(ctx.cfg)[0]
    n_train = min(ctx.X.shape[0], train_set.n_classes)
    train_targets = (train_set.character < n_train).nonzero().flatten()
    train_b = bound(
        ctx.model, objective, train_set, train_targets, k_shot, resample, bs, seed + 3, ctx.device, "train bound"
    )
    return {
        "bounds": {
            "test": test_b,
            "train": train_b,
            "definition": "minus model.score (the training objective, kl_factor 1, the objective's "
            "rescale, sizes = class sizes) per target image; support sets drawn like "
            "training episodes",
        }
    }


def run_kl_c(ctx: Context) -> dict:
    """KL(q(c | D) || p(c)) over the test classes, |D| = the training k_shot."""
    k = ctx.exp.train_loader.k_shot.get(CLASS_LATENT, ctx.cfg["model"]["train"]["k_shot"])
    return {"kl_c": kl_c_section(ctx.model, ctx.X, k, n_samples=100, elem=ctx.elem, seed=ctx.seed + 3)}


def run_classification(ctx: Context) -> dict:
    """Every estimator of evaluation.estimators on the same trials: each run set, then the episodes
    (each times itself: eval_seconds has one key per run set and ``episodes``)."""
    methods, ns = list(ctx.ev.estimators), int(ctx.ev.classification_samples)
    out = {"estimators": methods, "n_samples": ns}
    for key, runs in run_sets(ctx).items():
        with ctx.timer(key):
            _seed(ctx.seed, 4)
            out[key] = classify_runs(
                ctx.model, runs, ns, ctx.elem, ctx.device, ctx.max_elements, key.replace("_", " "), methods=methods
            )
    with ctx.timer("episodes"):
        out["episodes"] = episodes(ctx, methods, ns)
    return {"classification": out}


def run_sets(ctx: Context) -> dict:
    """The one-shot run sets asked for, by key: validation_runs, lake_runs, within_alphabet_runs.
    Validation runs that cannot be drawn are left out, the reason under not_defined."""
    from experiments import datasets

    ev, sets = ctx.ev, {}
    vr = ev.validation_runs
    if vr["n_runs"] > 0:
        try:
            sets["validation_runs"] = validation_runs(ctx.cfg, vr["n_runs"], vr["n_way"], ctx.seed + 6)
        except ValueError as e:  # e.g. no validation alphabet has n_way characters
            ctx.not_defined["classification.validation_runs"] = str(e)
    if ev.lake_runs:
        sets["lake_runs"] = datasets.load_split(ctx.cfg, "lake_runs")[: ev.max_runs or None]
    n_within = int(ev.within_alphabet_runs)
    if n_within > 0:
        sets["within_alphabet_runs"] = datasets.load_split(ctx.cfg, "within_alphabet_runs")[:n_within]
    return sets


def episodes(ctx: Context, methods: list, n_samples: int) -> dict:
    """N-way K-shot episodes of the evaluation set for every (way, shot), each seeded by itself."""
    eps, out = ctx.ev.episodes, {}
    for way, shot in itertools.product(eps["ways"], eps["shots"]):
        ep_seed = ctx.seed + 1000 * int(way) + int(shot)
        _seed(ep_seed)
        out[f"{way}way_{shot}shot"] = classify_episodes(
            ctx.model,
            ctx.eval_set,
            int(way),
            int(shot),
            int(eps["n_episodes"]),
            n_samples,
            ctx.elem,
            ep_seed,
            ctx.device,
            ctx.max_elements,
            methods=methods,
        )
    return out


def run_samples_figure(ctx: Context) -> dict:
    """samples_<model>.png/.pdf (:func:`samples_figure`); for a diverged model, a figure saying why."""
    png = Path(ctx.figures) / f"samples_{ctx.name}.png"
    if ctx.diverged:
        return {"figures": {"samples": placeholder_figure(png, f"{ctx.name}: no samples: {ctx.diverged}")}}
    note = (
        "(class-conditional sampling from a test character is not defined for this graph)"
        if ctx.structure_error
        else None
    )
    return {
        "figures": {
            "samples": samples_figure(
                ctx.model, ctx.name, png, eval_set=ctx.eval_set, cls_latents=ctx.cls, seed=ctx.seed, note=note
            )
        }
    }


def _no_class_latent(ctx: Context) -> str | None:
    if CLASS_LATENT not in ctx.model.order:
        return f"the model has no class latent {CLASS_LATENT!r} (latents {ctx.model.order})"
    return None


def _no_class_level_latent(ctx: Context) -> str | None:
    if not ctx.cls:
        return (
            f"classification needs a class-level latent shared by the support set and the query; this "
            f"model's latents {ctx.model.order} are all per-image"
        )
    return None


def _no_figures_folder(ctx: Context) -> str | None:
    return "no figures folder" if ctx.figures is None else None


@dataclass(frozen=True)
class Section:
    """One part of :func:`evaluate`: ``run(ctx)`` returns its entries of the metrics dict, or raises
    :class:`EvaluationError` when the model's graph does not define them.

    ``keys``: the metrics it fills; on EvaluationError (or when the model is unusable, or
    ``undefined(ctx)`` gives a reason) they stay null and the reason goes under ``not_defined``
    (a section without keys lets the error through). ``seed_offset``: ``_seed(seed, offset)``
    before it runs (None: it seeds itself). ``timed``: its time is eval_seconds[name] (False: it
    times its parts itself). ``needs_data``: skipped when the model is unusable."""

    name: str
    run: Callable[[Context], dict]
    keys: tuple[str, ...] = ()
    seed_offset: int | None = None
    timed: bool = True
    needs_data: bool = True
    undefined: Callable[[Context], str | None] = lambda ctx: None


#: the sections of :func:`evaluate`, in the order they run (the seeds make each independent of the others)
SECTIONS = (
    Section("likelihood", run_likelihood, keys=("nll_estimate", "elbo"), seed_offset=1),
    Section("bounds", run_bounds, keys=("bounds",), seed_offset=2),
    Section("kl_c", run_kl_c, keys=("kl_c",), seed_offset=3, undefined=_no_class_latent),
    Section(
        "classification", run_classification, keys=("classification",), timed=False, undefined=_no_class_level_latent
    ),
    Section("samples_figure", run_samples_figure, needs_data=False, undefined=_no_figures_folder),
)


def run_section(section: Section, ctx: Context, res: dict) -> None:
    """Run one section into ``res``: its seed, its timer, and its gaps recorded under not_defined."""
    why = ctx.unusable if section.needs_data else None
    if why is None and section.seed_offset is not None:
        _seed(ctx.seed, section.seed_offset)
    why = why or section.undefined(ctx)
    if why:
        ctx.not_defined.update(dict.fromkeys(section.keys, why))
        return
    catch = EvaluationError if section.keys else ()  # a section without keys has nowhere to record it
    with ctx.timer(section.name) if section.timed else nullcontext():
        try:
            res.update(section.run(ctx))
        except catch as e:
            ctx.not_defined.update(dict.fromkeys(section.keys, str(e)))


# --------------------------------------------------------------------------- main routine
def evaluation_settings(evaluation: dict, decoder: str | None) -> Evaluation:
    """The typed settings of a model with ``decoder``: ``evaluation`` with its per-decoder overrides
    applied (:func:`experiments.config.evaluation_for`); ``per_decoder`` is kept as given, so the
    metrics JSON records the section."""
    from experiments.config import evaluation_for

    resolved = evaluation_for(evaluation, decoder)
    if "per_decoder" in evaluation:
        resolved["per_decoder"] = evaluation["per_decoder"]
    return Evaluation.of(resolved)


def setup(cfg, checkpoint, device, max_elements, batch_size, figures, timer: PhaseTimer) -> Context:
    """Load the config, build the model, read its weights (seeded with evaluation.seed)."""
    from experiments.common import resolve_device
    from experiments.config import load_config
    from experiments.registry import build_experiment

    cfg = load_config(cfg)
    m = cfg["model"]
    ev = evaluation_settings(cfg["evaluation"], m.get("decoder"))
    device = resolve_device(device if device is not None else cfg.get("device", "auto"))
    seed = int(ev.seed)
    threads = (m.get("train") or {}).get("num_threads")
    if threads and device.type == "cpu":
        torch.set_num_threads(int(threads))
    _seed(seed)
    exp = build_experiment(cfg, device)
    ckpt = load_weights(exp.model, checkpoint, device)  # the one checkpoint loader (weights_only=True)
    ckpt_info = {"path": str(checkpoint), **{k: ckpt[k] for k in ("step", "val_bound", "version") if k in ckpt}}
    return Context(
        cfg=cfg,
        exp=exp,
        ev=ev,
        device=device,
        seed=seed,
        timer=timer,
        checkpoint=ckpt_info,
        max_elements=int(max_elements if max_elements is not None else ev.max_elements),
        batch_size=batch_size,
        figures=figures,
    )


def header(ctx: Context) -> dict:
    """The metrics dict before any section ran: what was evaluated, how; every metric null."""
    m = ctx.cfg["model"]
    return {
        "model": m.get("name"),
        "experiment": m.get("experiment"),
        "objective": m.get("objective"),
        "decoder": m.get("decoder"),
        "run": ctx.cfg.get("run"),
        "seed": ctx.cfg.get("seed"),
        "provenance": provenance(ctx.cfg, ctx.device, ctx.seed),
        "checkpoint": ctx.checkpoint,
        "evaluation": {
            **ctx.ev.to_dict(),
            "device": str(ctx.device),
            "max_elements": ctx.max_elements,
            "batch_size": ctx.batch_size,
        },
        "graph": {"latents": list(ctx.model.order)},
        "K": int(ctx.ev.n_samples),
        "n_classes": None,
        "images_per_class": None,
        "test_classes": None,
        "nll_estimate": None,
        "nll_stderr": None,
        "elbo": None,
        "per_class": None,
        "bounds": None,
        "kl_c": None,
        "classification": None,
        "not_defined": ctx.not_defined,
        "figures": {},
    }


def check_model(ctx: Context, res: dict) -> None:
    """The model's class structure (ctx.cls, ctx.elem) and whether its weights are finite: a graph
    without test classes (ctx.structure_error) or a diverged checkpoint (ctx.diverged) is unusable."""
    try:
        ctx.cls, ctx.elem = class_structure(ctx.model)
    except EvaluationError as e:
        ctx.structure_error = str(e)
    res["graph"].update(class_latents=ctx.cls, element_latents=ctx.elem)
    if all(bool(torch.isfinite(p).all()) for p in ctx.model.parameters()):
        return
    ctx.diverged = (
        f"the checkpoint's weights are not finite (a diverged model, step {ctx.checkpoint.get('step')}): "
        f"nothing to evaluate; retrain with a lower train.lr or a tighter train.grad_clip"
    )
    log.error("%s: %s", ctx.name, ctx.diverged)
    res["diverged"] = ctx.diverged


def load_test_classes(ctx: Context) -> dict:
    """The evaluation split and its test classes (ctx.eval_set, ctx.X, ctx.idx); their counts and names."""
    from experiments import datasets

    ctx.eval_set = datasets.load_split(ctx.cfg, "evaluation")
    Xu, ctx.idx, names = test_classes(ctx.eval_set, ctx.ev.max_classes)
    ctx.X = Xu.to(device=ctx.device, dtype=torch.float32)
    B, N = ctx.X.shape[:2]
    return {"n_classes": B, "images_per_class": N, "test_classes": names}


def evaluate(
    cfg,
    checkpoint,
    out,
    figures=None,
    device=None,
    max_elements: int | None = None,
    batch_size: int = 128,
    progress: bool | None = None,
) -> dict:
    """Evaluate the model of ``cfg`` (a per-model config: path or dict) with ``checkpoint``; write ``out``.

    ``cfg["evaluation"]`` holds the options (override them before calling). Runs :data:`SECTIONS`
    in order (:func:`run_section`); returns the metrics dict.
    """
    timer = PhaseTimer()
    t_start = time.perf_counter()
    with timer("setup"):
        ctx = setup(cfg, checkpoint, device, max_elements, batch_size, figures, timer)
    res = header(ctx)
    check_model(ctx, res)
    if not ctx.unusable:
        with timer("data"):
            res.update(load_test_classes(ctx))
    for section in SECTIONS:
        run_section(section, ctx, res)
    timer.seconds["total"] = round(time.perf_counter() - t_start, 3)
    res["eval_seconds"] = dict(timer.seconds)
    if out is not None:
        bad = write_json(res, out, reasons=NON_FINITE_REASONS)
        if bad:
            log.warning("non-finite values written as null (listed under non_finite): %s", ", ".join(bad))
    clean = json_ready(res)
    _log_wandb(ctx.cfg, ctx.cfg["model"], clean, checkpoint)
    return clean


def _log_wandb(cfg, m, res: dict, checkpoint) -> None:
    """The evaluation as the model's W&B eval run, in its training run's group
    (experiments.tracking.log_evaluation; nothing when disabled)."""
    from experiments import tracking

    if not tracking.enabled(cfg):
        return
    from .metric_rows import evaluate_rows

    info = {k: m.get(k) for k in ("experiment", "objective", "decoder")}
    rows = evaluate_rows(m.get("name"), info, res, "evaluation")
    images = {"eval/samples": p for p in (res.get("figures") or {}).get("samples") or [] if str(p).endswith(".png")}
    tracking.log_evaluation(cfg, m.get("name"), checkpoint, rows, images)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m analysis.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="per-model config JSON (results/<run>/configs/<model>.json)")
    p.add_argument(
        "--evaluation",
        default=None,
        help="JSON/YAML with the evaluation section (replaces the config's; the pipeline's configs/evaluation.json)",
    )
    p.add_argument("--checkpoint", required=True, help="trainer checkpoint (best.pt)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--figures", default=None, help="folder for samples_<model>.png/.pdf (omit: no figure)")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (default: the config's device)")
    p.add_argument(
        "--runtime",
        default=None,
        metavar="JSON",
        help='run settings {"device": ..., "wandb": {...}} applied over the config (the pipeline passes '
        "them here, not in the config file)",
    )
    g = p.add_argument_group("overrides of cfg['evaluation']")
    g.add_argument("--n-samples", type=_positive_int, help="K, importance samples for log p(X)")
    g.add_argument("--max-classes", type=_positive_int, help="test classes for likelihoods, bounds and KL(c)")
    g.add_argument("--classification-samples", type=_positive_int, help="importance samples per log p(x | D)")
    g.add_argument(
        "--lake-runs", action=argparse.BooleanOptionalAction, default=None, help="evaluate Lake's 20 one-shot runs"
    )
    g.add_argument("--max-runs", type=_positive_int, help="use only the first N of Lake's runs")
    g.add_argument("--within-alphabet-runs", type=_nonneg_int, help="within-alphabet runs to use (0: none)")
    g.add_argument("--n-episodes", type=_positive_int, help="episodes per (way, shot)")
    g.add_argument("--ways", type=_positive_int, nargs="+", help="episode ways, e.g. 5 20")
    g.add_argument("--shots", type=_positive_int, nargs="+", help="episode shots, e.g. 1 5")
    g.add_argument("--seed", type=int, help="evaluation seed")
    p.add_argument(
        "--max-elements",
        type=_positive_int,
        default=None,
        help="images decoded at once by the importance samplers (default: evaluation.max_elements)",
    )
    p.add_argument("--batch-size", type=_positive_int, default=128, help="targets per batch for the bounds")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def apply_overrides(cfg: dict, args) -> dict:
    ev = cfg.setdefault("evaluation", {})
    for opt, key in (
        ("n_samples", "n_samples"),
        ("max_classes", "max_classes"),
        ("classification_samples", "classification_samples"),
        ("lake_runs", "lake_runs"),
        ("max_runs", "max_runs"),
        ("within_alphabet_runs", "within_alphabet_runs"),
        ("seed", "seed"),
    ):
        v = getattr(args, opt, None)
        if v is not None:
            ev[key] = v
            for per in (ev.get("per_decoder") or {}).values():  # the command line wins over per_decoder
                if key in per:
                    per[key] = None
    eps = ev.setdefault("episodes", {})
    for opt, key in (("n_episodes", "n_episodes"), ("ways", "ways"), ("shots", "shots")):
        v = getattr(args, opt, None)
        if v is not None:
            eps[key] = v
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    from experiments.config import ConfigError, load_config, with_runtime

    try:
        cfg = with_runtime(load_config(args.config, evaluation=args.evaluation), args.runtime)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = apply_overrides(cfg, args)
    res = evaluate(
        cfg,
        args.checkpoint,
        args.out,
        figures=args.figures,
        device=args.device,
        max_elements=args.max_elements,
        batch_size=args.batch_size,
    )

    def fmt(v, spec=".2f"):
        return "n/a" if v is None else format(v, spec)

    lines = [
        f"{res['model']}: -log p(X)/|X| = {fmt(res['nll_estimate'])} nats (K={res['K']}, "
        f"{res['n_classes']} classes x {res['images_per_class']}), -ELBO = {fmt(res['elbo'])}, "
        f"test bound = {fmt((res['bounds'] or {}).get('test', {}).get('value'))}, "
        f"train bound = {fmt((res['bounds'] or {}).get('train', {}).get('value'))}"
    ]
    if res.get("kl_c"):
        lines.append(f"  KL(c) = {fmt(res['kl_c']['mean'])} ± {fmt(res['kl_c']['std'])} nats")
    cl = res.get("classification") or {}
    for key in ("validation_runs", "lake_runs", "within_alphabet_runs"):
        for method, v in (cl.get(key) or {}).items():
            lines.append(f"  {key} [{method}]: {fmt(100 * v['accuracy'], '.1f')}% ({v['ci_method']})")
    for key, by_method in (cl.get("episodes") or {}).items():
        for method, v in by_method.items():
            if v.get("accuracy") is not None:
                lines.append(f"  {key} [{method}]: {fmt(100 * v['accuracy'], '.1f')}%")
    for key, why in res["not_defined"].items():
        lines.append(f"  {key}: not defined ({why})")
    lines.append(f"  wrote {args.out} in {res['eval_seconds']['total']:.1f} s")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
