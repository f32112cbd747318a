"""A synthetic results/<run>/ tree (configs, metrics, histories, sample PNGs) for the
paper_figures tests: hand-made numbers whose claims verdicts are known."""

from __future__ import annotations

import json
from pathlib import Path

OBJECTIVES = ("ns", "resample", "rescale", "vhe")
DECODERS = ("deconv", "pixelcnn")


def model_entries():
    models = {}
    for dec in DECODERS:
        models[f"vae_{dec}"] = {"experiment": "vae", "decoder": dec}
        for obj in OBJECTIVES:
            models[f"{obj}_{dec}"] = {"experiment": "class", "objective": obj, "decoder": dec}
    models["hierarchical"] = {"experiment": "hierarchical", "objective": "vhe", "decoder": "deconv"}
    models["factorial"] = {"experiment": "factorial", "objective": "vhe", "decoder": "deconv"}
    return models


N_TRIALS = 400
#: accuracy of each estimator relative to the model's "conditional" number (conditional is best)
ESTIMATOR_OFFSET = {"marginal_ratio": -0.15, "conditional": 0.0, "ns_kl": -0.05}


def acc(a, n=N_TRIALS):
    """An accuracy entry in the analysis.evaluate layout: the first round(a n) trials correct."""
    if a is None:
        return None
    a = max(0.0, min(1.0, a))
    k = round(a * n)
    return {
        "accuracy": k / n,
        "ci95": [max(0.0, k / n - 0.05), min(1.0, k / n + 0.05)],
        "n_trials": n,
        "correct": k,
        "per_trial": [1] * k + [0] * (n - k),
    }


def by_estimator(a):
    return None if a is None else {e: acc(a + off) for e, off in ESTIMATOR_OFFSET.items()}


def metrics_for(name, entry, *, nll, kl_c, lake, within=None, way5=None, k=10):
    """A metrics JSON in the analysis.evaluate layout (the keys paper_figures.metrics reads)."""
    m = {
        "model": name,
        **entry,
        "K": k,
        "n_classes": 20,
        "nll_estimate": nll,
        "nll_stderr": 0.5,
        "elbo": nll + 1.0,
        "bounds": {"test": {"value": nll + 3.0, "n_images": 400}, "train": {"value": nll + 2.0, "n_images": 400}},
        "kl_c": {"mean": kl_c, "n_classes": 20} if kl_c is not None else None,
        "checkpoint": {"step": 100},
        "provenance": {"git_commit": "0" * 40},
        "not_defined": {},
    }
    if kl_c is None:  # as analysis.evaluate: an undefined quantity is null with its reason
        m["not_defined"]["kl_c"] = "the model has no class latent 'c' (synthetic)"
    if entry.get("experiment") == "class":
        cl = {
            "estimators": list(ESTIMATOR_OFFSET),
            "n_samples": 5,
            "validation_runs": by_estimator(lake + 0.1),
            "lake_runs": by_estimator(lake),
        }
        if within is not None:
            cl["within_alphabet_runs"] = by_estimator(within)
        cl["episodes"] = {"5way_1shot": by_estimator(way5)} if way5 is not None else {}
        m["classification"] = cl
    else:
        m["classification"] = None
        m["not_defined"]["classification"] = "classification needs a class-level latent (synthetic)"
    return m


def baselines(mhd_28=0.55):
    """metrics/baselines.json in the analysis.baselines layout."""
    return {
        "lake_runs": {"pixel_nn_28": acc(0.40), "mhd_28": acc(mhd_28), "pixel_nn_105": acc(0.45), "mhd_105": acc(0.612)}
    }


#: hand-made numbers: with PixelCNN, NS's c is unused (0.3 nats vs VHE's 40); VHE beats NS on
#: Lake's runs with PixelCNN but not with deconv; VHE has the best NLL with PixelCNN, not with deconv
NUMBERS = {
    "ns_deconv": dict(nll=100.0, kl_c=30.0, lake=0.60),
    "resample_deconv": dict(nll=101.0, kl_c=31.0, lake=0.55),
    "rescale_deconv": dict(nll=99.0, kl_c=25.0, lake=0.58),
    "vhe_deconv": dict(nll=100.5, kl_c=35.0, lake=0.50),
    "ns_pixelcnn": dict(nll=90.0, kl_c=0.3, lake=0.30),
    "resample_pixelcnn": dict(nll=89.0, kl_c=5.0, lake=0.40),
    "rescale_pixelcnn": dict(nll=91.0, kl_c=2.0, lake=0.35),
    "vhe_pixelcnn": dict(nll=85.0, kl_c=40.0, lake=0.80, within=0.7, way5=0.95),
    "vae_deconv": dict(nll=110.0, kl_c=None, lake=0.20),
}


