"""analysis.metric_rows.structured_rows for the alphabet-context and factorial-diagnostic sections: read
when present (by exact keys inside), absent from older metrics files without error."""

from __future__ import annotations

import copy

import pytest

from analysis.metric_rows import MetricsError, structured_rows
from tests.pipeline.synthetic import FACTORIAL, HIERARCHICAL

H_INFO = {"experiment": "hierarchical", "objective": "vhe", "decoder": "deconv"}
F_INFO = {"experiment": "factorial", "objective": "vhe", "decoder": "pixelcnn"}
NEW_H = {
    "nll_context",
    "nll_no_context",
    "context_gain",
    "context_gain_vs_class",
    "context_helps_share",
    "oneshot_accuracy",
    "oneshot_chance",
    "alphabet_style_prior_a",
    "alphabet_style_class_model",
}
NEW_F = {
    "t_swap_follows_t",
    "t_swap_changed",
    "t_swap_chance",
    "texture_follows_row",
    "texture_follows_row_chance",
    "texture_real_flip2pct",
    "texture_real_flip5pct",
    "kl_c",
    "kl_t",
    "kl_z",
}


def _acc(a, n=40):
    return {"accuracy": a, "n_trials": n, "correct": round(a * n), "ci95": [a - 0.1, a + 0.1]}


def hierarchical():
    d = copy.deepcopy(HIERARCHICAL)
    d["context_nll"] = {
        "n_samples": 10,
        "characters": 30,
        "nll_context_per_image": 110.0,
        "nll_context_se": 1.0,
        "nll_no_context_per_image": 115.0,
        "nll_no_context_se": 1.0,
        "context_gain": 5.0,
        "context_gain_se": 0.5,
        "context_gain_ci95": [4.0, 6.0],
        "context_helps_share": 0.9,
        "class_nll_per_image": 125.0,
        "class_nll_se": 1.0,
        "context_gain_vs_class": 15.0,
        "context_gain_vs_class_se": 1.0,
        "context_gain_vs_class_ci95": [13.0, 17.0],
    }
    d["oneshot_context"] = {
        "n_samples": 50,
        "chance": 0.05,
        "with_context": _acc(0.6),
        "prior_a": _acc(0.5),
        "no_context": _acc(0.55),
        "class_model": _acc(0.5),
    }
    d["alphabet_style"].update(
        accuracy_ci95=[0.08, 0.16],
        alphabets=20,
        controls={
            "prior_a": {"accuracy": 0.05, "accuracy_ci95": [0.03, 0.07]},
            "class_model": None,
            "class_model_reason": "no class model",
        },
    )
    return d


def factorial():
    d = copy.deepcopy(FACTORIAL)
    d["kl"] = {"c": 20.0, "t": 5.0, "z": 3.0}
    d["kl_episodes"] = {"se": {"c": 1.0, "t": 0.5, "z": 0.1}, "n_targets": 100}
    d["t_swap"] = {
        "cells": 320,
        "chance": 0.125,
        "follows_t": 0.4,
        "follows_t_ci95": [0.35, 0.45],
        "changed": 0.5,
        "changed_ci95": [0.45, 0.55],
    }
    d["texture"].update(follows_row=0.1, follows_row_ci95=[0.07, 0.14], follows_row_cells=280, follows_row_chance=0.125)
    d["texture_robustness"] = {
        "n_images": 500,
        "flips": [
            {"flip_rate": 0.02, "accuracy": 0.95, "ci95": [0.93, 0.97]},
            {"flip_rate": 0.05, "accuracy": 0.9, "ci95": [0.87, 0.92]},
        ],
    }
    return d


def test_older_metrics_files_give_no_new_rows():
    h = {r["metric"] for r in structured_rows("hierarchical", H_INFO, HIERARCHICAL, "h.json")}
    f = {r["metric"] for r in structured_rows("factorial", F_INFO, FACTORIAL, "f.json")}
    assert not h & NEW_H and not f & NEW_F


def test_new_sections_give_rows_with_units_and_intervals():
    rows = {(r["metric"], r["estimator"]): r for r in structured_rows("hierarchical", H_INFO, hierarchical(), "h")}
    assert {m for m, _ in rows} >= NEW_H - {"alphabet_style_class_model"}  # a null control gives no row
    assert rows[("context_gain", None)]["unit"] == "nats/image"
    assert (rows[("context_gain", None)]["ci_low"], rows[("context_gain", None)]["ci_high"]) == (4.0, 6.0)
    assert rows[("nll_context", None)]["n"] == 30 and rows[("nll_context", None)]["K"] == 10
    one = rows[("oneshot_accuracy", "with_context")]
    assert one["unit"] == "fraction" and one["n"] == 40 and one["K"] == 50 and one["set"] == "within_alphabet"
    assert (rows[("alphabet_style", None)]["ci_low"], rows[("alphabet_style", None)]["n"]) == (0.08, 20)
    frows = {r["metric"]: r for r in structured_rows("factorial", F_INFO, factorial(), "f")}
    assert set(frows) >= NEW_F
    assert frows["kl_t"]["unit"] == "nats" and frows["kl_t"]["ci_low"] == pytest.approx(5.0 - 1.959963984540054 * 0.5)
    assert frows["texture_real_flip5pct"]["value"] == 0.9 and frows["texture_real_flip5pct"]["n"] == 500
    assert frows["t_swap_follows_t"]["n"] == 320 and frows["texture_follows_row"]["n"] == 280


def test_a_present_section_missing_a_key_names_it():
    d = hierarchical()
    del d["context_nll"]["context_gain"]
    with pytest.raises(MetricsError, match="context_gain"):
        structured_rows("hierarchical", H_INFO, d, "h.json")
    f = factorial()
    del f["t_swap"]["follows_t"]
    with pytest.raises(MetricsError, match="follows_t"):
        structured_rows("factorial", F_INFO, f, "f.json")
