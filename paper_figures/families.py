"""The two network families side by side: each class-structured model of the vector family (a vector
class latent c, the default) beside its spatial counterpart (``nets.family: spatial``,
:mod:`vhe.nets.spatial`; docs/design.md) of the same objective, decoder and training seed.

Pairs are found from the models' configs (``configs/<model>.json``: experiment, objective, decoder,
seed and ``model.nets.family``), never from their names; replicates (config ``replicates``: the
same model trained again with another seed) are left out. Accuracies use each decoder's headline
estimator (:func:`paper_figures.claims.choose_headline`, chosen on the validation runs), and the
two families are compared on the same trials of Lake's runs with McNemar's exact test
(:func:`paper_figures.claims.paired_by_seed`). A run without a spatial model gives an empty table.

Step time is the trainer's own: ``ms_per_step`` of ``checkpoints/<model>/train_summary.json`` (the
seconds spent in training steps over the steps trained, in ms; validation, learning curves and
checkpoints are not counted). A summary without it falls back to its ``train_time_s`` over
``steps``, and one without either to Snakemake's benchmark of the train job
(``benchmarks/train/<model>.tsv``, column ``s``: the whole job, start-up and validation included)
over ``steps``; the table's note says where a fallback was used.
"""

from __future__ import annotations

import csv

import pandas as pd

from .claims import paired_by_seed
from .metrics import RunData, read_json, value
from .tables import DECODERS, NA, OBJECTIVES, fmt, fmt_ci, headline_label, headline_of

#: the network families (schema ``nets.family``); vector is the default
FAMILIES = ("vector", "spatial")
#: where a model's step time came from -> how the note describes it
STEP_TIME_SOURCES = {
    "ms_per_step": "train_summary.json ms_per_step",
    "train_time_s": "train_summary.json train_time_s / steps",
    "benchmark": "Snakemake benchmark benchmarks/train/<model>.tsv (s) / steps",
}
#: per-family columns of the CSV (each prefixed ``vector_`` / ``spatial_``)
FAMILY_COLUMNS = (
    "model",
    "lake_acc_pct",
    "lake_acc_ci95_low",
    "lake_acc_ci95_high",
    "validation_acc_pct",
    "validation_acc_ci95_low",
    "validation_acc_ci95_high",
    "nll_nats_per_image",
    "bound_nats_per_image",
    "kl_c_nats",
    "ms_per_step",
    "step_time_source",
    "steps",
    "train_time_s",
)
COLUMNS = [
    "objective",
    "decoder",
    "seed",
    "estimator",
    *(f"{f}_{c}" for f in FAMILIES for c in FAMILY_COLUMNS),
    "lake_trials",
    "mcnemar_p",
    "spatial_right_vector_wrong",
    "vector_right_spatial_wrong",
]


def model_family(run: RunData, name: str) -> str:
    """``nets.family`` of ``configs/<name>.json``: the model's merged nets (``model.nets``), else the
    config's global ``nets``; "vector" where unset (the schema's default, which
    ``experiments.config.without_inactive_settings`` leaves out of a vector model's config)."""
    cfg = read_json(run.run_dir / "configs" / f"{name}.json")
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    nets = model.get("nets") if isinstance(model.get("nets"), dict) else cfg.get("nets")
    family = nets.get("family") if isinstance(nets, dict) else None
    return family if isinstance(family, str) else "vector"


def family_pairs(run: RunData) -> list[dict]:
    """[{objective, decoder, seed, vector, spatial}]: per (objective, decoder), the first class model
    of each family (in table order) with the same training seed; replicates are never paired. In the
    tables' order (decoder, then objective)."""
    by_key: dict[tuple, dict[str, str]] = {}
    for name, info in run.models.items():
        if info.get("experiment") != "class" or run.is_replicate(name):
            continue
        key = (info.get("objective"), info.get("decoder"), run.seeds.get(name, 0))
        by_key.setdefault(key, {}).setdefault(model_family(run, name), name)
    pairs, seen = [], set()
    for (obj, dec, seed), models in by_key.items():
        if (obj, dec) in seen or not all(f in models for f in FAMILIES):
            continue
        seen.add((obj, dec))
        pairs.append({"objective": obj, "decoder": dec, "seed": seed, **{f: models[f] for f in FAMILIES}})
    dec_order, obj_order = list(DECODERS), list(OBJECTIVES)

    def rank(p):
        return (
            dec_order.index(p["decoder"]) if p["decoder"] in dec_order else len(dec_order),
            obj_order.index(p["objective"]) if p["objective"] in obj_order else len(obj_order),
        )

    return sorted(pairs, key=rank)