#: analysis.structured layouts (the keys paper_figures.metrics reads)
HIERARCHICAL = {
    "model": "hierarchical",
    "experiment": "hierarchical",
    "checkpoint_step": 100,
    "provenance": {"git_commit": "0" * 40},
    "bound_per_image": -120.0,
    "bound_se": 1.0,
    "kl": {"a": 3.5, "c": 20.1, "z": 4.0},
    "class_model": {"name": "vhe_deconv", "bound_per_image": -130.0, "bound_se": 1.0, "same_training_steps": True},
    "bound_difference": 10.0,
    "bound_difference_se": 0.5,
    "nll": {
        "n_samples": 10,
        "nll_per_image": 115.0,
        "nll_se": 1.0,
        "class_nll_per_image": 125.0,
        "class_nll_se": 1.0,
        "nll_improvement": 10.0,
        "nll_improvement_se": 0.4,
    },
    "alphabet_style": {"accuracy": 0.12, "chance": 0.05, "classifier_accuracy_real": 0.33},
}
#: the hierarchical model's alphabet measures (analysis.hierarchical's context_nll, oneshot_context and
#: alphabet_style with its interval and controls): absent from HIERARCHICAL (an older metrics file),
#: written by make_run; both hierarchical claims (paper_figures.claims) hold on them
HIERARCHICAL_ALPHABET = {
    "context_nll": {
        "n_samples": 10,
        "characters": 30,
        "images_per_character": 20,
        "context_images": 10,
        "nll_context_per_image": 112.0,
        "nll_context_se": 1.0,
        "nll_no_context_per_image": 115.0,
        "nll_no_context_se": 1.0,
        "context_gain": 3.0,
        "context_gain_se": 0.5,
        "context_gain_ci95": [2.02, 3.98],
        "context_helps_share": 0.9,
        "class_nll_per_image": 125.0,
        "class_nll_se": 1.0,
        "context_gain_vs_class": 13.0,
        "context_gain_vs_class_se": 0.6,
        "context_gain_vs_class_ci95": [11.824, 14.176],
    },
    "oneshot_context": {
        "episodes": 20,
        "n_samples": 5,
        "ways": 20,
        "shots": 1,
        "chance": 0.05,
        "with_context": {**acc(0.5), "estimator": "with context"},
        "prior_a": {**acc(0.4), "estimator": "a ~ p(a)"},
        "no_context": {**acc(0.45), "estimator": "conditional"},
        "class_model": {**acc(0.42), "estimator": "the class model"},
    },
    "alphabet_style": {
        "alphabets": 20,
        "accuracy": 0.12,
        "accuracy_ci95": [0.07, 0.17],
        "chance": 0.05,
        "classifier_accuracy_real": 0.33,
        "controls": {
            "prior_a": {"accuracy": 0.06, "accuracy_ci95": [0.03, 0.09]},
            "class_model": {"accuracy": 0.05, "accuracy_ci95": [0.03, 0.07]},
        },
    },
}
FACTORIAL = {
    "model": "factorial",
    "experiment": "factorial",
    "checkpoint_step": 100,
    "provenance": {"git_commit": "0" * 40},
    "cells": 320,
    "texture": {"accuracy": 0.4, "chance": 0.125, "classifier_accuracy_real": 0.98},
    "character": {"accuracy": 0.2, "chance": 0.025, "classifier_accuracy_real": 0.66},
    "both_accuracy": 0.1,
}


def write_png(path: Path, seed: int = 0):
    import numpy as np
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    plt.imsave(path, rng.random((28, 56)) > 0.5, cmap="gray")


