"""Evaluate one trained model: test likelihood, bounds, KL(c), one-shot classification, samples.

    python -m analysis.evaluate --config results/<run>/configs/<model>.json \
        --checkpoint results/<run>/checkpoints/<model>/best.pt \
        --out results/<run>/metrics/<model>.json --figures results/<run>/figures \
        [--n-samples K] [--max-classes M] [--device cpu] [...]

Options given on the command line override ``cfg["evaluation"]``. The model is rebuilt with
``experiments.registry.build_experiment(cfg, device)`` and its weights are read from the trainer's
checkpoint (``{"model": state_dict, "step", ...}``). Every estimator is the library's
(:mod:`vhe.evaluate`); this module only chooses the data, aggregates and records.

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
``not_defined[<key>]``. Output keys are listed in :data:`OUTPUT_KEYS`.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import vhe
from vhe.evaluate import EvaluationError, classify, eval_mode, kl_class, log_marginal
from vhe.files import json_ready, write_json
from vhe.loader import encode_labels
from experiments.artifacts import provenance, save_figure
from experiments.checkpoints import load_weights
from experiments.sections import Evaluation

log = logging.getLogger("analysis.evaluate")

__all__ = ["evaluate", "main", "parse_args", "class_structure", "wilson_interval", "accuracy_summary",
           "samples_figure", "OUTPUT_KEYS", "EvaluationError"]

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
Z95 = 1.959963984540054
FRAME_RGB = (0.55, 0.70, 0.90)
#: runs (episodes) needed before ``ci95`` uses the normal approximation over them instead of Wilson
MIN_UNITS_NORMAL = 10

#: top-level keys of the metrics JSON (values may be null where noted in the module docstring)
OUTPUT_KEYS = (
    "model", "experiment", "objective", "decoder", "run", "seed", "provenance", "checkpoint", "evaluation",
    "graph", "K", "n_classes", "images_per_class", "test_classes", "nll_estimate", "nll_stderr", "elbo",
    "per_class", "bounds", "kl_c", "classification",
    "not_defined", "figures", "eval_seconds",
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
            f"(latents {model.order}; see analysis.structured)")
    cls = [k for k in model.order if k in allowed]
    for k in cls:
        bad = model.parents_of[k] & set(elem)
        if bad:
            raise EvaluationError(f"not defined for this graph: class-level latent {k!r} depends on per-element "
                                  f"latent(s) {sorted(bad)}")
    return cls, elem


def _labels(dataset, latent: str) -> torch.Tensor:
    if latent in ELEMENT_LATENTS:
        return torch.arange(len(dataset))
    if latent in LABEL_OF:
        return getattr(dataset, LABEL_OF[latent])
    raise EvaluationError(f"not defined for this graph: no label for latent {latent!r} in an Omniglot set")


def wilson_interval(successes: int, n: int, z: float = Z95) -> list[float] | None:
    """Wilson score interval [low, high] for a binomial proportion (None when n == 0)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def accuracy_summary(units: list[dict], unit: str) -> dict:
    """Pool per-run (per-episode) results ``{"correct", "n_queries", ...}`` into accuracy and 95% intervals."""
    correct = sum(u["correct"] for u in units)
    n = sum(u["n_queries"] for u in units)
    accs = np.array([u["correct"] / u["n_queries"] for u in units], dtype=np.float64)
    wilson = wilson_interval(correct, n)
    out = {"accuracy": correct / n if n else None, "n_trials": n, "correct": correct, f"n_{unit}s": len(units),
           "ci95_wilson": wilson}
    sd = float(accs.std(ddof=1)) if len(units) >= 2 else 0.0
    if len(units) >= MIN_UNITS_NORMAL and sd > 0:
        half = Z95 * sd / math.sqrt(len(units))
        m = float(accs.mean())
        out.update(ci95=[max(0.0, m - half), min(1.0, m + half)], ci95_halfwidth=half, std_over_units=sd,
                   ci_method=f"normal approximation over {unit}s: mean ± 1.96 sd/sqrt({len(units)})")
    else:
        out.update(ci95=wilson, ci_method=f"Wilson score interval over all {n} trials")
    return out