def _benchmark_seconds(run: RunData, name: str) -> float | None:
    """Seconds of the last train job of ``name`` (Snakemake's benchmark TSV, column ``s``), or None."""
    path = run.run_dir / "benchmarks" / "train" / f"{name}.tsv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    try:
        return float(rows[-1]["s"]) if rows and rows[-1].get("s") not in (None, "") else None
    except ValueError:
        return None


def steps_trained(run: RunData, name: str) -> int | None:
    """Steps trained: ``steps`` of train_summary.json, else the last step of history.csv; None if neither."""
    s = run.train_summaries.get(name) or {}
    if isinstance(s.get("steps"), (int, float)) and not isinstance(s.get("steps"), bool):
        return int(s["steps"])
    hist = run.histories.get(name)
    if hist is not None and "step" in hist and hist["step"].notna().any():
        return int(hist["step"].max())
    return None


def step_time(run: RunData, name: str) -> tuple[float | None, str | None]:
    """(milliseconds per training step, its source: a key of :data:`STEP_TIME_SOURCES`), (None, None)
    when nothing records it; see the module docstring for the order of the sources."""
    s = run.train_summaries.get(name) or {}
    steps = steps_trained(run, name)
    if s.get("ms_per_step") is not None:
        return float(s["ms_per_step"]), "ms_per_step"
    if s.get("train_time_s") is not None and steps:
        return 1000.0 * float(s["train_time_s"]) / steps, "train_time_s"
    seconds = _benchmark_seconds(run, name)
    if seconds is not None and steps:
        return 1000.0 * seconds / steps, "benchmark"
    return None, None


def _pct(r, key: str = "value"):
    """A fraction of a frame row in % (2 decimals), or None."""
    return None if r is None or pd.isna(r[key]) else round(100 * float(r[key]), 2)


def _num(r, digits: int = 4):
    return None if r is None or pd.isna(r["value"]) else round(float(r["value"]), digits)


def family_record(run: RunData, df: pd.DataFrame, name: str, estimator: str) -> dict:
    """One family's numbers of a pair (the CSV's per-family columns, unprefixed): accuracies in %,
    NLL and bound in nats per image, KL(c) in nats, step time in ms, training time in seconds."""
    lake = value(df, name, "accuracy", "lake_runs", estimator)
    val = value(df, name, "accuracy", "validation_runs", estimator)
    ms, source = step_time(run, name)
    train_time = (run.train_summaries.get(name) or {}).get("train_time_s")
    return {
        "model": name,
        "lake_acc_pct": _pct(lake),
        "lake_acc_ci95_low": _pct(lake, "ci_low"),
        "lake_acc_ci95_high": _pct(lake, "ci_high"),
        "validation_acc_pct": _pct(val),
        "validation_acc_ci95_low": _pct(val, "ci_low"),
        "validation_acc_ci95_high": _pct(val, "ci_high"),
        "nll_nats_per_image": _num(value(df, name, "nll", "test")),
        "bound_nats_per_image": _num(value(df, name, "neg_bound", "test")),
        "kl_c_nats": _num(value(df, name, "kl_c", "test")),
        "ms_per_step": None if ms is None else round(ms, 3),
        "step_time_source": source,
        "steps": steps_trained(run, name),
        "train_time_s": None if train_time is None else round(float(train_time), 3),
    }


def mcnemar_pair(run: RunData, df: pd.DataFrame, pair: dict, estimator: str) -> dict:
    """McNemar's exact test of spatial against vector on the same Lake's-runs trials: {lake_trials,
    mcnemar_p, spatial_right_vector_wrong, vector_right_spatial_wrong} (None where not measured) and
    ``different`` ((n spatial, n vector) when their trials differ, else None)."""
    seed = pair["seed"]
    cmp, different = paired_by_seed(
        run, df, {seed: (pair["spatial"], estimator)}, {seed: (pair["vector"], estimator)}, "lake_runs"
    )
    out = {
        "lake_trials": None,
        "mcnemar_p": None,
        "spatial_right_vector_wrong": None,
        "vector_right_spatial_wrong": None,
        "different": different.get(seed),
    }
    if seed in cmp:
        r_spatial, _, t, _ = cmp[seed]
        out.update(
            lake_trials=None if pd.isna(r_spatial["n"]) else int(r_spatial["n"]),
            mcnemar_p=float(t["p_value"]),
            spatial_right_vector_wrong=int(t["n10"]),
            vector_right_spatial_wrong=int(t["n01"]),
        )
    return out


def _mcnemar_cell(m: dict) -> str:
    if m["different"] is not None:
        a, b = m["different"]
        return f"different trials ({a} vs {b}), not compared"
    if m["mcnemar_p"] is None:
        return "not measured"
    return (
        f"p = {m['mcnemar_p']:.3g}; spatial right where vector wrong on {m['spatial_right_vector_wrong']} "
        f"trials, the reverse on {m['vector_right_spatial_wrong']}"
    )