def replicate(of: str, seed: int, **numbers) -> dict:
    """A replicate for :func:`make_run`: model ``of`` trained again with ``seed``; ``numbers``
    override ``of``'s NUMBERS (class models: nll, kl_c, lake, ...) or, for the structured models,
    update its metrics JSON section by section (e.g. ``texture={"accuracy": 0.3}``)."""
    return {"of": of, "seed": seed, **numbers}


def make_run(
    root: Path, run="synthetic", skip=("vae_pixelcnn",), samples=True, structured=True, replicates=None
) -> Path:
    """results/<run>/ with configs for every model and metrics for those in NUMBERS (not ``skip``).

    ``replicates``: {name: :func:`replicate`} adds models trained again with another seed (their
    configs carry ``seed`` and ``model.replicate_of``, as experiments.config.model_config writes them)."""
    rd = Path(root) / "results" / run
    for sub in ("configs", "metrics", "figures", "checkpoints"):
        (rd / sub).mkdir(parents=True, exist_ok=True)
    models = model_entries()
    for i, (name, entry) in enumerate(models.items()):
        (rd / "configs" / f"{name}.json").write_text(json.dumps({"run": run, "model": {"name": name, **entry}}))
        ck = rd / "checkpoints" / name
        ck.mkdir(parents=True, exist_ok=True)
        if name in skip:
            continue
        curve = entry["experiment"] == "class"  # the one-shot learning curve: every 50 steps
        rows = ["step,bound,val_bound,val_acc"] + [
            f"{s},{200 - s / 10 + i},{'' if s % 20 else 210 - s / 10 + i},{0.2 + s / 500 if curve and s % 50 == 0 else ''}"
            for s in range(0, 101, 10)
        ]
        (ck / "final").mkdir(exist_ok=True)
        (ck / "final" / "history.csv").write_text("\n".join(rows) + "\n")
        (ck / "train_summary.json").write_text(json.dumps({"steps": 100, "best_val_bound": 190.0 + i}))
        if name in NUMBERS:
            (rd / "metrics" / f"{name}.json").write_text(json.dumps(metrics_for(name, entry, **NUMBERS[name])))
        if samples and entry["experiment"] in ("vae", "class"):
            write_png(rd / "figures" / f"samples_{name}.png", i)
    if structured:
        (rd / "metrics" / "hierarchical.json").write_text(json.dumps({**HIERARCHICAL, **HIERARCHICAL_ALPHABET}))
        (rd / "metrics" / "factorial.json").write_text(json.dumps(FACTORIAL))
        write_png(rd / "figures" / "hierarchical_samples.png", 100)
        write_png(rd / "figures" / "factorial_samples.png", 101)
    for j, (name, r) in enumerate((replicates or {}).items()):
        entry, numbers = models[r["of"]], {k: v for k, v in r.items() if k not in ("of", "seed")}
        (rd / "configs" / f"{name}.json").write_text(
            json.dumps({"run": run, "seed": r["seed"], "model": {"name": name, **entry, "replicate_of": r["of"]}})
        )
        ck = rd / "checkpoints" / name
        (ck / "final").mkdir(parents=True, exist_ok=True)
        (ck / "final" / "history.csv").write_text("step,bound,val_bound,val_acc\n0,200,210,\n100,190,200,\n")
        (ck / "train_summary.json").write_text(json.dumps({"steps": 100, "best_val_bound": 200.0 + j}))
        if samples:
            if entry["experiment"] in ("vae", "class"):
                write_png(rd / "figures" / f"samples_{name}.png", 200 + j)
            else:
                write_png(rd / "figures" / f"{name}_samples.png", 200 + j)
        if entry["experiment"] in ("vae", "class"):
            m = metrics_for(name, entry, **{**NUMBERS[r["of"]], **numbers})
        else:
            hier = {**HIERARCHICAL, **HIERARCHICAL_ALPHABET}
            m = json.loads(json.dumps(hier if entry["experiment"] == "hierarchical" else FACTORIAL))
            m["model"] = name
            for key, sub in numbers.items():
                m[key] = {**m[key], **sub} if isinstance(sub, dict) else sub
        (rd / "metrics" / f"{name}.json").write_text(json.dumps(m))
    (rd / "metrics" / "data_gap.json").write_text(json.dumps({"pixel_agreement": 0.95, "n_images": 100}))
    (rd / "metrics" / "baselines.json").write_text(json.dumps(baselines()))
    return rd
