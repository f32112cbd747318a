"""Every table of a run, derived with pandas from the long-form metrics frame
(:func:`paper_figures.metrics.metrics_frame`), and the one table writer.

- ``objectives``: objectives x decoders (test NLL, minus the bound, KL(c), one-shot accuracies
  with the headline estimator) beside the paper's numbers;
- ``classification``: every estimator on Lake's runs and the validation runs, and the baselines;
- ``structured``: the hierarchical and factorial models' numbers;
- ``seeds``: models trained with several seeds (config ``replicates``): each seed's number, the
  mean, standard deviation and range across seeds;
- ``training``: steps, best validation bound and wall time per model (summary page);
- ``learning_curves``: the trainer's validation accuracy and bound against steps.

:func:`write_table` writes a display table as Markdown (``to_markdown``), LaTeX
(``Styler.to_latex``) and, with its machine-readable twin, CSV (``to_csv``; empty = not measured).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vhe.files import atomic_write_text

from .metrics import BASELINES, INTERVAL_METRICS, RunData, need, value
from .paper_numbers import paper_value

NA = "n/a"
#: in place of an interval that is not defined (fewer than 2 units)
NO_INTERVAL = "[–]"
#: objective rows of the tables, in the paper's order: key -> label
OBJECTIVES = {"vae": "VAE", "ns": "NS", "resample": "resample only", "rescale": "rescale only", "vhe": "VHE"}
#: decoder columns: key -> label
DECODERS = {"deconv": "deconv", "pixelcnn": "PixelCNN"}
#: estimators in order of preference when validation accuracies tie
ESTIMATORS = ("conditional", "symmetric", "marginal_ratio", "ns_kl")
BASELINE_LABELS = {
    "pixel_nn_28": "pixel nearest neighbour (28x28)",
    "mhd_28": "Lake's MHD (28x28)",
    "pixel_nn_105": "pixel nearest neighbour (105x105)",
    "mhd_105": "Lake's MHD (105x105)",
}


def headline_of(headline, decoder: str | None) -> str:
    """The headline estimator of ``decoder``: ``headline`` is {decoder: estimator}
    (:func:`paper_figures.claims.choose_headline`) or one estimator for every decoder."""
    if isinstance(headline, str):
        return headline
    return headline.get(decoder) or ESTIMATORS[0]


def headline_label(headline) -> str:
    """'symmetric' when every decoder has the same headline estimator, else
    'deconv: symmetric, PixelCNN: ns_kl'."""
    if isinstance(headline, str):
        return headline
    if len(set(headline.values())) == 1:
        return next(iter(headline.values()))
    return ", ".join(f"{DECODERS.get(d, d)}: {e}" for d, e in headline.items())


# --------------------------------------------------------------------------- writing
def write_table(
    display: pd.DataFrame,
    tables: Path,
    stem: str,
    *,
    title: str,
    note: str = "",
    csv: pd.DataFrame | None = None,
    formats=("csv", "md", "tex"),
) -> None:
    """``tables/<stem>.{csv,md,tex}``: ``csv`` (default: ``display``) as CSV, ``display`` as a
    Markdown section (``title``, the table, ``note``) and as a LaTeX table captioned ``note``."""
    tables = Path(tables)
    if "csv" in formats:
        atomic_write_text((csv if csv is not None else display).to_csv(index=False), tables / f"{stem}.csv")
    if "md" in formats:
        md = f"## {title}\n\n" + _markdown(display) + "\n" + (f"\n{note}\n" if note else "")
        atomic_write_text(md, tables / f"{stem}.md")
    if "tex" in formats:
        caption = (
            note.replace("\\", "/")
            .replace("%", r"\%")
            .replace("_", r"\_")
            .replace("|", r"$|$")
            .replace("&", r"\&")
            .replace("#", r"\#")
        )
        latex = (
            display.style.hide(axis="index")
            .format(escape="latex")
            .format_index(escape="latex", axis=1)
            .to_latex(caption=caption or None, label=f"tab:{stem}", hrules=True)
        )
        atomic_write_text(latex, tables / f"{stem}.tex")


def _markdown(df: pd.DataFrame) -> str:
    if df.empty and not len(df.columns):
        return "(no rows)\n"
    return df.to_markdown(index=False, disable_numparse=True) + "\n"


def fmt(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return NA
    return f"{v:.{digits}f}"


def fmt_ci(r: pd.Series | None, scale: float = 1.0, digits: int = 1) -> str:
    """'value [low, high]' of a frame row (``scale`` 100 for percent), or n/a; 'value [–]' where a
    metric that carries an interval has none (fewer than 2 units: analysis.stats)."""
    if r is None or pd.isna(r["value"]):
        return NA
    v = f"{scale * r['value']:.{digits}f}"
    if pd.notna(r["ci_low"]) and pd.notna(r["ci_high"]):
        return f"{v} [{scale * r['ci_low']:.{digits}f}, {scale * r['ci_high']:.{digits}f}]"
    return f"{v} {NO_INTERVAL}" if r.get("metric") in INTERVAL_METRICS else v


# --------------------------------------------------------------------------- the cells
def cell_model(run: RunData, objective: str, decoder: str) -> str | None:
    """The model at (objective row, decoder column) of the objectives table, or None; never a
    replicate (the same model trained with another seed: :func:`seeds_table`). Where several models
    fill the cell (e.g. the same objective in two network families, config/cpu-spatial.yaml), the
    one with the profile's name for the cell (``<objective>_<decoder>``, ``vae_<decoder>``), else the
    first in config order."""
    found = []
    for name, info in run.models.items():
        if run.is_replicate(name):
            continue
        key = ("vae" if info.get("experiment") == "vae" else info.get("objective"), info.get("decoder"))
        if key == (objective, decoder) and info.get("experiment") in ("vae", "class"):
            found.append(name)
    canonical = f"{objective}_{decoder}"
    return canonical if canonical in found else (found[0] if found else None)


#: accuracy columns of the objectives table: key -> (set, CSV column, display column)
ACC_COLUMNS = {
    "lake_acc": ("lake_runs", "lake_20way_1shot_acc", "Lake runs 20-way 1-shot (%)"),
    "within_acc": ("within_alphabet_runs", "within_alphabet_20way_1shot_acc", "within-alphabet 20-way 1-shot (%)"),
    "way5_acc": ("episodes/5way_1shot", "episodes_5way_1shot_acc", "5-way 1-shot (%)"),
}
_PAPER_COLUMN = {"nll": "nll_nats_per_image", "kl_c": "kl_c_nats", **{k: v[1] for k, v in ACC_COLUMNS.items()}}


def _r(x, d):
    return None if x is None or pd.isna(x) else round(float(x), d)


def objectives(run: RunData, df: pd.DataFrame, headline) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(CSV frame, display frame, note) of the objectives x decoders table; accuracies with each
    decoder's headline estimator (``headline``: see :func:`headline_of`)."""
    records, display = [], []
    for dec, dec_label in DECODERS.items():
        for obj, obj_label in OBJECTIVES.items():
            m = cell_model(run, obj, dec)
            nll, bound, kl = (
                value(df, m, "nll", "test"),
                value(df, m, "neg_bound", "test"),
                value(df, m, "kl_c", "test"),
            )
            accs = {k: value(df, m, "accuracy", s, headline_of(headline, dec)) for k, (s, _, _) in ACC_COLUMNS.items()}
            rec = {
                "objective": obj_label,
                "decoder": dec_label,
                "model": m,
                "nll_nats_per_image": _r(nll["value"], 4) if nll is not None else None,
                "nll_K": int(nll["K"]) if nll is not None else None,
                "bound_nats_per_image": _r(bound["value"], 4) if bound is not None else None,
                "kl_c_nats": _r(kl["value"], 4) if kl is not None else None,
            }
            for key, (_, col, _) in ACC_COLUMNS.items():
                a = accs[key]
                rec[col] = _r(100 * a["value"], 2) if a is not None else None
                rec[col + "_ci95_low"] = _r(100 * a["ci_low"], 2) if a is not None else None
                rec[col + "_ci95_high"] = _r(100 * a["ci_high"], 2) if a is not None else None
            for key, col in _PAPER_COLUMN.items():
                pv = paper_value(obj, dec, key)
                rec["paper_" + col] = pv
                rec["diff_" + col] = None if pv is None or rec[col] is None else round(rec[col] - pv, 2)
            records.append(rec)
            row = {
                "objective": obj_label,
                "decoder": dec_label,
                "test NLL (nats/image)": fmt(rec["nll_nats_per_image"]),
                "test bound (nats/image)": fmt(rec["bound_nats_per_image"]),
                "KL(c) (nats)": fmt(rec["kl_c_nats"]),
            }
            for key, (_, _, label) in ACC_COLUMNS.items():
                row[label] = fmt_ci(accs[key], 100)
            display.append((obj, dec, row, rec))
    table = pd.DataFrame(records)
    paper_cols = [c for c in _PAPER_COLUMN.values() if table["paper_" + c].notna().any()]
    table = table.drop(
        columns=[p + c for c in _PAPER_COLUMN.values() if c not in paper_cols for p in ("paper_", "diff_")]
    )
    rows = []
    for obj, dec, row, rec in display:
        for key, col in _PAPER_COLUMN.items():
            if col not in paper_cols:
                continue
            label = {"nll": "NLL", "kl_c": "KL(c)"}.get(key) or ACC_COLUMNS[key][2].replace(" (%)", "")
            pv, diff = rec["paper_" + col], rec["diff_" + col]
            row[f"paper: {label}"] = fmt(pv, 1)
            row[f"difference ({label})"] = NA if diff is None else f"{diff:+.1f}"
        rows.append(row)
    ks = sorted({int(k) for k in table["nll_K"].dropna()})
    k_note = f"K = {', '.join(map(str, ks))} importance samples" if ks else "K: n/a"
    note = (
        f"Test NLL: importance-sampled estimate of -log p(X)/|X| on evaluation classes ({k_note}); "
        "bound: minus the training objective on the same classes (nats per image); KL(c): mean "
        "KL(q(c|D) || p(c)) in nats; accuracies in % with 95% intervals in brackets, with the headline "
        f"classification estimator of each decoder ({headline_label(headline)}). Paper numbers: arXiv 1807.08919 (see "
        "paper_figures/paper_numbers.py); n/a = not measured or not reported."
    )
    return table.astype(object).where(table.notna(), None), pd.DataFrame(rows), note


