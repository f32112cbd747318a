"""One-shot classification results: every estimator, the baselines, the headline choice, the claims.

Reads the exact keys ``analysis.evaluate`` and ``analysis.baselines`` write (a missing key is a
:class:`KeyError` naming it) into one long-form pandas table, one row per (model, trial set,
estimator):

    model, experiment, objective, decoder, set, estimator, accuracy, ci_low, ci_high, n_trials, K

``set`` is ``validation_runs`` (within-alphabet runs of the background set's validation characters),
``lake_runs``, ``within_alphabet_runs`` or ``episodes/<way>way_<shot>shot``; accuracies are fractions.
The baselines (``metrics/baselines.json``: pixel nearest neighbour and Lake's modified Hausdorff
distance at 28x28 and 105x105) are rows of ``lake_runs`` with ``estimator`` = the baseline's name.

The *headline* estimator is the one with the best mean accuracy over the class-structured models
on the validation runs; Lake's runs never enter the choice. Claims compare two classifiers on the
same trials with McNemar's exact test on their per-trial outcomes.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

#: estimators in order of preference when validation accuracies tie
ESTIMATORS = ("conditional", "marginal_ratio", "ns_kl")
ESTIMATOR_LABELS = {"conditional": "conditional log E_q(c|D) p(x|c)", "marginal_ratio": "marginal ratio",
                    "ns_kl": "NS rule KL(q(c|x) || q(c|D))"}
BASELINES = ("pixel_nn_28", "mhd_28", "pixel_nn_105", "mhd_105")
BASELINE_LABELS = {"pixel_nn_28": "pixel nearest neighbour (28x28)", "mhd_28": "Lake's MHD (28x28)",
                   "pixel_nn_105": "pixel nearest neighbour (105x105)", "mhd_105": "Lake's MHD (105x105)"}
CLASS_OBJECTIVES = ("ns", "resample", "rescale", "vhe")
DECODER_LABELS = {"deconv": "deconv", "pixelcnn": "PixelCNN"}
COLUMNS = ["model", "experiment", "objective", "decoder", "set", "estimator", "accuracy", "ci_low", "ci_high",
           "n_trials", "K"]
HOLDS, DIRECTION, FAILS, UNMEASURED = "holds", "direction only", "does not hold", "not measured"


def _need(d: dict, key: str, where: str):
    if not isinstance(d, dict) or key not in d:
        raise KeyError(f"{where}: missing key {key!r}")
    return d[key]


def _row(model: str, info: dict, set_name: str, estimator: str, entry: dict, K, where: str) -> dict:
    acc = _need(entry, "accuracy", where)
    lo, hi = _need(entry, "ci95", where) or (None, None)
    return {"model": model, "experiment": info.get("experiment"), "objective": info.get("objective"),
            "decoder": info.get("decoder"), "set": set_name, "estimator": estimator, "accuracy": acc,
            "ci_low": lo, "ci_high": hi, "n_trials": _need(entry, "n_trials", where), "K": K}


def model_rows(model: str, info: dict, metrics: dict, where: str) -> list[dict]:
    """Rows of one model's ``classification`` section ([] when classification is not defined)."""
    cl = _need(metrics, "classification", where)
    if cl is None:
        return []
    K = _need(cl, "n_samples", where)
    rows = []
    for set_name in ("validation_runs", "lake_runs", "within_alphabet_runs"):
        for method, entry in (cl.get(set_name) or {}).items():
            rows.append(_row(model, info, set_name, method, entry, K, f"{where}: classification.{set_name}.{method}"))
    for key, by_method in (cl.get("episodes") or {}).items():
        for method, entry in by_method.items():
            if entry.get("accuracy") is None:  # skipped: too few characters
                continue
            rows.append(_row(model, info, f"episodes/{key}", method, entry, K,
                             f"{where}: classification.episodes.{key}.{method}"))
    return rows


def baseline_rows(baselines: dict, where: str) -> list[dict]:
    lake = _need(baselines, "lake_runs", where)
    return [_row(name, {"experiment": "baseline"}, "lake_runs", name, _need(lake, name, where), None,
                 f"{where}: lake_runs.{name}") for name in BASELINES if name in lake]


def frame(models: dict, metrics: dict, baselines: dict | None) -> pd.DataFrame:
    """The long-form table. models: name -> {experiment, objective, decoder}; metrics: name -> raw JSON."""
    rows = []
    for name in [n for n in models if n in metrics] + [n for n in metrics if n not in models]:
        data, info = metrics[name], models.get(name, {})
        if info.get("experiment") != "class":
            continue
        rows += model_rows(name, info, data, f"metrics/{name}.json")
    if baselines is not None:
        rows += baseline_rows(baselines, "metrics/baselines.json")
    return pd.DataFrame(rows, columns=COLUMNS)


