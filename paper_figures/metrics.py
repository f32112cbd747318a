"""One tidy table of every number a run measured, read from the metrics JSON by exact keys.

:func:`read_run` gathers ``results/<run>/`` (which model is which from ``configs/<model>.json``,
the metrics JSON, the training histories and summaries); :func:`metrics_frame` turns the metrics
into one long-form :class:`pandas.DataFrame`, one row per number:

    model, experiment, objective, decoder, metric, set, estimator, value, ci_low, ci_high, n, K,
    unit, steps, git_commit

Every table of ``paper_figures`` is derived from this frame (``tables/metrics.csv``). The keys
read are those the evaluators define (``analysis.evaluate``, ``analysis.structured``,
``analysis.baselines``): a key that is absent is an error naming the file and the key; a key
whose value is ``null`` (not defined for the model, or not finite: see the JSON's
``not_defined`` / ``non_finite``) gives no row, and the tables show "n/a".

Metrics (``metric``; ``set`` says on what):

- class-structured models and VAEs: ``nll`` (importance-sampled -log p(X)/|X|, nats per image,
  ``K`` samples, interval +-1.96 standard errors over ``n`` classes), ``elbo``, ``neg_bound``
  (minus the training objective per image; ``set`` test / train), ``kl_c`` (mean
  KL(q(c|D) || p(c)), nats), ``accuracy`` (fraction; ``set`` validation_runs, lake_runs,
  within_alphabet_runs or episodes/<way>way_<shot>shot; one row per ``estimator``; Wilson or
  run-level 95% interval as the evaluator states; ``n`` trials; ``K`` samples per score);
- baselines (``experiment`` = baseline): ``accuracy`` on lake_runs, ``estimator`` = the baseline;
- hierarchical: ``bound`` (nats per image, higher is better), ``kl_<latent>``, ``class_bound``,
  ``bound_difference``, ``nll``, ``class_nll``, ``nll_improvement``, ``alphabet_style`` and
  ``alphabet_style_real`` (fractions); factorial: ``texture_accuracy``, ``character_accuracy``,
  ``both_accuracy`` with their ``*_chance`` and ``*_real`` (classifier on real images).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline import outputs as OUT

COLUMNS = ["model", "experiment", "objective", "decoder", "metric", "set", "estimator", "value", "ci_low", "ci_high",
           "n", "K", "unit", "steps", "git_commit"]
Z95 = 1.959963984540054
NATS, FRACTION = "nats/image", "fraction"


class MetricsError(ValueError):
    """A metrics (or history) file is malformed or lacks a key its evaluator defines."""


# --------------------------------------------------------------------------- exact keys
def need(d, path: str, where: str):
    """``d["a"]["b"]`` for ``path`` "a.b"; a missing key is a :class:`MetricsError` naming it."""
    cur = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise MetricsError(f"{where}: missing key {path!r}")
        cur = cur[part]
    return cur


def _num(v, where: str, path: str):
    """A number or None; anything else (a string, a bool) is an error."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MetricsError(f"{where}: {path!r} should be a number, got {v!r}")
    return float(v)


def _interval(v, where: str, path: str):
    if v is None:
        return None, None
    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)):
        raise MetricsError(f"{where}: {path!r} should be a [low, high] pair of numbers, got {v!r}")
    return float(v[0]), float(v[1])


# --------------------------------------------------------------------------- the run
@dataclass
class RunData:
    """What ``results/<run>/`` holds, as read (no interpretation)."""

    run_dir: Path
    models: dict = field(default_factory=dict)  # name -> {"experiment", "objective", "decoder"} (table order)
    raw: dict = field(default_factory=dict)  # metrics/<stem>.json -> dict (models, baselines, data_gap, ...)
    histories: dict = field(default_factory=dict)  # model -> DataFrame of history.csv
    train_summaries: dict = field(default_factory=dict)  # model -> dict
    wandb: dict | None = None  # the models' W&B settings (their per-model configs), if any

    @property
    def name(self) -> str:
        return self.run_dir.name