def classification_long(run: RunData, df: pd.DataFrame, headline) -> pd.DataFrame:
    """The classification CSV: one row per (class model or baseline, set, estimator); ``headline``
    True on the rows of each model's decoder's headline estimator. Replicates (other seeds) are
    left out: :func:`seeds_table`."""
    class_models = [n for n, i in run.models.items() if i.get("experiment") == "class" and not run.is_replicate(n)]
    acc = df[(df["metric"] == "accuracy") & (df["model"].isin(class_models) | (df["experiment"] == "baseline"))]
    out = acc.rename(columns={"value": "accuracy", "n": "n_trials"})[
        [
            "model",
            "experiment",
            "objective",
            "decoder",
            "set",
            "estimator",
            "accuracy",
            "ci_low",
            "ci_high",
            "n_trials",
            "K",
        ]
    ]
    is_headline = [
        e == headline_of(headline, d) and x != "baseline"
        for e, d, x in zip(out["estimator"], out["decoder"], out["experiment"])
    ]
    return out.assign(headline=is_headline)


HEADLINE_COLUMN = "Lake runs: headline estimator"


def classification(run: RunData, df: pd.DataFrame, headline, reason: str) -> tuple[pd.DataFrame, str]:
    """(display frame, note): rows are class models and baselines; columns Lake's runs with the
    model's decoder's headline estimator (named in the cell), Lake's runs per estimator, then the
    validation runs per estimator; cells 'acc [low, high]' in %."""
    long = classification_long(run, df, headline)
    models = long[long["experiment"] != "baseline"]
    estimators = [e for e in ESTIMATORS if e in set(models["estimator"])]
    rows = []
    for name in models["model"].unique():
        est = headline_of(headline, run.models.get(name, {}).get("decoder"))
        r = value(df, name, "accuracy", "lake_runs", est)
        row = {"model": name, HEADLINE_COLUMN: f"{fmt_ci(r, 100)} ({est})" if r is not None else NA}
        for set_, label in (("lake_runs", "Lake runs"), ("validation_runs", "validation runs")):
            for e in estimators:
                row[f"{label}: {e}"] = fmt_ci(value(df, name, "accuracy", set_, e), 100)
        rows.append(row)
    disp = pd.DataFrame(rows, columns=["model", HEADLINE_COLUMN] if not rows else None)
    for name in BASELINES:
        r = value(df, name, "accuracy", "lake_runs", name)
        if r is not None:
            row = {c: "" for c in disp.columns}
            row.update({"model": BASELINE_LABELS[name], HEADLINE_COLUMN: fmt_ci(r, 100)})
            disp = pd.concat([disp, pd.DataFrame([row])], ignore_index=True)
    lake = models[models["set"] == "lake_runs"]
    trials = f" ({int(lake['n_trials'].iloc[0])} trials)" if not lake.empty else ""
    ks = ", ".join(f"{d}: K = {int(k)}" for d, k in models.groupby("decoder")["K"].first().items())
    note = (
        f"Accuracy in % [95% interval] on Lake's within-alphabet 20-way one-shot runs{trials} and on "
        f"within-alphabet runs of the validation characters ({ks or 'K: n/a'} samples per score). Headline "
        f"estimator ({headline_label(headline)}): {reason}. Baselines on the same runs: pixel nearest "
        f"neighbour (cosine) and Lake's modified Hausdorff distance (his demo: 38.8% error = 61.2% accuracy on "
        f"the 105x105 originals)."
    )
    return disp, note