class _Timer:
    def __init__(self):
        self.seconds = {}

    @contextmanager
    def __call__(self, name):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


def _seed(seed: int, offset: int = 0) -> None:
    torch.manual_seed(int(seed) + offset)


# --------------------------------------------------------------------------- data
def test_classes(eval_set, max_classes: int | None):
    """(X uint8 (B, N, 1, H, W), image indices (B, N), class names): the first ``max_classes``
    characters with their first N drawings, N = the smallest class size among them."""
    n = eval_set.n_classes if max_classes is None else min(int(max_classes), eval_set.n_classes)
    counts = eval_set.class_counts()[:n]
    if n == 0 or int(counts.min()) == 0:
        raise ValueError(f"the evaluation set has no usable test classes (counts {counts.tolist()})")
    N = int(counts.min())
    idx = []
    for c in range(n):
        members = (eval_set.character == c).nonzero().flatten()
        members = members[torch.argsort(eval_set.drawer[members], stable=True)]
        idx.append(members[:N])
    idx = torch.stack(idx)
    return eval_set.images[idx], idx, list(eval_set.character_names[:n])


# --------------------------------------------------------------------------- sections
def likelihood(model, X, K, elem, max_elements, class_chunk=16):
    """-log p̂(X)/N and -ELBO/N per class (nats per image)."""
    N = X.shape[1]
    est, elbo = [], []
    for b0 in tqdm(range(0, len(X), class_chunk), desc=f"log p(X), K={K}", disable=None):
        e, l = log_marginal(model, X[b0:b0 + class_chunk], n_samples=K, per_element=elem,
                            max_elements=max_elements, return_elbo=True)
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
    loader = vhe.DataLoader(dataset.images, labels=labels, k_shot=capped, batch_size=batch_size, resample=resample,
                            shuffle=False, seed=seed, device=device, dtype=torch.float32)
    total, n, kl_tot = 0.0, 0, {}
    targets = torch.as_tensor(targets, dtype=torch.long).flatten()
    with eval_mode(model):
        for chunk in tqdm(targets.split(batch_size), desc=desc, disable=None):
            b = loader.episode(chunk.to(loader.device))
            value, kl = model.score(b.inputs, b.sizes, x=b.target, rescale=objective.rescale, reduction="sum",
                                    return_kl=True)
            total += float(value)
            for k, v in kl.items():
                kl_tot[k] = kl_tot.get(k, 0.0) + float(v)
            n += len(chunk)
    return {"value": -total / n, "n_images": n, "n_classes": int(dataset.character[targets].unique().numel()),
            "k_shot": capped, "resample": dict(resample), "rescale": bool(objective.rescale),
            "kl_per_image": {k: v / n for k, v in kl_tot.items()}}


def kl_c_section(model, X, k, n_samples, elem, seed, class_chunk=32):
    B, N = X.shape[:2]
    k = max(1, min(int(k), N))
    g = torch.Generator().manual_seed(int(seed))
    pick = torch.rand(B, N, generator=g).argsort(dim=1)[:, :k].to(X.device)
    D = X[torch.arange(B, device=X.device)[:, None], pick]
    kls = []
    for b0 in tqdm(range(0, B, class_chunk), desc="KL(c)", disable=None):
        kls.append(kl_class(model, D[b0:b0 + class_chunk], latent=CLASS_LATENT, n_samples=n_samples,
                            per_element=elem).double().cpu())
    kls = torch.cat(kls)
    return {"mean": float(kls.mean()), "std": float(kls.std()) if B > 1 else 0.0, "k_shot": k, "n_classes": B,
            "n_samples": n_samples, "per_class": kls.tolist()}