def read_json(path: Path):
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise MetricsError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise MetricsError(f"{path}: the top level should be a JSON object, got {type(data).__name__}")
    return data


def read_history(path: Path) -> pd.DataFrame:
    """history.csv as a DataFrame (numeric columns as floats, empty cells NaN)."""
    try:
        with open(path, newline="") as f:
            if not f.readline().strip():
                return pd.DataFrame()
        return pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as e:
        raise MetricsError(f"{path}: cannot read as CSV ({e})") from None


def _order(models: dict) -> list[str]:
    """Class/VAE models per decoder in the paper's objective order, then the structured models."""
    objectives, decoders = ["vae", "ns", "resample", "rescale", "vhe"], ["deconv", "pixelcnn"]

    def key(name):
        info = models[name]
        exp = info.get("experiment")
        if exp in OUT.CLASS_EXPERIMENTS:
            obj = "vae" if exp == "vae" else info.get("objective")
            return (0, decoders.index(info["decoder"]) if info.get("decoder") in decoders else 9,
                    objectives.index(obj) if obj in objectives else 9, name)
        return (1, list(OUT.STRUCTURED_EXPERIMENTS).index(exp) if exp in OUT.STRUCTURED_EXPERIMENTS else 9, 0, name)
    return sorted(models, key=key)


def _json_files(folder: Path) -> list[Path]:
    """The JSON files of ``folder``, without hidden ones: a writer killed inside
    vhe.files.atomic_path leaves its partial temporary file ``.<name>.<random>.json`` there."""
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))