#: structured metrics in display order: metric -> (label, scale, digits)
STRUCTURED = {
    "bound": ("bound on evaluation alphabets (nats/image, higher is better)", 1, 2),
    "class_bound": ("class-structured model's bound on the same targets", 1, 2),
    "bound_difference": ("bound difference (hierarchical - class)", 1, 2),
    "nll": ("-log p(X)/|X| (nats/image)", 1, 2),
    "class_nll": ("class-structured model's -log p(X)/|X|", 1, 2),
    "nll_improvement": ("-log p improvement (class - hierarchical)", 1, 2),
    "kl_a": ("KL(a) (nats)", 1, 2),
    "kl_c": ("KL(c) (nats)", 1, 2),
    "kl_z": ("KL(z) (nats)", 1, 2),
    "kl_t": ("KL(t) (nats)", 1, 2),
    "alphabet_style": ("new characters classified as their alphabet (%)", 100, 1),
    "alphabet_style_chance": ("chance (%)", 100, 1),
    "alphabet_style_real": ("classifier on real images (%)", 100, 1),
    "texture_accuracy": ("grid cells with the column's texture (%)", 100, 1),
    "texture_chance": ("texture chance (%)", 100, 1),
    "texture_real": ("texture classifier on real images (%)", 100, 1),
    "character_accuracy": ("grid cells with the row's character (%)", 100, 1),
    "character_chance": ("character chance (%)", 100, 1),
    "character_real": ("character classifier on real images (%)", 100, 1),
    "both_accuracy": ("both right (%)", 100, 1),
    "nll_context": ("-log p(X | other characters of its alphabet)/|X| (nats/image)", 1, 2),
    "nll_no_context": ("-log p(X)/|X| without alphabet context (nats/image)", 1, 2),
    "context_gain": ("alphabet context gain, per image (nats, paired over characters)", 1, 2),
    "context_gain_vs_class": ("gain over the class-structured model, per image (nats)", 1, 2),
    "context_helps_share": ("characters that alphabet context helps (%)", 100, 1),
    "oneshot_accuracy": ("one-shot accuracy of a new character (%)", 100, 1),
    "oneshot_chance": ("one-shot chance (%)", 100, 1),
    "alphabet_style_prior_a": ("alphabet style, control a ~ p(a) (%)", 100, 1),
    "alphabet_style_class_model": ("alphabet style, control: class-structured model (%)", 100, 1),
    "t_swap_follows_t": ("t-swap: cell texture follows the swapped t (%)", 100, 1),
    "t_swap_changed": ("t-swap: cell texture changed (%)", 100, 1),
    "t_swap_chance": ("t-swap chance (%)", 100, 1),
    "texture_follows_row": ("cells with the row image's texture (leak through c) (%)", 100, 1),
    "texture_follows_row_chance": ("row-texture chance (%)", 100, 1),
    "texture_real_flip2pct": ("texture classifier, real images with 2% flipped pixels (%)", 100, 1),
    "texture_real_flip5pct": ("texture classifier, real images with 5% flipped pixels (%)", 100, 1),
}


