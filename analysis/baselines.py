"""Non-learned one-shot baselines on Lake's runs: pixel nearest neighbour and modified Hausdorff distance.

    python -m analysis.baselines --runs-28 resources/<run>/lake_runs.pt --zip resources/raw/all_runs.zip \
        --out results/<run>/metrics/baselines.json [--max-runs N]

Both classifiers (:mod:`vhe.baselines`) run at two resolutions on the same trials: the 28x28
runs the models are evaluated on (``--runs-28``, written by ``vhe.data.cli prepare-runs``) and
Lake's 105x105 originals read from ``--zip`` (``vhe.data.runs.load_lake_runs(size=105)``: the
PNGs binarised, ink = 1, otherwise unchanged). ``--max-runs N`` keeps the first N runs in name
order, as ``analysis.evaluate`` does with ``evaluation.max_runs``. The two run sets must hold the
same runs (names) with the same answers, else the command fails (exit 2).

Output JSON: ``lake_runs[<method>_<resolution>]`` for pixel_nn_28, mhd_28, pixel_nn_105 and
mhd_105, each ``analysis.evaluate.accuracy_summary`` over runs plus ``per_trial`` (1/0 per query,
runs in name order, queries in stored order; paired with the models' ``per_trial``), ``runs``
(name, n_queries, correct, accuracy), ``resolution`` and ``method``; ``definitions`` (one line
per entry), ``provenance`` and ``eval_seconds`` (per entry and total).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from analysis.evaluate import accuracy_summary
from experiments.artifacts import provenance
from vhe.files import write_json
from vhe.baselines import mhd_classify, pixel_nearest_neighbour
from vhe.data.fetch import DataIntegrityError
from vhe.data.runs import OneShotRun, load_lake_runs, load_runs

METHODS = {"pixel_nn": pixel_nearest_neighbour, "mhd": mhd_classify}
RESOLUTIONS = (28, 105)
DEFINITIONS = {
    "pixel_nn": "pixel nearest neighbour: the support image with the highest cosine similarity of raw pixel "
    "vectors (ink = 1)",
    "mhd": "modified Hausdorff distance (Lake's demo_classification.py): mean-centred ink-pixel coordinates, "
    "d(A, B) = max(mean_a min_b |a-b|, mean_b min_a |a-b|), the support image with the smallest distance",
}
RES_TEXT = {
    28: "on the 28x28 images the models see (resources/<run>/lake_runs.pt)",
    105: "on Lake's original 105x105 images (all_runs.zip, binarised)",
}


class RunMismatchError(ValueError):
    """The 28x28 and the 105x105 runs are not the same trials."""


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def first_runs(runs: list[OneShotRun], max_runs: int | None) -> list[OneShotRun]:
    """The first ``max_runs`` runs in name order (all when None)."""
    return sorted(runs, key=lambda r: r.name)[: max_runs or None]


def check_same_trials(runs_a: list[OneShotRun], runs_b: list[OneShotRun], what_a: str, what_b: str) -> None:
    """Raise ``RunMismatchError`` unless both lists hold the same run names with equal answers, in order."""
    names_a, names_b = [r.name for r in runs_a], [r.name for r in runs_b]
    if names_a != names_b:
        raise RunMismatchError(
            f"{what_a} and {what_b} hold different runs: {names_a} vs {names_b}; prepare "
            f"{what_a} from the same all_runs.zip (python -m vhe.data.cli prepare-runs)"
        )
    for a, b in zip(runs_a, runs_b):
        if a.n_way != b.n_way or not torch.equal(torch.as_tensor(a.answer), torch.as_tensor(b.answer)):
            raise RunMismatchError(
                f"run {a.name}: {what_a} and {what_b} differ in their trials (n_way "
                f"{a.n_way} vs {b.n_way}, answers {a.answer.tolist()} vs {b.answer.tolist()})"
            )


def evaluate_runs(runs: list[OneShotRun], method: str, resolution: int) -> dict:
    """One baseline on runs: accuracy_summary over runs + per_trial, runs, resolution, method."""
    classify = METHODS[method]
    units, per_trial = [], []
    for r in runs:
        pred, _ = classify(r.support, r.query)
        hits = (pred == torch.as_tensor(r.answer)).long()
        correct = int(hits.sum())
        per_trial += hits.tolist()
        units.append(
            {"name": r.name, "n_queries": int(len(r.query)), "correct": correct, "accuracy": correct / len(r.query)}
        )
    out = accuracy_summary(units, "run")
    out.update(per_trial=per_trial, runs=units, resolution=resolution, method=method)
    return out


def baselines(runs_28: list[OneShotRun], runs_105: list[OneShotRun], max_runs: int | None = None) -> dict:
    """Every baseline at both resolutions on the first ``max_runs`` runs (name order) of each list."""
    sets = {28: first_runs(runs_28, max_runs), 105: first_runs(runs_105, max_runs)}
    if not sets[28]:
        raise RunMismatchError("no runs to evaluate")
    check_same_trials(sets[28], sets[105], "the 28x28 runs", "the 105x105 runs")
    for res, runs in sets.items():
        shapes = {tuple(r.support.shape[-2:]) for r in runs}
        if shapes != {(res, res)}:
            raise ValueError(f"the {res}x{res} runs hold images of shape {sorted(shapes)}")
    results, seconds, definitions = {}, {}, {}
    t_all = time.perf_counter()
    for res in RESOLUTIONS:
        for method in METHODS:
            key = f"{method}_{res}"
            t0 = time.perf_counter()
            results[key] = evaluate_runs(sets[res], method, res)
            seconds[key] = round(time.perf_counter() - t0, 3)
            definitions[key] = f"{DEFINITIONS[method]}, {RES_TEXT[res]}"
    seconds["total"] = round(time.perf_counter() - t_all, 3)
    return {"lake_runs": results, "definitions": definitions, "eval_seconds": seconds}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m analysis.baselines",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--runs-28", required=True, help="the prepared 28x28 runs (resources/<run>/lake_runs.pt)")
    p.add_argument("--zip", required=True, help="Lake's all_runs.zip (resources/raw/all_runs.zip)")
    p.add_argument("--out", required=True, help="JSON to write (results/<run>/metrics/baselines.json)")
    p.add_argument(
        "--max-runs",
        type=_positive_int,
        default=None,
        help="use only the first N runs in name order (the pipeline passes evaluation.max_runs)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        res = baselines(load_runs(args.runs_28), load_lake_runs(args.zip, size=105), args.max_runs)
    except (ValueError, OSError, DataIntegrityError) as e:  # RunMismatchError, a bad or missing file
        print(f"analysis.baselines: {e}", file=sys.stderr)
        return 2
    res["provenance"] = provenance()
    res["eval_seconds"]["with_loading"] = round(time.perf_counter() - t0, 3)
    write_json({k: res[k] for k in ("lake_runs", "definitions", "provenance", "eval_seconds")}, Path(args.out))
    for key, v in res["lake_runs"].items():
        print(
            f"{key}: {100 * v['accuracy']:.1f}% ({v['correct']}/{v['n_trials']}, {v['n_runs']} runs; "
            f"95% CI {100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f}%)"
        )
    print(f"wrote {args.out} in {res['eval_seconds']['with_loading']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