def classify_runs(model, runs, n_samples, elem, device, max_elements, desc, method="conditional"):
    """Accuracy of one estimator on one-shot runs (accuracy_summary + per-run results + per_trial)."""
    units, per_trial, non_finite = [], [], 0
    for r in tqdm(runs, desc=f"{desc} ({method})", disable=None):
        support = r.support.to(device=device, dtype=torch.float32).unsqueeze(1)  # (W, 1, C, H, W)
        query = r.query.to(device=device, dtype=torch.float32)
        pred, scores = classify(model, support, query, n_samples=n_samples, per_element=elem,
                                max_elements=max_elements, method=method)
        non_finite += _non_finite_trials(scores)
        hits = (pred.cpu() == torch.as_tensor(r.answer).cpu()).long()
        correct = int(hits.sum())
        per_trial += hits.tolist()
        units.append({"name": r.name, "n_way": r.n_way, "n_queries": int(len(query)), "correct": correct,
                      "accuracy": correct / len(query)})
    out = accuracy_summary(units, "run")
    out.update(n_way=sorted({u["n_way"] for u in units}), shot=1, method=method, n_samples=n_samples, runs=units,
               per_trial=per_trial)
    return _mark_non_finite(out, non_finite)


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


def classify_episodes(model, dataset, way, shot, n_episodes, n_samples, elem, seed, device, max_elements,
                      method="conditional"):
    """N-way K-shot episodes: ``way`` distinct characters, ``shot`` support + 1 query drawings each
    (the same episodes for every estimator: they depend only on ``seed``)."""
    counts = dataset.class_counts()
    eligible = (counts >= shot + 1).nonzero().flatten()
    if len(eligible) < way:
        return {"accuracy": None, "way": way, "shot": shot,
                "skipped": f"{way}-way {shot}-shot needs {way} characters with >= {shot + 1} drawings; the "
                           f"evaluation set has {len(eligible)}"}
    members = {int(c): (dataset.character == c).nonzero().flatten() for c in eligible.tolist()}
    g = torch.Generator().manual_seed(int(seed))
    units, per_trial, non_finite = [], [], 0
    for _ in tqdm(range(n_episodes), desc=f"{way}-way {shot}-shot ({method})", disable=None):
        chars = eligible[torch.randperm(len(eligible), generator=g)[:way]]
        sup, qry = [], []
        for c in chars.tolist():
            m = members[c]
            pick = m[torch.randperm(len(m), generator=g)[:shot + 1]]
            sup.append(dataset.images[pick[:shot]])
            qry.append(dataset.images[pick[shot]])
        support = torch.stack(sup).to(device=device, dtype=torch.float32)
        query = torch.stack(qry).to(device=device, dtype=torch.float32)
        pred, scores = classify(model, support, query, n_samples=n_samples, per_element=elem,
                                max_elements=max_elements, method=method)
        non_finite += _non_finite_trials(scores)
        hits = (pred.cpu() == torch.arange(way)).long()
        per_trial += hits.tolist()
        units.append({"n_queries": way, "correct": int(hits.sum())})
    out = accuracy_summary(units, "episode")
    out.update(way=way, shot=shot, queries_per_episode=way, method=method, n_samples=n_samples, per_trial=per_trial)
    return _mark_non_finite(out, non_finite)


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


def samples_figure(model, name, path_png, eval_set=None, cls_latents=(), n_rows=8, n_samples=8, seed=0,
                   note: str | None = None) -> list[str]:
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
            canvas[y:y + H, x0:x0 + W] = a[..., None] if a.ndim == 2 else a
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


