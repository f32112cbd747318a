"""One tidy table of every number a run measured, read from the metrics JSON by exact keys.

:func:`read_run` gathers ``results/<run>/`` (which model is which from ``configs/<model>.json``,
with its training seed and, for a model trained again with another seed, ``replicate_of``; the
metrics JSON, the training histories and summaries); :func:`metrics_frame` turns the metrics
into one long-form :class:`pandas.DataFrame`, one row per number:

    model, experiment, objective, decoder, metric, set, estimator, value, ci_low, ci_high, n, K,
    unit, steps, git_commit

Every table of ``paper_figures`` is derived from this frame (``tables/metrics.csv``). The keys
read are those the evaluators define (``analysis.evaluate``, ``analysis.structured``,
``analysis.baselines``): a key that is absent is an error naming the file and the key; a key
whose value is ``null`` (not defined for the model, or not finite: see the JSON's
``not_defined`` / ``non_finite``) gives no row, and the tables show "n/a". One evaluator's rows
are :mod:`analysis.metric_rows`' (the evaluators log the same rows to W&B); this module gathers
them for a whole run.

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
  ``alphabet_style_real`` (fractions); the alphabet-context measures (analysis.hierarchical):
  ``nll_context`` and ``nll_no_context`` (-log p(X | C)/|X| and -log p(X)/|X|, nats per image, ``n``
  characters, ``K`` samples), ``context_gain`` (no context minus context) and
  ``context_gain_vs_class`` (the class model minus context; nats per image, positive = the
  alphabet context helps, 95% interval paired over characters), ``context_helps_share``,
  ``oneshot_accuracy`` (set within_alphabet, ``estimator`` with_context, prior_a, no_context or
  class_model; Wilson interval over ``n`` trials) with ``oneshot_chance``, and
  ``alphabet_style_prior_a`` / ``alphabet_style_class_model`` (the style measure of generators
  that ignore the alphabet, the controls; like ``alphabet_style`` with a percentile bootstrap
  interval over ``n`` alphabets) and ``alphabet_style_chance``; factorial: ``texture_accuracy``, ``character_accuracy``,
  ``both_accuracy`` with their ``*_chance`` and ``*_real`` (classifier on real images).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.metric_rows import (
    BASELINES,
    COLUMNS,
    MetricsError,
    baseline_rows,
    evaluate_rows,  # noqa: F401
    need,
    structured_rows,
)
from analysis.stats import Z95  # noqa: F401 (the statistics every table uses)
from pipeline import outputs as OUT

#: the hierarchical model's alphabet measures (analysis.metric_rows' rows of context_nll,
#: oneshot_context and alphabet_style), each with its 95% interval: normal over characters
#: (nats/image, the gains paired), Wilson over trials, percentile bootstrap over alphabets
HIERARCHICAL_CONTEXT_METRICS = frozenset(
    {
        "nll_context",
        "nll_no_context",
        "context_gain",
        "context_gain_vs_class",
        "oneshot_accuracy",
        "alphabet_style",
        "alphabet_style_prior_a",
        "alphabet_style_class_model",
    }
)

#: metrics whose rows carry a 95% interval; a null one (fewer than 2 units: analysis.stats) shows as "[–]"
INTERVAL_METRICS = frozenset(
    {"nll", "accuracy", "bound", "class_bound", "bound_difference", "class_nll", "nll_improvement"}
    | HIERARCHICAL_CONTEXT_METRICS
)


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
    seeds: dict = field(default_factory=dict)  # model -> its training seed (the per-model config's seed)
    replicate_of: dict = field(default_factory=dict)  # replicate -> the model it trains again with another seed

    @property
    def name(self) -> str:
        return self.run_dir.name

    def is_replicate(self, name) -> bool:
        return name in self.replicate_of

    def seed_models(self, name: str | None) -> dict[int, str]:
        """{training seed: model} of ``name`` and its replicates (config ``replicates``), by seed;
        {} for None."""
        if name is None:
            return {}
        out = {self.seeds.get(name, 0): name}
        for rep, of in self.replicate_of.items():
            if of == name:
                out.setdefault(self.seeds.get(rep, 0), rep)
        return dict(sorted(out.items()))


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
            return (
                0,
                decoders.index(info["decoder"]) if info.get("decoder") in decoders else 9,
                objectives.index(obj) if obj in objectives else 9,
                name,
            )
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
            seed = cfg.get("seed", 0)  # the schema's default when a config leaves it out
            run.seeds[path.stem] = int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else 0
            if isinstance(model.get("replicate_of"), str):
                run.replicate_of[path.stem] = model["replicate_of"]
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


# --------------------------------------------------------------------------- the table
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