def choose_headline(df: pd.DataFrame) -> tuple[str, str]:
    """(estimator, reason): best mean validation-run accuracy over the class-structured models."""
    val = df[(df["set"] == "validation_runs") & (df["experiment"] == "class")]
    if val.empty:
        return ESTIMATORS[0], "no validation runs were measured: the conditional estimator by default"
    means = val.groupby("estimator")["accuracy"].mean()
    order = sorted(means.index, key=lambda m: (-round(float(means[m]), 6),
                                               ESTIMATORS.index(m) if m in ESTIMATORS else 99))
    best = order[0]
    detail = ", ".join(f"{m} {100 * means[m]:.1f}%" for m in order)
    return best, (f"best mean accuracy over the {val['model'].nunique()} class models on the validation runs "
                  f"({detail}); Lake's runs are not used for the choice")


# ----------------------------------------------------------------------- paired test
def mcnemar(a: list[int], b: list[int]) -> dict:
    """McNemar's exact test of two classifiers on the same trials (1 = correct).

    Returns n01 (a wrong, b right), n10 (a right, b wrong) and the two-sided p-value
    min(1, 2 P[Binomial(n01 + n10, 1/2) <= min(n01, n10)]).
    """
    if len(a) != len(b):
        raise ValueError(f"McNemar needs the same trials: {len(a)} vs {len(b)} outcomes")
    n10 = sum(1 for x, y in zip(a, b) if x and not y)
    n01 = sum(1 for x, y in zip(a, b) if y and not x)
    n = n01 + n10
    k = min(n01, n10)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    return {"n01": n01, "n10": n10, "p_value": p}


def per_trial(metrics: dict, set_name: str, estimator: str, where: str) -> list[int]:
    cl = _need(metrics, "classification", where)
    return _need(_need(_need(cl, set_name, where), estimator, where), "per_trial", where)


def _verdict(better: bool, p: float) -> str:
    if better and p < 0.05:
        return HOLDS
    return DIRECTION if better else FAILS


def _pct(df, model, set_name, est):
    r = df[(df["model"] == model) & (df["set"] == set_name) & (df["estimator"] == est)]
    if r.empty:
        return None, "n/a"
    r = r.iloc[0]
    return float(r["accuracy"]), f"{100 * r['accuracy']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"


def claims(df: pd.DataFrame, models: dict, metrics: dict, baselines: dict | None, headline: str) -> list[dict]:
    """Classification claims on Lake's runs with the headline estimator (McNemar on identical trials)."""
    out = []
    by_cell = {(i.get("objective"), i.get("decoder")): n for n, i in models.items()
               if i.get("experiment") == "class" and n in metrics}
    rule = (f"VHE's Lake-runs accuracy above NS's with the headline estimator ({headline}); "
            f"holds if McNemar's exact test on the same trials gives p < 0.05")
    for dec, label in DECODER_LABELS.items():
        ns, vhe = by_cell.get(("ns", dec)), by_cell.get(("vhe", dec))
        if ns is None or vhe is None or df[(df["model"].isin([ns, vhe])) & (df["set"] == "lake_runs")].empty:
            out.append({"claim": "VHE classifies better than NS (Lake's runs)", "scope": label, "rule": rule,
                        "evidence": "not measured", "verdict": UNMEASURED})
            continue
        a_ns, s_ns = _pct(df, ns, "lake_runs", headline)
        a_vhe, s_vhe = _pct(df, vhe, "lake_runs", headline)
        t = mcnemar(per_trial(metrics[vhe], "lake_runs", headline, vhe), per_trial(metrics[ns], "lake_runs", headline, ns))
        verdict = _verdict(a_vhe > a_ns, t["p_value"])
        ev = (f"NS {s_ns} %, VHE {s_vhe} % ({headline}); VHE right where NS wrong on {t['n10']} trials, the reverse "
              f"on {t['n01']}; McNemar p = {t['p_value']:.3g}")
        if verdict != HOLDS:
            ev += ("; the difference is not significant at 5%" if a_vhe > a_ns
                   else "; NS is at least as accurate here")
        out.append({"claim": "VHE classifies better than NS (Lake's runs)", "scope": label, "rule": rule,
                    "evidence": ev, "verdict": verdict})
    # the best VHE model against Lake's MHD baseline on the same 28x28 images
    claim = "VHE beats Lake's modified-Hausdorff baseline on the same images (Lake's runs, 28x28)"
    rule = ("the best VHE model (headline estimator) more accurate than MHD on the same 28x28 trials; holds if "
            "McNemar p < 0.05")
    vhes = [n for (o, _), n in by_cell.items() if o == "vhe"]
    lake = (baselines or {}).get("lake_runs") or {}
    if not vhes or "mhd_28" not in lake or df[(df["model"].isin(vhes)) & (df["set"] == "lake_runs")].empty:
        out.append({"claim": claim, "scope": "best VHE", "rule": rule, "evidence": "not measured",
                    "verdict": UNMEASURED})
        return out
    best = max(vhes, key=lambda n: _pct(df, n, "lake_runs", headline)[0] or -1)
    a_best, s_best = _pct(df, best, "lake_runs", headline)
    a_mhd, s_mhd = _pct(df, "mhd_28", "lake_runs", "mhd_28")
    _, s_mhd105 = _pct(df, "mhd_105", "lake_runs", "mhd_105")
    mine, theirs = per_trial(metrics[best], "lake_runs", headline, best), lake["mhd_28"]["per_trial"]
    if len(mine) != len(theirs):
        out.append({"claim": claim, "scope": best, "rule": rule, "verdict": UNMEASURED,
                    "evidence": f"different trials ({len(mine)} vs {len(theirs)}): evaluation.max_runs differs"})
        return out
    t = mcnemar(mine, theirs)
    verdict = _verdict(a_best > a_mhd, t["p_value"])
    ev = (f"{best} {s_best} % vs MHD {s_mhd} % (105x105 originals: {s_mhd105} %); McNemar p = {t['p_value']:.3g}")
    if verdict != HOLDS:
        ev += "; not significant at 5%" if a_best > a_mhd else "; MHD is at least as accurate"
    out.append({"claim": claim, "scope": best, "rule": rule, "evidence": ev, "verdict": verdict})
    return out