def structured(run: RunData, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(CSV frame, display frame, note) of the hierarchical and factorial models' numbers (not their
    replicates: :func:`seeds_table`)."""
    names = [
        n
        for n, i in run.models.items()
        if i.get("experiment") in ("hierarchical", "factorial") and not run.is_replicate(n)
    ]
    sub = df[df["model"].isin(names)]
    order = {m: i for i, m in enumerate(STRUCTURED)}
    sub = sub.assign(_o=sub["metric"].map(lambda m: order.get(m, len(order)))).sort_values(
        ["model", "_o"], key=lambda s: s.map({n: i for i, n in enumerate(names)}) if s.name == "model" else s
    )
    sub = sub.drop(columns="_o")
    disp = pd.DataFrame(
        [
            {
                "model": r["model"],
                "steps": "" if pd.isna(r["steps"]) else int(r["steps"]),
                "metric": STRUCTURED.get(r["metric"], (r["metric"], 1, 3))[0],
                "value": fmt_ci(
                    r, STRUCTURED.get(r["metric"], ("", 1, 3))[1], STRUCTURED.get(r["metric"], ("", 1, 3))[2]
                ),
            }
            for _, r in sub.iterrows()
        ],
        columns=["model", "steps", "metric", "value"],
    )
    note = (
        "Hierarchical: bounds and -log p on the evaluation alphabets, compared with the class-structured "
        "model of the same objective and decoder on the same targets (95% intervals from paired standard "
        "errors); alphabet style: an alphabet classifier trained on real images applied to new characters "
        "c ~ p(c|a). Factorial: generated grid cells classified by texture (column) and character (row)."
    )
    return (
        sub[["model", "experiment", "metric", "set", "value", "ci_low", "ci_high", "n", "K", "unit", "steps"]],
        disp,
        note,
    )


#: the numbers of a model compared across its seeds, per experiment: (metric, set, estimator; None: the
#: decoder's headline estimator for accuracies, none otherwise)
SEED_METRICS = {
    "class": (("accuracy", "lake_runs", None), ("nll", "test", None), ("kl_c", "test", None)),
    "vae": (("nll", "test", None),),
    "hierarchical": (
        ("bound", "evaluation", None),
        ("nll_improvement", "evaluation", None),
        ("alphabet_style", "evaluation", None),
    ),
    "factorial": (
        ("texture_accuracy", "grid", None),
        ("character_accuracy", "grid", None),
        ("both_accuracy", "grid", None),
    ),
}
SEED_OWN_COLUMN = "the model's own seed"
SEED_COLUMNS = [
    "model",
    "experiment",
    "objective",
    "decoder",
    "metric",
    "set",
    "estimator",
    "unit",
    "n_seeds",
    "seeds",
    "base_seed",
    "base_value",
    "mean",
    "sd",
    "min",
    "max",
    "values",
]


def seed_summary(values: dict) -> dict:
    """{mean, sd, min, max, n} of {seed: value} (``sd``: the sample standard deviation, ddof 1;
    None with fewer than 2 seeds)."""
    v = pd.Series(list(values.values()), dtype=float)
    return {
        "n": len(v),
        "mean": float(v.mean()) if len(v) else None,
        "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
        "min": float(v.min()) if len(v) else None,
        "max": float(v.max()) if len(v) else None,
    }


def seed_values(
    run: RunData, df: pd.DataFrame, name: str, metric: str, set_: str | None, estimator: str | None
) -> dict[int, float]:
    """{seed: value} of ``metric`` for ``name`` and its replicates (seeds without the number left out)."""
    out = {}
    for seed, model in run.seed_models(name).items():
        r = value(df, model, metric, set_, estimator)
        if r is not None and pd.notna(r["value"]):
            out[seed] = float(r["value"])
    return out


def seeds_table(run: RunData, df: pd.DataFrame, headline) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(CSV frame, display frame, note): for every model trained with more than one seed (config
    ``replicates``: the model and its replicates ``<model>_seed<k>``), each of its headline numbers
    (:data:`SEED_METRICS`) per seed, and their mean, sample standard deviation and range across seeds.
    Fractions are shown in % (the CSV keeps the units of ``metrics.csv``)."""
    records, display = [], []
    for name, info in run.models.items():
        seeds = run.seed_models(name)
        if run.is_replicate(name) or len(seeds) < 2:
            continue
        for metric, set_, est in SEED_METRICS.get(info.get("experiment"), ()):
            if metric == "accuracy" and est is None:
                est = headline_of(headline, info.get("decoder"))
            vals = seed_values(run, df, name, metric, set_, est)
            if not vals:
                continue
            s = seed_summary(vals)
            base = run.seeds.get(name, 0)
            unit = next((r["unit"] for r in [value(df, name, metric, set_, est)] if r is not None), None)
            records.append(
                {
                    "model": name,
                    **{k: info.get(k) for k in ("experiment", "objective", "decoder")},
                    "metric": metric,
                    "set": set_,
                    "estimator": est,
                    "unit": unit,
                    "n_seeds": s["n"],
                    "seeds": " ".join(map(str, vals)),
                    "base_seed": base,
                    "base_value": vals.get(base),
                    "mean": s["mean"],
                    "sd": s["sd"],
                    "min": s["min"],
                    "max": s["max"],
                    "values": "; ".join(f"{k}: {v:.6g}" for k, v in vals.items()),
                }
            )
            scale = 100 if metric.endswith("accuracy") or metric == "alphabet_style" else 1
            digits = 1 if scale == 100 else 2
            f = lambda x: fmt(None if x is None else scale * x, digits)  # noqa: E731
            label = (
                STRUCTURED.get(metric, (metric, 1, 2))[0]
                if info.get("experiment") in ("hierarchical", "factorial")
                else {
                    "accuracy": f"Lake runs accuracy (%, {est})",
                    "nll": "test NLL (nats/image)",
                    "kl_c": "KL(c) (nats)",
                }[metric]
            )
            display.append(
                {
                    "model": name,
                    "metric": label,
                    "seeds": f"{s['n']} ({', '.join(map(str, vals))})",
                    SEED_OWN_COLUMN: f"{f(vals.get(base))} (seed {base})",
                    "mean ± sd": f"{f(s['mean'])} ± {f(s['sd'])}",
                    "min–max": f"{f(s['min'])}–{f(s['max'])}",
                    "per seed": ", ".join(f"{k}: {f(v)}" for k, v in vals.items()),
                }
            )
    csv_frame = pd.DataFrame(records, columns=SEED_COLUMNS)
    disp = pd.DataFrame(
        display, columns=["model", "metric", "seeds", SEED_OWN_COLUMN, "mean ± sd", "min–max", "per seed"]
    )
    if not records:
        note = (
            "No model was trained with more than one seed (config `replicates`: models trained again "
            "with other seeds); every number of this run comes from one training seed."
        )
    else:
        note = (
            "Models trained with several seeds (config `replicates`: <model>_seed<k> is <model> trained "
            "again with seed k): each seed's number, the mean ± sample standard deviation and the range "
            "across the seeds measured; accuracies in % with each decoder's headline estimator "
            f"({headline_label(headline)}). The other tables show the model's own seed."
        )
    return csv_frame.astype(object).where(csv_frame.notna(), None), disp, note


