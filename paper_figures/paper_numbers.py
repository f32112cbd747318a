"""Numbers reported in the paper, for side-by-side comparison in the tables.

Source: Hewitt, Nye, Gane, Jaakkola, Tenenbaum, "The Variational Homoencoder: Learning to
learn high capacity generative models from few examples", UAI 2018, arXiv 1807.08919 --
the one-shot classification results table (Lake et al.'s 20 within-alphabet 20-way 1-shot
runs, all_runs.zip). Only numbers we are sure of are listed; every other cell of the tables
shows "n/a" in the paper column. Keys: (objective, decoder) -> {metric: value}; accuracies
in percent, likelihoods in nats per image.
"""

from __future__ import annotations

PAPER_NUMBERS: dict[tuple[str, str], dict[str, float]] = {
    # VHE objective with the (hierarchical) PixelCNN decoder: 81.3% on Lake's 20 runs
    ("vhe", "pixelcnn"): {"lake_acc": 81.3},
}


def paper_value(objective: str, decoder: str, metric: str) -> float | None:
    """The paper's number for this cell, or None when not known."""
    return PAPER_NUMBERS.get((objective, decoder), {}).get(metric)