# ----------------------------------------------------------------------- tables
def display_table(df: pd.DataFrame, headline: str) -> pd.DataFrame:
    """Rows: class models and baselines; columns: Lake's runs per estimator (headline first), then the
    validation runs per estimator; cells 'acc [low, high]' in %."""
    if df.empty:
        return pd.DataFrame(columns=["model"])
    cell = df.assign(text=lambda d: d.apply(
        lambda r: f"{100 * r.accuracy:.1f} [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]"
        if pd.notna(r.ci_low) else f"{100 * r.accuracy:.1f}", axis=1))
    models = cell[cell["experiment"] != "baseline"]
    estimators = [headline] + [e for e in ESTIMATORS if e != headline and e in set(models["estimator"])]
    lake = models[models["set"] == "lake_runs"].pivot(index="model", columns="estimator", values="text")
    val = models[models["set"] == "validation_runs"].pivot(index="model", columns="estimator", values="text")
    out = pd.DataFrame(index=pd.Index(models["model"].unique(), name="model"))
    for e in estimators:
        label = f"Lake runs: {e}" + (" (headline)" if e == headline else "")
        out[label] = lake[e] if e in lake else "n/a"
    for e in estimators:
        out[f"validation runs: {e}"] = val[e] if e in val else "n/a"
    base = cell[cell["experiment"] == "baseline"].set_index("model")
    for name, r in base.iterrows():
        row = {c: "" for c in out.columns}
        row[out.columns[0]] = r["text"]
        out.loc[BASELINE_LABELS.get(name, name)] = row
    return out.fillna("n/a").reset_index()


def write(df: pd.DataFrame, headline: str, reason: str, tables: Path, run_name: str) -> pd.DataFrame:
    """tables/classification.{csv,md,tex}: the long-form CSV and the display table."""
    tables.mkdir(parents=True, exist_ok=True)
    df.assign(headline=df["estimator"] == headline).to_csv(tables / "classification.csv", index=False)
    disp = display_table(df, headline)
    lake = df[(df["set"] == "lake_runs") & (df["experiment"] != "baseline")]
    trials = f" ({int(lake['n_trials'].iloc[0])} trials)" if not lake.empty else ""
    note = (f"Accuracy in % [95% interval] on Lake's within-alphabet 20-way one-shot runs{trials} and on "
            f"within-alphabet runs of the validation characters. Headline estimator: {headline} ({reason}). "
            f"Baselines on the same runs: pixel nearest neighbour (cosine) and Lake's modified Hausdorff distance "
            f"(his demo: 38.8% error = 61.2% accuracy on the 105x105 originals).")
    md = f"## One-shot classification (run {run_name})\n\n" + disp.to_markdown(index=False) + "\n\n" + note + "\n"
    (tables / "classification.md").write_text(md)
    caption = note.replace("\\", "/").replace("%", r"\%").replace("_", r"\_").replace("|", r"$|$")
    latex = (disp.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
             .to_latex(caption=caption, label="tab:classification", hrules=True))
    (tables / "classification.tex").write_text(latex)
    return disp


def curves_frame(histories: dict, models: dict) -> pd.DataFrame:
    """Learning curves: model, decoder, objective, step, time_s, val_acc, val_bound (rows with either)."""
    rows = []
    for name, hist in histories.items():
        info = models.get(name, {})
        for r in hist:
            if r.get("val_acc") is None and r.get("val_bound") is None:
                continue
            rows.append({"model": name, "experiment": info.get("experiment"), "objective": info.get("objective"),
                         "decoder": info.get("decoder"), "step": r.get("step"), "time_s": r.get("time_s"),
                         "val_acc": r.get("val_acc"), "val_bound": r.get("val_bound")})
    return pd.DataFrame(rows, columns=["model", "experiment", "objective", "decoder", "step", "time_s", "val_acc",
                                       "val_bound"])


def figure_learning_curves(curves: pd.DataFrame, plt, run_name: str):
    """Accuracy (top) and validation bound (bottom) vs steps, one column per decoder; NS and VHE bold."""
    cls = curves[curves["experiment"] == "class"]
    decoders = [d for d in ("deconv", "pixelcnn") if d in set(cls["decoder"])] or ["deconv"]
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
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.suptitle(f"Learning curves (run {run_name})", fontsize=10)
    fig.tight_layout()
    return fig