# --------------------------------------------------------------------------- main routine
def evaluate(cfg, checkpoint, out, figures=None, device=None, max_elements: int | None = None, batch_size: int = 128,
             progress: bool | None = None) -> dict:
    """Evaluate the model of ``cfg`` (a per-model config: path or dict) with ``checkpoint``; write ``out``.

    ``cfg["evaluation"]`` holds the options (override them before calling). Returns the metrics dict.
    """
    from experiments import datasets
    from experiments.common import resolve_device
    from experiments.config import load_config
    from experiments.registry import build_experiment

    timer = _Timer()
    t_start = time.perf_counter()
    with timer("setup"):
        cfg = load_config(cfg)
        m = cfg["model"]
        ev = Evaluation.of(cfg["evaluation"]).for_decoder(m.get("decoder"))
        max_elements = int(max_elements if max_elements is not None else ev.max_elements)
        device = resolve_device(device if device is not None else cfg.get("device", "auto"))
        seed = int(ev.seed)
        threads = (m.get("train") or {}).get("num_threads")
        if threads and device.type == "cpu":
            torch.set_num_threads(int(threads))
        _seed(seed)
        exp = build_experiment(cfg, device)
        model, objective = exp.model, exp.objective
        ckpt = load_weights(exp.model, checkpoint, device)  # the one checkpoint loader (weights_only=True)
        ckpt_info = {"path": str(checkpoint), **{k: ckpt[k] for k in ("step", "val_bound", "version") if k in ckpt}}

    K = int(ev.n_samples)
    res = {
        "model": m.get("name"), "experiment": m.get("experiment"), "objective": m.get("objective"),
        "decoder": m.get("decoder"), "run": cfg.get("run"), "seed": cfg.get("seed"),
        "provenance": provenance(cfg, device, seed), "checkpoint": ckpt_info,
        "evaluation": {**ev.to_dict(), "device": str(device), "max_elements": max_elements, "batch_size": batch_size},
        "graph": {"latents": list(model.order)},
        "K": K, "n_classes": None, "images_per_class": None, "test_classes": None,
        "nll_estimate": None, "nll_stderr": None, "elbo": None,
        "per_class": None, "bounds": None, "kl_c": None,
        "classification": None, "not_defined": {}, "figures": {},
    }
    nd = res["not_defined"]
    try:
        cls, elem = class_structure(model)
        structure_error = None
    except EvaluationError as e:
        cls, elem, structure_error = [], list(ELEMENT_LATENTS), str(e)
    res["graph"].update(class_latents=cls, element_latents=elem)

    diverged = None
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        diverged = (f"the checkpoint's weights are not finite (a diverged model, step {ckpt_info.get('step')}): "
                    f"nothing to evaluate; retrain with a lower train.lr or a tighter train.grad_clip")
        log.error("%s: %s", m.get("name"), diverged)
        res["diverged"] = diverged
    eval_set = None
    if structure_error or diverged:
        for key in ("nll_estimate", "elbo", "bounds", "kl_c", "classification"):
            nd[key] = diverged or structure_error
    else:
        with timer("data"):
            eval_set = datasets.load_split(cfg, "evaluation")
            Xu, idx, names = test_classes(eval_set, ev.max_classes)
            X = Xu.to(device=device, dtype=torch.float32)
        B, N = X.shape[:2]
        res.update(n_classes=B, images_per_class=N, test_classes=names)

        # ---- test likelihood
        _seed(seed, 1)
        with timer("likelihood"):
            try:
                nll, nelbo = likelihood(model, X, K, elem, max_elements)
                res.update(nll_estimate=float(nll.mean()), elbo=float(nelbo.mean()),
                           nll_stderr=float(nll.std() / math.sqrt(B)) if B > 1 else 0.0,
                           per_class={"nll": nll.tolist(), "elbo": nelbo.tolist()})
            except EvaluationError as e:
                nd["nll_estimate"] = nd["elbo"] = str(e)

        # ---- bounds (the training objective) on the test classes and as many training classes
        _seed(seed, 2)
        with timer("bounds"):
            tl = exp.train_loader
            k_shot, resample = dict(tl.k_shot), dict(tl.resample)
            bs = max(1, int(batch_size))
            try:
                test_b = bound(model, objective, eval_set, idx.flatten(), k_shot, resample, bs, seed + 2, device,
                               "test bound")
                train_set = datasets.train_val_sets(cfg)[0]
                n_train = min(B, train_set.n_classes)
                train_targets = (train_set.character < n_train).nonzero().flatten()
                train_b = bound(model, objective, train_set, train_targets, k_shot, resample, bs, seed + 3,
                                device, "train bound")
                res.update(bounds={"test": test_b, "train": train_b,
                                   "definition": "minus model.score (the training objective, kl_factor 1, the "
                                                 "objective's rescale, sizes = class sizes) per target image; "
                                                 "support sets drawn like training episodes"})
            except EvaluationError as e:
                nd["bounds"] = str(e)

        # ---- KL(c)
        _seed(seed, 3)
        if CLASS_LATENT in model.order:
            with timer("kl_c"):
                k = exp.train_loader.k_shot.get(CLASS_LATENT, m["train"]["k_shot"])
                try:
                    res["kl_c"] = kl_c_section(model, X, k, n_samples=100, elem=elem, seed=seed + 3)
                except EvaluationError as e:
                    nd["kl_c"] = str(e)
        else:
            nd["kl_c"] = f"the model has no class latent {CLASS_LATENT!r} (latents {model.order})"

        # ---- classification: every estimator on the same trials
        if not cls:
            nd["classification"] = (f"classification needs a class-level latent shared by the support set and the "
                                    f"query; this model's latents {model.order} are all per-image")
        else:
            ns = int(ev.classification_samples)
            methods = list(ev.estimators)
            out_cls = {"estimators": methods, "n_samples": ns}
            try:
                sets = {}
                vr = ev.validation_runs
                if vr["n_runs"] > 0:
                    try:
                        sets["validation_runs"] = validation_runs(cfg, vr["n_runs"], vr["n_way"], seed + 6)
                    except ValueError as e:  # e.g. no validation alphabet has n_way characters
                        nd["classification.validation_runs"] = str(e)
                if ev.lake_runs:
                    sets["lake_runs"] = datasets.load_split(cfg, "lake_runs")[:ev.max_runs or None]
                n_within = int(ev.within_alphabet_runs)
                if n_within > 0:
                    sets["within_alphabet_runs"] = datasets.load_split(cfg, "within_alphabet_runs")[:n_within]
                for key, runs in sets.items():
                    with timer(key):
                        out_cls[key] = {}
                        for i, method in enumerate(methods):
                            _seed(seed, 4 + i)
                            out_cls[key][method] = classify_runs(model, runs, ns, elem, device, max_elements,
                                                                 key.replace("_", " "), method=method)
                eps = ev.episodes
                with timer("episodes"):
                    out_eps = {}
                    for way in eps["ways"]:
                        for shot in eps["shots"]:
                            ep_seed = seed + 1000 * int(way) + int(shot)
                            entry = out_eps[f"{way}way_{shot}shot"] = {}
                            for method in methods:
                                _seed(ep_seed)
                                entry[method] = classify_episodes(
                                    model, eval_set, int(way), int(shot), int(eps["n_episodes"]), ns,
                                    elem, ep_seed, device, max_elements, method=method)
                    out_cls["episodes"] = out_eps
                res["classification"] = out_cls
            except EvaluationError as e:
                nd["classification"] = str(e)

    # ---- samples figure
    if figures is not None:
        with timer("samples_figure"):
            png = Path(figures) / f"samples_{m.get('name')}.png"
            note = None
            if structure_error:
                note = "(class-conditional sampling from a test character is not defined for this graph)"
            if diverged:
                res["figures"]["samples"] = placeholder_figure(png, f"{m.get('name')}: no samples: {diverged}")
            else:
                res["figures"]["samples"] = samples_figure(model, m.get("name"), png, eval_set=eval_set,
                                                           cls_latents=cls, seed=seed, note=note)

    timer.seconds["total"] = round(time.perf_counter() - t_start, 3)
    res["eval_seconds"] = dict(timer.seconds)
    if out is not None:
        bad = write_json(res, out, reasons=NON_FINITE_REASONS)
        if bad:
            log.warning("non-finite values written as null (listed under non_finite): %s", ", ".join(bad))
    clean = json_ready(res)
    _log_wandb(cfg, m, clean, checkpoint)
    return clean


