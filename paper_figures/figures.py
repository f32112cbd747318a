"""The run-level figures: training curves, one-shot learning curves, KL(c) per objective and
decoder, and a montage of the 1-shot sample sheets. Each ``figure_*`` returns a matplotlib
figure; :func:`save_all` writes them (PNG + PDF, :func:`experiments.artifacts.save_figure`).

History columns are the trainer's (``experiments.trainer``): ``step``, ``bound`` (training bound,
nats per image), ``val_bound``, ``val_acc``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from experiments.artifacts import save_figure

from .metrics import RunData, value
from .tables import DECODERS, OBJECTIVES, cell_model

NA = "n/a"
CLASS_OBJECTIVES = ("ns", "resample", "rescale", "vhe")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt, n, cols, w, h):
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def figure_training_curves(run: RunData):
    """Training (line) and validation (dots) bound per model against steps."""
    plt = _plt()
    names = list(run.models) or ["(no models)"]
    fig, axes = _grid(plt, len(names), 4, 3.4, 2.6)
    for ax, name in zip(axes.flat, names):
        h = run.histories.get(name, pd.DataFrame())
        drawn = False
        for col, label, style in (("bound", "train", "-"), ("val_bound", "val", "o-")):
            if "step" in h and col in h and h[col].notna().any():
                s = h[["step", col]].dropna()
                ax.plot(s["step"], s[col], style, ms=3, lw=1, label=f"{label} ({col})")
                drawn = True
        if drawn:
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, NA, ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("bound (nats/image)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Training curves (run {run.name})", fontsize=10)
    fig.tight_layout()
    return fig


def figure_learning_curves(curves: pd.DataFrame, run_name: str):
    """Accuracy (top) and validation bound (bottom) vs steps, one column per decoder; NS and VHE bold."""
    plt = _plt()
    cls = curves[curves["experiment"] == "class"]
    decoders = [d for d in DECODERS if d in set(cls["decoder"])] or ["deconv"]
    fig, axes = plt.subplots(2, len(decoders), figsize=(4.2 * len(decoders), 5.6), squeeze=False)
    for j, dec in enumerate(decoders):
        sub = cls[cls["decoder"] == dec]
        for obj in CLASS_OBJECTIVES:
            s = sub[sub["objective"] == obj].sort_values("step")
            bold = obj in ("ns", "vhe")
            style = dict(lw=2 if bold else 0.8, alpha=1.0 if bold else 0.6, marker="o" if bold else None, ms=3)
            acc = s.dropna(subset=["val_acc"])
            if not acc.empty:
                axes[0, j].plot(acc["step"], 100 * acc["val_acc"], label=obj, **style)
            b = s.dropna(subset=["val_bound"])
            if not b.empty:
                axes[1, j].plot(b["step"], b["val_bound"], label=obj, **style)
        axes[0, j].set_title(f"{dec}: one-shot accuracy, validation runs", fontsize=9)
        axes[0, j].set_ylabel("accuracy (%)", fontsize=8)
        axes[1, j].set_title(f"{dec}: validation bound", fontsize=9)
        axes[1, j].set_ylabel("nats per image", fontsize=8)
        for ax in axes[:, j]:
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
            if ax.lines:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, NA, ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.suptitle(f"Learning curves (run {run_name})", fontsize=10)
    fig.tight_layout()
    return fig


def figure_kl(run: RunData, df: pd.DataFrame):
    """Bars of KL(c) (nats) per objective, one colour per decoder."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.38
    for j, dec in enumerate(DECODERS):
        for i, obj in enumerate(CLASS_OBJECTIVES):
            r = value(df, cell_model(run, obj, dec), "kl_c", "test")
            x = i + (j - 0.5) * width
            if r is None:
                ax.text(x, 0, NA, ha="center", va="bottom", fontsize=7, color="grey", rotation=90)
            else:
                ax.bar(x, r["value"], width, color=f"C{j}", label=DECODERS[dec])
                ax.text(x, r["value"], f"{r['value']:.1f}", ha="center", va="bottom", fontsize=7)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    ax.set_xticks(range(len(CLASS_OBJECTIVES)), [OBJECTIVES[o] for o in CLASS_OBJECTIVES])
    ax.set_ylabel("KL(c) (nats)")
    ax.set_title(f"Information in c per objective and decoder (run {run.name})", fontsize=10)
    fig.tight_layout()
    return fig


def figure_samples(run: RunData, figures: Path):
    """The per-model 1-shot sample sheets (figures/samples_<model>.png) side by side."""
    plt = _plt()
    import matplotlib.image as mpimg

    names = [n for n, info in run.models.items() if info.get("experiment") in ("vae", "class")] or ["(no models)"]
    fig, axes = _grid(plt, len(names), 5, 3, 3)
    for ax, name in zip(axes.flat, names):
        path = Path(figures) / f"samples_{name}.png"
        ax.axis("off")
        ax.set_title(name, fontsize=9)
        if path.is_file():
            try:
                ax.imshow(mpimg.imread(path), cmap="gray", interpolation="nearest")
            except Exception as e:  # noqa: BLE001 - an unreadable PNG is shown as such, not fatal
                ax.text(
                    0.5,
                    0.5,
                    f"unreadable\n{type(e).__name__}",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    color="grey",
                )
        else:
            ax.text(0.5, 0.5, NA, ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.suptitle(f"1-shot samples per model (run {run.name})", fontsize=10)
    fig.tight_layout()
    return fig


def save_all(run: RunData, df: pd.DataFrame, curves: pd.DataFrame, figures: Path, formats) -> None:
    """figures/{training_curves,learning_curves,kl_c,samples_montage}.<format>."""
    figures = Path(figures)
    save_figure(figure_training_curves(run), figures / "training_curves.png", formats)
    save_figure(figure_learning_curves(curves, run.name), figures / "learning_curves.png", formats)
    save_figure(figure_kl(run, df), figures / "kl_c.png", formats)
    save_figure(figure_samples(run, figures), figures / "samples_montage.png", formats)