def read_run(run_dir) -> RunData:
    """Read ``results/<run>/``: configs, metrics JSON, histories and training summaries."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    run = RunData(run_dir=run_dir)
    models = {}
    for path in _json_files(run_dir / "configs"):
        cfg = read_json(path)
        model = cfg.get("model")
        if isinstance(model, dict):
            models[path.stem] = {k: model.get(k) for k in ("experiment", "objective", "decoder")}
            if run.wandb is None and "wandb" in cfg:
                run.wandb = {"settings": cfg["wandb"], "run": cfg.get("run", run.name)}
    run.models = {k: models[k] for k in _order(models)}
    run.raw = {p.stem: read_json(p) for p in _json_files(run_dir / "metrics")}
    for name in run.models:
        ckpt = run_dir / "checkpoints" / name
        if (ckpt / "final" / "history.csv").is_file():  # the train rule's declared copy
            run.histories[name] = read_history(ckpt / "final" / "history.csv")
        if (ckpt / "train_summary.json").is_file():
            run.train_summaries[name] = read_json(ckpt / "train_summary.json")
    return run


# --------------------------------------------------------------------------- rows
def _row(base: dict, metric: str, value, *, set_=None, estimator=None, ci=(None, None), n=None, K=None,
         unit=NATS) -> dict:
    return {**base, "metric": metric, "set": set_, "estimator": estimator, "value": value, "ci_low": ci[0],
            "ci_high": ci[1], "n": n, "K": K, "unit": unit}


def _accuracy_rows(base, entry, where, path, set_, estimator, K) -> list[dict]:
    acc = _num(need(entry, "accuracy", where), where, f"{path}.accuracy")
    if acc is None:  # e.g. episodes skipped for too few characters
        return []
    ci = _interval(need(entry, "ci95", where), where, f"{path}.ci95")
    return [_row(base, "accuracy", acc, set_=set_, estimator=estimator, ci=ci, n=need(entry, "n_trials", where),
                 K=K, unit=FRACTION)]


def evaluate_rows(name: str, info: dict, data: dict, where: str) -> list[dict]:
    """Rows of an ``analysis.evaluate`` metrics JSON (class-structured models and VAEs)."""
    base = {"model": name, **info, "steps": need(data, "checkpoint.step", where),
            "git_commit": need(data, "provenance.git_commit", where)}
    rows = []
    K = need(data, "K", where)
    nll = _num(need(data, "nll_estimate", where), where, "nll_estimate")
    if nll is not None:
        se = _num(need(data, "nll_stderr", where), where, "nll_stderr")
        ci = (nll - Z95 * se, nll + Z95 * se) if se is not None else (None, None)
        n = need(data, "n_classes", where)
        rows.append(_row(base, "nll", nll, set_="test", ci=ci, n=n, K=K))
        elbo = _num(need(data, "elbo", where), where, "elbo")
        if elbo is not None:
            rows.append(_row(base, "elbo", elbo, set_="test", n=n, K=K))
    bounds = need(data, "bounds", where)
    if bounds is not None:
        for set_ in ("test", "train"):
            v = _num(need(bounds, f"{set_}.value", where), where, f"bounds.{set_}.value")
            if v is not None:
                rows.append(_row(base, "neg_bound", v, set_=set_, n=need(bounds, f"{set_}.n_images", where)))
    kl = need(data, "kl_c", where)
    if kl is not None:
        v = _num(need(kl, "mean", where), where, "kl_c.mean")
        if v is not None:
            rows.append(_row(base, "kl_c", v, set_="test", n=need(kl, "n_classes", where), unit="nats"))
    cl = need(data, "classification", where)
    if cl is not None:
        Kc = need(cl, "n_samples", where)
        for set_ in ("validation_runs", "lake_runs", "within_alphabet_runs"):
            for method, entry in (cl.get(set_) or {}).items():
                rows += _accuracy_rows(base, entry, where, f"classification.{set_}.{method}", set_, method, Kc)
        for key, by_method in (cl.get("episodes") or {}).items():
            for method, entry in by_method.items():
                rows += _accuracy_rows(base, entry, where, f"classification.episodes.{key}.{method}",
                                       f"episodes/{key}", method, Kc)
    return rows


#: Lake's runs baselines of analysis.baselines, in table order
BASELINES = ("pixel_nn_28", "mhd_28", "pixel_nn_105", "mhd_105")


def baseline_rows(data: dict, where: str) -> list[dict]:
    """Rows of ``metrics/baselines.json`` (``analysis.baselines``)."""
    lake = need(data, "lake_runs", where)
    rows = []
    for name in BASELINES:
        if name in lake:
            base = {"model": name, "experiment": "baseline", "objective": None, "decoder": None, "steps": None,
                    "git_commit": (data.get("provenance") or {}).get("git_commit")}
            rows += _accuracy_rows(base, lake[name], where, f"lake_runs.{name}", "lake_runs", name, None)
    return rows


def _se_row(base, metric, data, key, se_key, where, set_="evaluation", unit=NATS, K=None):
    v = _num(need(data, key, where), where, key)
    if v is None:
        return []
    se = _num(data.get(se_key), where, se_key) if se_key else None
    ci = (v - Z95 * se, v + Z95 * se) if se is not None and math.isfinite(se) else (None, None)
    return [_row(base, metric, v, set_=set_, ci=ci, K=K, unit=unit)]


def structured_rows(name: str, info: dict, data: dict, where: str) -> list[dict]:
    """Rows of an ``analysis.structured`` metrics JSON (hierarchical, factorial)."""
    base = {"model": name, **info, "steps": need(data, "checkpoint_step", where),
            "git_commit": need(data, "provenance.git_commit", where)}
    rows = []
    if info.get("experiment") == "hierarchical":
        rows += _se_row(base, "bound", data, "bound_per_image", "bound_se", where)
        for latent, v in need(data, "kl", where).items():
            rows.append(_row(base, f"kl_{latent}", _num(v, where, f"kl.{latent}"), set_="evaluation", unit="nats"))
        cm = data.get("class_model")
        if cm is not None:
            rows += _se_row({**base, "estimator": None}, "class_bound", cm, "bound_per_image", "bound_se", where)
            rows += _se_row(base, "bound_difference", data, "bound_difference", "bound_difference_se", where)
        nll = data.get("nll")
        if nll is not None:
            K = need(nll, "n_samples", where)
            rows += _se_row(base, "nll", nll, "nll_per_image", "nll_se", where, K=K)
            if "class_nll_per_image" in nll:
                rows += _se_row(base, "class_nll", nll, "class_nll_per_image", "class_nll_se", where, K=K)
                rows += _se_row(base, "nll_improvement", nll, "nll_improvement", "nll_improvement_se", where, K=K)
        style = need(data, "alphabet_style", where)
        if "skipped" not in style:
            rows.append(_row(base, "alphabet_style", _num(need(style, "accuracy", where), where,
                                                          "alphabet_style.accuracy"), set_="evaluation",
                             unit=FRACTION))
            rows.append(_row(base, "alphabet_style_chance", _num(need(style, "chance", where), where,
                                                                 "alphabet_style.chance"), unit=FRACTION))
            rows.append(_row(base, "alphabet_style_real", _num(need(style, "classifier_accuracy_real", where), where,
                                                               "alphabet_style.classifier_accuracy_real"),
                             unit=FRACTION))
    elif info.get("experiment") == "factorial":
        for part in ("texture", "character"):
            sec = need(data, part, where)
            for suffix, key in (("accuracy", "accuracy"), ("chance", "chance"), ("real", "classifier_accuracy_real")):
                rows.append(_row(base, f"{part}_{suffix}", _num(need(sec, key, where), where, f"{part}.{key}"),
                                 set_="grid", n=need(data, "cells", where), unit=FRACTION))
        rows.append(_row(base, "both_accuracy", _num(need(data, "both_accuracy", where), where, "both_accuracy"),
                         set_="grid", n=need(data, "cells", where), unit=FRACTION))
    return rows


def metrics_frame(run: RunData) -> pd.DataFrame:
    """The long-form table of every model's and baseline's numbers (see the module docstring)."""
    rows = []
    for name, info in run.models.items():
        if name not in run.raw:
            continue  # not evaluated (yet): n/a in the tables
        where = f"metrics/{name}.json"
        if info.get("experiment") in OUT.CLASS_EXPERIMENTS:
            rows += evaluate_rows(name, info, run.raw[name], where)
        elif info.get("experiment") in OUT.STRUCTURED_EXPERIMENTS:
            rows += structured_rows(name, info, run.raw[name], where)
    if "baselines" in run.raw:
        rows += baseline_rows(run.raw["baselines"], "metrics/baselines.json")
    return pd.DataFrame(rows, columns=COLUMNS).astype({"n": "Int64", "K": "Int64", "steps": "Int64"})


def value(df: pd.DataFrame, model: str | None, metric: str, set_: str | None = None, estimator: str | None = None):
    """The one row of ``df`` for (model, metric[, set, estimator]) as a Series, or None."""
    if model is None:
        return None
    sel = (df["model"] == model) & (df["metric"] == metric)
    if set_ is not None:
        sel &= df["set"] == set_
    if estimator is not None:
        sel &= df["estimator"] == estimator
    r = df[sel]
    if len(r) > 1:
        raise MetricsError(f"{model}: {len(r)} rows for {metric} {set_} {estimator}")
    return None if r.empty else r.iloc[0]


def per_trial(run: RunData, model: str, set_: str, estimator: str) -> list[int]:
    """Per-trial outcomes (1 = correct) of a model (or baseline) for the paired tests."""
    if model in BASELINES:
        return need(run.raw["baselines"], f"lake_runs.{model}.per_trial", "metrics/baselines.json")
    return need(run.raw[model], f"classification.{set_}.{estimator}.per_trial", f"metrics/{model}.json")