def _log_wandb(cfg, m, res: dict, checkpoint) -> None:
    """The evaluation into the model's W&B run (experiments.tracking; nothing when disabled)."""
    from experiments import tracking

    if not tracking.enabled(cfg):
        return
    from paper_figures.metrics import evaluate_rows

    info = {k: m.get(k) for k in ("experiment", "objective", "decoder")}
    rows = evaluate_rows(m.get("name"), info, res, "evaluation")
    images = {"eval/samples": p for p in (res.get("figures") or {}).get("samples") or [] if str(p).endswith(".png")}
    tracking.log_evaluation(cfg, m.get("name"), checkpoint, rows, images)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m analysis.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="per-model config JSON (results/<run>/configs/<model>.json)")
    p.add_argument("--evaluation", default=None,
                   help="JSON/YAML with the evaluation section (replaces the config's; the pipeline's configs/evaluation.json)")
    p.add_argument("--checkpoint", required=True, help="trainer checkpoint (best.pt)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--figures", default=None, help="folder for samples_<model>.png/.pdf (omit: no figure)")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (default: the config's device)")
    g = p.add_argument_group("overrides of cfg['evaluation']")
    g.add_argument("--n-samples", type=_positive_int, help="K, importance samples for log p(X)")
    g.add_argument("--max-classes", type=_positive_int, help="test classes for likelihoods, bounds and KL(c)")
    g.add_argument("--classification-samples", type=_positive_int, help="importance samples per log p(x | D)")
    g.add_argument("--lake-runs", action=argparse.BooleanOptionalAction, default=None,
                   help="evaluate Lake's 20 one-shot runs")
    g.add_argument("--max-runs", type=_positive_int, help="use only the first N of Lake's runs")
    g.add_argument("--within-alphabet-runs", type=_nonneg_int, help="within-alphabet runs to use (0: none)")
    g.add_argument("--n-episodes", type=_positive_int, help="episodes per (way, shot)")
    g.add_argument("--ways", type=_positive_int, nargs="+", help="episode ways, e.g. 5 20")
    g.add_argument("--shots", type=_positive_int, nargs="+", help="episode shots, e.g. 1 5")
    g.add_argument("--seed", type=int, help="evaluation seed")
    p.add_argument("--max-elements", type=_positive_int, default=None,
                   help="images decoded at once by the importance samplers (default: evaluation.max_elements)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="targets per batch for the bounds")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def apply_overrides(cfg: dict, args) -> dict:
    ev = cfg.setdefault("evaluation", {})
    for opt, key in (("n_samples", "n_samples"), ("max_classes", "max_classes"),
                     ("classification_samples", "classification_samples"), ("lake_runs", "lake_runs"),
                     ("max_runs", "max_runs"), ("within_alphabet_runs", "within_alphabet_runs"), ("seed", "seed")):
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
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    from experiments.config import load_config

    cfg = apply_overrides(load_config(args.config, evaluation=args.evaluation), args)
    res = evaluate(cfg, args.checkpoint, args.out, figures=args.figures, device=args.device,
                   max_elements=args.max_elements, batch_size=args.batch_size)

    def fmt(v, spec=".2f"):
        return "n/a" if v is None else format(v, spec)

    lines = [f"{res['model']}: -log p(X)/|X| = {fmt(res['nll_estimate'])} nats (K={res['K']}, "
             f"{res['n_classes']} classes x {res['images_per_class']}), -ELBO = {fmt(res['elbo'])}, "
             f"test bound = {fmt((res['bounds'] or {}).get('test', {}).get('value'))}, "
             f"train bound = {fmt((res['bounds'] or {}).get('train', {}).get('value'))}"]
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