def training(run: RunData) -> pd.DataFrame:
    """Steps, best validation bound and wall time per model (from train_summary.json, exact keys)."""
    rows = []
    for name, info in run.models.items():
        s = run.train_summaries.get(name)
        if s is not None:
            need(s, "steps", f"checkpoints/{name}/train_summary.json")
        objective = "-" if info.get("experiment") == "vae" else (info.get("objective") or NA)  # no class latent
        rows.append(
            {
                "model": name,
                "experiment": info.get("experiment") or NA,
                "objective": objective,
                "decoder": info.get("decoder") or NA,
                "steps": str(s["steps"]) if s else NA,
                "best val bound": fmt(s["best_val_bound"]) if s and s.get("best_val_bound") is not None else NA,
                "wall time (s)": fmt(s["wall_time_s"], 0) if s and s.get("wall_time_s") is not None else NA,
            }
        )
    return pd.DataFrame(
        rows, columns=["model", "experiment", "objective", "decoder", "steps", "best val bound", "wall time (s)"]
    )


def learning_curves(run: RunData) -> pd.DataFrame:
    """model, experiment, objective, decoder, step, time_s, val_acc, val_bound (rows with either)."""
    cols = ["model", "experiment", "objective", "decoder", "step", "time_s", "val_acc", "val_bound"]
    parts = []
    for name, hist in run.histories.items():
        if hist.empty or "step" not in hist:
            continue
        h = hist.reindex(columns=["step", "time_s", "val_acc", "val_bound"])
        h = h[h["val_acc"].notna() | h["val_bound"].notna()]
        info = run.models.get(name, {})
        parts.append(
            h.assign(
                model=name,
                experiment=info.get("experiment"),
                objective=info.get("objective"),
                decoder=info.get("decoder"),
            )
        )
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def learning_curve_table(curves: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The learning curves side by side: one row per step at which any model measured its one-shot
    accuracy, one column per such model (ordered by decoder, then objective), cells "acc % / bound"
    (validation accuracy in %, validation bound in nats per image at the same step); "-" where a
    model has no point. Returns (table, note)."""
    pts = curves[curves["val_acc"].notna()] if len(curves) else curves
    if pts.empty:
        return pd.DataFrame(columns=["step"]), "No model measured a one-shot learning curve."
    order = pts.drop_duplicates("model").sort_values(["decoder", "objective", "model"], na_position="last")["model"]
    cell = pts.assign(
        cell=[
            f"{100 * a:.0f}% / {fmt(b, 1)}" if pd.notna(b) else f"{100 * a:.0f}% / {NA}"
            for a, b in zip(pts["val_acc"], pts["val_bound"])
        ]
    )
    wide = cell.pivot_table(index="step", columns="model", values="cell", aggfunc="last").reindex(columns=list(order))
    wide = wide.fillna("-").reset_index()
    wide["step"] = wide["step"].astype(int).astype(str)
    wide.columns.name = None
    note = (
        "One-shot accuracy on the trainer's within-alphabet runs of validation characters "
        "(train.one_shot_curve) / validation bound in nats per image, at the same step."
    )
    return wide, note