def _display_row(run: RunData, df: pd.DataFrame, pair: dict, estimator: str, recs: dict, m: dict) -> dict:
    """The Markdown row of a pair: per quantity a vector and a spatial column."""
    row = {
        "objective": OBJECTIVES.get(pair["objective"], pair["objective"]),
        "decoder": DECODERS.get(pair["decoder"], pair["decoder"]),
        "models (vector / spatial)": f"{pair['vector']} / {pair['spatial']}",
        "estimator": estimator,
    }
    cells = {
        "Lake runs (%)": lambda f: fmt_ci(value(df, pair[f], "accuracy", "lake_runs", estimator), 100),
        "validation runs (%)": lambda f: fmt_ci(value(df, pair[f], "accuracy", "validation_runs", estimator), 100),
        "test NLL (nats/image)": lambda f: fmt(recs[f]["nll_nats_per_image"]),
        "test bound (nats/image)": lambda f: fmt(recs[f]["bound_nats_per_image"]),
        "KL(c) (nats)": lambda f: fmt(recs[f]["kl_c_nats"]),
        "ms/step": lambda f: fmt(recs[f]["ms_per_step"], 1),
        "steps": lambda f: NA if recs[f]["steps"] is None else str(recs[f]["steps"]),
    }
    for label, cell in cells.items():
        for f in FAMILIES:
            row[f"{label}: {f}"] = cell(f)
    row["McNemar spatial vs vector (Lake runs)"] = _mcnemar_cell(m)
    return row


def _note(records: list[dict], headline) -> str:
    """The table's note: what the columns hold and where step times came from."""
    if not records:
        return (
            "No vector/spatial pair: the run has no class-structured model with `nets.family: spatial` beside "
            "a vector-family model of the same objective, decoder and training seed (config/cpu-spatial.yaml "
            "trains such pairs)."
        )
    fallback = sorted(
        {
            f"{r[f'{f}_model']} ({STEP_TIME_SOURCES[r[f'{f}_step_time_source']]})"
            for r in records
            for f in FAMILIES
            if r[f"{f}_step_time_source"] not in (None, "ms_per_step")
        }
    )
    missing = sorted({r[f"{f}_model"] for r in records for f in FAMILIES if r[f"{f}_step_time_source"] is None})
    steps_note = (
        "ms/step: the trainer's time in training steps over the steps trained (train_summary.json "
        "ms_per_step; validation, learning curves and checkpoints not counted)"
    )
    if fallback:
        steps_note += "; from other sources for " + ", ".join(fallback)
    if missing:
        steps_note += "; not recorded for " + ", ".join(missing)
    return (
        "Each class-structured model of the vector family beside its spatial counterpart (nets.family: spatial) "
        "with the same objective, decoder and training seed, paired by their configs; replicates left out. "
        "Accuracies in % [95% interval] on Lake's within-alphabet 20-way one-shot runs and on the validation "
        f"runs, with each decoder's headline estimator ({headline_label(headline)}); test NLL: importance-sampled "
        "-log p(X)/|X| and test bound: minus the training objective, both in nats per image; KL(c) in nats. "
        f"{steps_note}. McNemar: exact test of spatial against vector on the same Lake's-runs trials."
    )


def families(run: RunData, df: pd.DataFrame, headline) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(CSV frame, display frame, note): one row per (objective, decoder) with a vector and a spatial
    class model of the same training seed (:func:`family_pairs`): each family's Lake's-runs accuracy
    (%, 95% interval) and validation-runs accuracy (%) with the decoder's headline estimator
    (``headline``: :func:`paper_figures.tables.headline_of`), test NLL and bound (nats per image), KL(c)
    (nats), step time (ms) and steps trained, and McNemar's test spatial vs vector on Lake's runs.
    Empty (no rows, the columns kept) when the run has no such pair."""
    records, display = [], []
    for pair in family_pairs(run):
        est = headline_of(headline, pair["decoder"])
        recs = {f: family_record(run, df, pair[f], est) for f in FAMILIES}
        m = mcnemar_pair(run, df, pair, est)
        records.append(
            {
                **{k: pair[k] for k in ("objective", "decoder", "seed")},
                "estimator": est,
                **{f"{f}_{c}": recs[f][c] for f in FAMILIES for c in FAMILY_COLUMNS},
                **{k: v for k, v in m.items() if k != "different"},
            }
        )
        display.append(_display_row(run, df, pair, est, recs, m))
    table = pd.DataFrame(records, columns=COLUMNS)
    disp = pd.DataFrame(display)
    if disp.empty:
        disp = pd.DataFrame(columns=["objective", "decoder", "models (vector / spatial)", "estimator"])
    return table.astype(object).where(table.notna(), None), disp, _note(records, headline)
