"""Render the paper's tables and figures and a summary page from one run's metrics.

    python -m paper_figures.make --run-dir results/<run>

Reads ``<run-dir>/metrics/*.json`` (written by analysis.evaluate / analysis.structured and
the data rules), ``<run-dir>/configs/*.json`` (which model is which objective and decoder)
and ``<run-dir>/checkpoints/*/history.csv``; writes

- ``tables/objectives.{csv,md,tex}``: objectives x decoders with the test NLL estimate, the
  bound, KL(c) and one-shot accuracies, beside the paper's numbers where known;
- ``tables/classification.{csv,md,tex}``: one-shot accuracy of every estimator on Lake's runs and
  the validation runs, beside the pixel and modified-Hausdorff baselines
  (``paper_figures.classification``), and ``tables/learning_curves.csv``;
- ``tables/claims.{csv,md}``: the paper's claims checked on this run's numbers;
- ``figures/{training_curves,learning_curves,kl_c,samples_montage}.{png,pdf}``;
- ``summary.md`` and ``summary.html`` (a self-contained page with the PNGs embedded).

Missing models or numbers show as "n/a" (a smoke run may skip some); a metrics file that is
not valid JSON, is not an object, or holds a non-number where a number belongs is an error.
"""
from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import classification as CL
from . import outputs as OUT
from .paper_numbers import paper_value

NA = "n/a"

#: objective rows of the tables, in the paper's order: key -> label
OBJECTIVES = {"vae": "VAE", "ns": "NS", "resample": "resample only", "rescale": "rescale only", "vhe": "VHE"}
#: decoder columns: key -> label
DECODERS = {"deconv": "deconv", "pixelcnn": "PixelCNN"}
#: the four objectives with a class latent (claims 1-3)
CLASS_OBJECTIVES = ("ns", "resample", "rescale", "vhe")


class MetricsError(ValueError):
    """A metrics (or history) file is malformed."""


# --------------------------------------------------------------------------- reading metrics
def _get(d, path: str):
    """d["a"]["b"] for path "a.b"; None when any step is missing."""
    cur = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _number(d, paths, where: str, *, integer: bool = False):
    """The first of ``paths`` present in ``d`` as a float (None if absent or null).

    A present value that is not a number (bool, string, list...) makes the file malformed.
    A dict holding a "value"/"mean"/"accuracy" entry stands for that entry.
    """
    for path in paths:
        v = _get(d, path)
        if v is None:
            continue
        if isinstance(v, dict):
            for inner in ("value", "mean", "accuracy", "estimate"):
                if inner in v:
                    v = v[inner]
                    break
            else:
                continue  # a section, not a number: try the next candidate
            if v is None:
                return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise MetricsError(f"{where}: '{path}' should be a number, got {v!r}")
        v = float(v)
        if integer:
            return int(v)
        return v
    return None


def _interval(d, paths, where: str):
    """A 95% interval [lo, hi] (two numbers) from the first of ``paths`` present, else (None, None)."""
    for path in paths:
        v = _get(d, path)
        if v is None:
            continue
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)):
            raise MetricsError(f"{where}: '{path}' should be a [low, high] pair of numbers, got {v!r}")
        return float(v[0]), float(v[1])
    return None, None


def _accuracy(d, prefixes, where: str):
    """(accuracy %, low %, high %) from the first of ``prefixes`` (a dict or a bare number)."""
    for p in prefixes:
        if _get(d, p) is None:
            continue
        acc = _number(d, [f"{p}.accuracy", f"{p}.acc", f"{p}.mean", p], where)
        lo, hi = _interval(d, [f"{p}.ci95", f"{p}.ci", f"{p}.interval"], where)
        if lo is None and _get(d, f"{p}.ci95_halfwidth") is not None and acc is not None:
            h = _number(d, [f"{p}.ci95_halfwidth"], where)
            lo, hi = acc - h, acc + h
        scale = 100.0 if acc is not None and acc <= 1.0 and (hi is None or hi <= 1.0) else 1.0
        conv = (lambda x: None if x is None else x * scale)
        return conv(acc), conv(lo), conv(hi)
    return None, None, None


@dataclass
class ModelMetrics:
    """The numbers the tables use, for one model (None = not measured)."""

    name: str
    experiment: str | None = None
    objective: str | None = None
    decoder: str | None = None
    nll: float | None = None  # -log p(X)/|X|, nats per image
    nll_k: int | None = None  # importance samples K
    bound: float | None = None  # -bound, nats per image
    kl_c: float | None = None  # KL(q(c|D) || p(c)), nats
    lake: tuple = (None, None, None)  # accuracy %, 95% low, 95% high
    within: tuple = (None, None, None)
    way5_shot1: tuple = (None, None, None)
    raw: dict = field(default_factory=dict)

    @property
    def row_key(self):
        if self.experiment == "vae":
            return "vae", self.decoder
        return self.objective, self.decoder


def parse_metrics(name: str, data: dict, where: str, headline: str = "conditional") -> ModelMetrics:
    """Standardise one model's metrics JSON (the analysis.evaluate layout, with tolerance)."""
    if not isinstance(data, dict):
        raise MetricsError(f"{where}: the top level should be a JSON object, got {type(data).__name__}")
    m = ModelMetrics(name=name, raw=data)
    for key in ("experiment", "objective", "decoder"):
        v = _get(data, key) if _get(data, key) is not None else _get(data, f"model.{key}")
        if v is not None and not isinstance(v, str):
            raise MetricsError(f"{where}: '{key}' should be a string, got {v!r}")
        setattr(m, key, v)
    m.nll = _number(data, ["nll_per_image", "test_nll", "nll", "likelihood.nll_per_image", "likelihood.nll",
                           "test.nll_per_image", "test.nll"], where)
    m.nll_k = _number(data, ["nll_n_samples", "n_samples", "likelihood.n_samples", "test.n_samples"], where,
                      integer=True)
    m.bound = _number(data, ["bound_per_image", "test_bound", "bound", "likelihood.bound_per_image",
                             "likelihood.bound", "test.bound_per_image", "test.bound"], where)
    m.kl_c = _number(data, ["kl_c", "kl.c", "kl_nats.c", "test.kl_c"], where)
    # classification: the headline estimator's numbers (paper_figures.classification chooses it)
    m.lake = _accuracy(data, [f"classification.lake_runs.{headline}"], where)
    m.within = _accuracy(data, [f"classification.within_alphabet_runs.{headline}"], where)
    m.way5_shot1 = _accuracy(data, [f"classification.episodes.5way_1shot.{headline}"], where)
    return m


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise MetricsError(f"{path}: not valid JSON ({e})") from None


# --------------------------------------------------------------------------- the run
@dataclass
class Run:
    run_dir: Path
    models: dict = field(default_factory=dict)  # name -> {"experiment", "objective", "decoder"} (config order)
    metrics: dict = field(default_factory=dict)  # name -> ModelMetrics
    extra_metrics: dict = field(default_factory=dict)  # other metrics files: stem -> raw dict
    histories: dict = field(default_factory=dict)  # name -> list of row dicts
    train_summaries: dict = field(default_factory=dict)  # name -> raw dict
    classification: object = None  # pandas long-form table (paper_figures.classification.frame)
    headline: str = "conditional"  # the headline classification estimator
    headline_reason: str = ""

    @property
    def name(self):
        return self.run_dir.name

    def cell(self, objective, decoder) -> ModelMetrics | None:
        """The metrics of the model at (objective row, decoder column), or None."""
        for name, info in self.models.items():
            key = ("vae" if info.get("experiment") == "vae" else info.get("objective"), info.get("decoder"))
            if key == (objective, decoder) and info.get("experiment") in OUT.CLASS_EXPERIMENTS:
                return self.metrics.get(name) or ModelMetrics(name=name, **{k: info.get(k) for k in
                                                                             ("experiment", "objective", "decoder")})
        return None

    def cell_name(self, objective, decoder) -> str | None:
        m = self.cell(objective, decoder)
        return m.name if m else None


def _guess_model(name: str) -> dict:
    """experiment/objective/decoder from a model name like vhe_pixelcnn (when no config is found)."""
    parts = name.split("_")
    if name in OUT.STRUCTURED_EXPERIMENTS:
        return {"experiment": name, "objective": "vhe", "decoder": "deconv"}
    info = {}
    if len(parts) == 2 and parts[1] in DECODERS:
        info["decoder"] = parts[1]
        if parts[0] == "vae":
            info["experiment"] = "vae"
        elif parts[0] in CLASS_OBJECTIVES:
            info.update(experiment="class", objective=parts[0])
    return info


def load_run(run_dir) -> Run:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    run = Run(run_dir=run_dir)
    # which model is which: the per-model configs the Snakefile wrote
    for path in sorted((run_dir / "configs").glob("*.json")):
        cfg = read_json(path)
        model = cfg.get("model") if isinstance(cfg, dict) else None
        if not isinstance(model, dict):
            continue
        run.models[path.stem] = {k: model.get(k) for k in ("experiment", "objective", "decoder")}
    # keep the config order of the models when the profile is known
    order = _config_order(run_dir, run.models)
    run.models = {k: run.models[k] for k in order}
    raw = {path.stem: read_json(path) for path in sorted((run_dir / "metrics").glob("*.json"))}
    class_raw = {n: d for n, d in raw.items()
                 if (run.models.get(n) or {}).get("experiment") == "class"}
    try:
        run.classification = CL.frame(run.models, class_raw, raw.get("baselines"))
    except KeyError as e:
        raise MetricsError(str(e).strip("'\"")) from None
    run.headline, run.headline_reason = CL.choose_headline(run.classification)
    for path in sorted((run_dir / "metrics").glob("*.json")):
        data = raw[path.stem]
        name = path.stem
        is_model = name in run.models or (isinstance(data, dict) and (
            "objective" in data or "decoder" in data or "experiment" in data or name in OUT.STRUCTURED_EXPERIMENTS
            or _guess_model(name)))
        if not isinstance(data, dict):
            raise MetricsError(f"{path}: the top level should be a JSON object, got {type(data).__name__}")
        if not is_model:
            run.extra_metrics[name] = data
            continue
        info = run.models.get(name) or {k: v for k, v in _guess_model(name).items()}
        if (info.get("experiment") or data.get("experiment")) in OUT.STRUCTURED_EXPERIMENTS:
            # listed as they are in the summary; the objectives table does not read them
            m = ModelMetrics(name=name, raw=data)
        else:
            m = parse_metrics(name, data, str(path), run.headline)
        for key in ("experiment", "objective", "decoder"):
            if info.get(key) is not None:
                setattr(m, key, info[key])  # the config is authoritative
        if name not in run.models:
            run.models[name] = {k: getattr(m, k) for k in ("experiment", "objective", "decoder")}
        run.metrics[name] = m
    for name in run.models:
        ckpt = run_dir / "checkpoints" / name
        hist = ckpt / "history.csv"
        if hist.is_file():
            run.histories[name] = read_history(hist)
        summ = ckpt / "train_summary.json"
        if summ.is_file():
            data = read_json(summ)
            if isinstance(data, dict):
                run.train_summaries[name] = data
    return run


def _config_order(run_dir: Path, models: dict) -> list:
    """Models in the order of the schema's defaults (VAE, NS, ..., VHE per decoder, then others)."""
    def key(name):
        info = models[name]
        exp = info.get("experiment")
        if exp in OUT.CLASS_EXPERIMENTS:
            obj = "vae" if exp == "vae" else info.get("objective")
            return (0, list(DECODERS).index(info.get("decoder")) if info.get("decoder") in DECODERS else 9,
                    list(OBJECTIVES).index(obj) if obj in OBJECTIVES else 9, name)
        return (1, list(OUT.STRUCTURED_EXPERIMENTS).index(exp) if exp in OUT.STRUCTURED_EXPERIMENTS else 9, 0, name)
    return sorted(models, key=key)


def read_history(path: Path) -> list[dict]:
    """history.csv as a list of {column: float or None} rows."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return []
            rows = []
            for row in reader:
                rows.append({k: _to_float(v) for k, v in row.items() if k is not None})
            return rows
    except (csv.Error, UnicodeDecodeError) as e:
        raise MetricsError(f"{path}: cannot read as CSV ({e})") from None


def _to_float(v):
    if v is None or v == "":
        return None
    try:
        return float(v)
    except ValueError:
        return v


# --------------------------------------------------------------------------- formatting
def fmt(v, digits=2):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NA
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}"


def fmt_acc(acc, lo=None, hi=None):
    if acc is None:
        return NA
    if lo is not None and hi is not None:
        return f"{acc:.1f} [{lo:.1f}, {hi:.1f}]"
    return f"{acc:.1f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def latex_escape(s: str) -> str:
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
           "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(rep.get(ch, ch) for ch in str(s))


def latex_table(header: list[str], rows: list[list[str]], caption: str, label: str) -> str:
    spec = "ll" + "r" * (len(header) - 2)
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\hline",
           " & ".join(latex_escape(h) for h in header) + r" \\", r"\hline"]
    out += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    out += [r"\hline", r"\end{tabular}", rf"\caption{{{latex_escape(caption)}}}", rf"\label{{{label}}}",
            r"\end{table}"]
    return "\n".join(out) + "\n"


def write_csv(path: Path, header: list[str], rows: list[list]):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])


# --------------------------------------------------------------------------- objectives table
#: metric key -> (CSV column, Markdown/LaTeX column)
ACC_COLUMNS = {
    "lake_acc": ("lake_20way_1shot_acc", "Lake runs 20-way 1-shot (%)"),
    "within_acc": ("within_alphabet_20way_1shot_acc", "within-alphabet 20-way 1-shot (%)"),
    "way5_acc": ("episodes_5way_1shot_acc", "5-way 1-shot (%)"),
}


def _round(v, d=4):
    return None if v is None else round(float(v), d)


def objectives_rows(run: Run):
    """One row per (objective, decoder): (csv_row dict, display row list)."""
    out = []
    for dec in DECODERS:
        for obj in OBJECTIVES:
            m = run.cell(obj, dec)
            if m is None:
                m = ModelMetrics(name="")
            accs = {"lake_acc": m.lake, "within_acc": m.within, "way5_acc": m.way5_shot1}
            rec = {"objective": OBJECTIVES[obj], "decoder": DECODERS[dec], "model": m.name or None,
                   "nll_nats_per_image": _round(m.nll), "nll_K": m.nll_k,
                   "bound_nats_per_image": _round(m.bound), "kl_c_nats": _round(m.kl_c)}
            for key, (col, _) in ACC_COLUMNS.items():
                acc, lo, hi = accs[key]
                rec[col] = _round(acc, 2)
                rec[col + "_ci95_low"] = _round(lo, 2)
                rec[col + "_ci95_high"] = _round(hi, 2)
            paper = {key: paper_value(obj, dec, key) for key in ("nll", "kl_c", *ACC_COLUMNS)}
            for key, pv in paper.items():
                col = {"nll": "nll_nats_per_image", "kl_c": "kl_c_nats"}.get(key) or ACC_COLUMNS[key][0]
                ours = rec[col]
                rec["paper_" + col] = pv
                rec["diff_" + col] = None if pv is None or ours is None else round(ours - pv, 2)
            out.append((obj, dec, rec, accs, paper))
    return out


def write_objectives(run: Run, tables: Path):
    rows = objectives_rows(run)
    # CSV: every column, machine readable (empty = not measured)
    keys = list(rows[0][2]) if rows else []
    # drop paper/diff columns with no paper number anywhere (keeps the CSV readable)
    keys = [k for k in keys if not (k.startswith(("paper_", "diff_"))
                                    and all(r[2].get("paper_" + k.split("_", 1)[1]) is None for r in rows))]
    write_csv(tables / "objectives.csv", keys, [[r[2][k] for k in keys] for r in rows])
    # display tables (Markdown, LaTeX)
    paper_keys = [k for k in ("nll", "kl_c", *ACC_COLUMNS) if any(r[4][k] is not None for r in rows)]
    header = ["objective", "decoder", "test NLL (nats/image)", "test bound (nats/image)", "KL(c) (nats)"]
    header += [label for _, label in ACC_COLUMNS.values()]
    for key in paper_keys:
        label = {"nll": "NLL", "kl_c": "KL(c)"}.get(key) or ACC_COLUMNS[key][1].replace(" (%)", "")
        header += [f"paper: {label}", "difference"]
    display = []
    ks = set()
    for obj, dec, rec, accs, paper in rows:
        if rec["nll_K"] is not None:
            ks.add(rec["nll_K"])
        row = [OBJECTIVES[obj], DECODERS[dec], fmt(rec["nll_nats_per_image"]), fmt(rec["bound_nats_per_image"]),
               fmt(rec["kl_c_nats"])]
        row += [fmt_acc(*accs[k]) for k in ACC_COLUMNS]
        for key in paper_keys:
            col = {"nll": "nll_nats_per_image", "kl_c": "kl_c_nats"}.get(key) or ACC_COLUMNS[key][0]
            pv, diff = rec["paper_" + col], rec["diff_" + col]
            row += [fmt(pv, 1), NA if diff is None else f"{diff:+.1f}"]
        display.append(row)
    k_note = (f"K = {', '.join(str(k) for k in sorted(ks))} importance samples" if ks
              else "K: n/a")
    note = (f"Test NLL: importance-sampled estimate of -log p(X)/|X| on evaluation classes ({k_note}); "
            "bound: the training objective on the same classes (nats per image); KL(c): mean "
            "KL(q(c|D) || p(c)) in nats; accuracies in % with 95% intervals in brackets where given. "
            "Paper numbers: arXiv 1807.08919 (see paper_figures/paper_numbers.py); n/a = not measured "
            "or not reported.")
    md = (f"## Objectives x decoders (run {run.name})\n\n" + markdown_table(header, display) + "\n" + note + "\n")
    (tables / "objectives.md").write_text(md)
    (tables / "objectives.tex").write_text(latex_table(header, display, note, "tab:objectives"))
    return header, display, note


# --------------------------------------------------------------------------- claims
HOLDS, FAILS, UNMEASURED = "holds", "does not hold", "not measured"


def _claim(claim, scope, rule, evidence, verdict):
    return {"claim": claim, "scope": scope, "rule": rule, "evidence": evidence, "verdict": verdict}


def check_claims(run: Run) -> list[dict]:
    rows = []
    # (1) PixelCNN: NS leaves c nearly unused, VHE uses it
    ns, vhe = run.cell("ns", "pixelcnn"), run.cell("vhe", "pixelcnn")
    kl_ns, kl_vhe = (ns.kl_c if ns else None), (vhe.kl_c if vhe else None)
    rule = ("KL(c) of NS < 1 nat or < 10% of VHE's, and VHE's KL(c) >= 1 nat and above NS's "
            "(PixelCNN decoder)")
    if kl_ns is None or kl_vhe is None:
        verdict = UNMEASURED
    else:
        unused = kl_ns < 1.0 or kl_ns < 0.1 * kl_vhe
        used = kl_vhe >= 1.0 and kl_vhe > kl_ns
        verdict = HOLDS if unused and used else FAILS
    rows.append(_claim("With a PixelCNN decoder the NS objective leaves c nearly unused while VHE uses it",
                       "PixelCNN", rule, f"KL(c): NS {fmt(kl_ns)}, VHE {fmt(kl_vhe)} nats", verdict))
    # (2) VHE classifies better than NS on Lake's runs, per decoder, and beats Lake's MHD baseline
    # (headline estimator, McNemar on identical trials: paper_figures.classification)
    raw = {n: m.raw for n, m in run.metrics.items()}
    rows += CL.claims(run.classification, run.models, raw, run.extra_metrics.get("baselines"), run.headline)
    # (3) VHE's likelihood is the best of the four objectives, per decoder
    for dec in DECODERS:
        vals = {o: (run.cell(o, dec).nll if run.cell(o, dec) else None) for o in CLASS_OBJECTIVES}
        others = {o: v for o, v in vals.items() if o != "vhe" and v is not None}
        missing = [OBJECTIVES[o] for o, v in vals.items() if o != "vhe" and v is None]
        if vals["vhe"] is None or not others:
            verdict = UNMEASURED
        else:
            verdict = HOLDS if vals["vhe"] <= min(others.values()) else FAILS
        ev = "NLL (nats/image): " + ", ".join(f"{OBJECTIVES[o]} {fmt(v, 3)}" for o, v in vals.items())
        if missing and verdict != UNMEASURED:
            ev += f" (compared without {', '.join(missing)})"
        rows.append(_claim("VHE's test likelihood is the best of the four objectives", DECODERS[dec],
                           "VHE's NLL estimate <= every other measured objective's (lower is better)", ev, verdict))
    return rows


def write_claims(run: Run, tables: Path):
    rows = check_claims(run)
    cols = ["claim", "scope", "rule", "evidence", "verdict"]
    write_csv(tables / "claims.csv", cols, [[r[c] for c in cols] for r in rows])
    md = (f"## Claims of the paper checked on run {run.name}\n\n"
          + markdown_table(cols, [[r[c] for c in cols] for r in rows]))
    (tables / "claims.md").write_text(md)
    return cols, rows


# --------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, figures: Path, stem: str):
    for ext in OUT.FIGURE_FORMATS:
        fig.savefig(figures / f"{stem}.{ext}", dpi=120, bbox_inches="tight")
    _plt().close(fig)


#: history.csv columns, first found wins
STEP_COLUMNS = ("step", "iteration", "global_step")
TRAIN_COLUMNS = ("train_bound", "train/bound", "bound", "train_loss", "loss")
VAL_COLUMNS = ("val_bound", "val/bound", "valid_bound", "val_loss")


def _series(rows, xcols, ycols):
    if not rows:
        return None
    keys = set().union(*(r.keys() for r in rows))
    x = next((c for c in xcols if c in keys), None)
    y = next((c for c in ycols if c in keys), None)
    if y is None:
        return None
    pts = [((r.get(x) if x else i), r.get(y)) for i, r in enumerate(rows)]
    pts = [(a, b) for a, b in pts if isinstance(a, float | int) and isinstance(b, float | int) and math.isfinite(b)]
    return (y, pts) if pts else None


def figure_training_curves(run: Run, figures: Path):
    plt = _plt()
    names = list(run.models) or ["(no models)"]
    n = len(names)
    cols = min(4, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.6 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        rows = run.histories.get(name, [])
        tr, va = _series(rows, STEP_COLUMNS, TRAIN_COLUMNS), _series(rows, STEP_COLUMNS, VAL_COLUMNS)
        for s, label, style in ((tr, "train", "-"), (va, "val", "o-")):
            if s:
                xs, ys = zip(*s[1])
                ax.plot(xs, ys, style, ms=3, lw=1, label=f"{label} ({s[0]})")
        if not (tr or va):
            ax.text(0.5, 0.5, NA, ha="center", va="center", transform=ax.transAxes, color="grey")
        else:
            ax.legend(fontsize=6)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("bound (nats/image)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"Training curves (run {run.name})", fontsize=10)
    fig.tight_layout()
    _save(fig, figures, "training_curves")


def figure_kl(run: Run, figures: Path):
    plt = _plt()
    objs = list(CLASS_OBJECTIVES)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.38
    for j, dec in enumerate(DECODERS):
        for i, obj in enumerate(objs):
            m = run.cell(obj, dec)
            v = m.kl_c if m else None
            x = i + (j - 0.5) * width
            if v is None:
                ax.text(x, 0, NA, ha="center", va="bottom", fontsize=7, color="grey", rotation=90)
            else:
                ax.bar(x, v, width, color=f"C{j}", label=DECODERS[dec])
                ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    ax.set_xticks(range(len(objs)), [OBJECTIVES[o] for o in objs])
    ax.set_ylabel("KL(c) (nats)")
    ax.set_title(f"Information in c per objective and decoder (run {run.name})", fontsize=10)
    fig.tight_layout()
    _save(fig, figures, "kl_c")


def figure_samples(run: Run, figures: Path):
    plt = _plt()
    import matplotlib.image as mpimg

    names = [n for n, info in run.models.items() if info.get("experiment") in OUT.CLASS_EXPERIMENTS]
    names = names or ["(no models)"]
    cols = min(5, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 3 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        path = figures / f"samples_{name}.png"
        ax.axis("off")
        ax.set_title(name, fontsize=9)
        if path.is_file():
            try:
                ax.imshow(mpimg.imread(path), cmap="gray", interpolation="nearest")
            except Exception as e:  # an unreadable PNG is shown as such, not fatal
                ax.text(0.5, 0.5, f"unreadable\n{type(e).__name__}", ha="center", va="center",
                        transform=ax.transAxes, color="grey")
        else:
            ax.text(0.5, 0.5, NA, ha="center", va="center", transform=ax.transAxes, color="grey")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"1-shot samples per model (run {run.name})", fontsize=10)
    fig.tight_layout()
    _save(fig, figures, "samples_montage")


# --------------------------------------------------------------------------- summary
def structured_figures(run: Run) -> list[Path]:
    """The PNG grids analysis.structured wrote: <prefix>_*.png per structured model (prefix: the
    experiment name, or the model name when it differs), else by experiment name."""
    figs = run.run_dir / "figures"
    prefixes = [name for name, info in run.models.items() if info.get("experiment") in OUT.STRUCTURED_EXPERIMENTS]
    prefixes = prefixes or list(OUT.STRUCTURED_EXPERIMENTS)
    out = []
    for prefix in prefixes:
        out += sorted(figs.glob(f"{prefix}_*.png"))
    return list(dict.fromkeys(out))


#: bookkeeping keys of a metrics JSON left out of the summary's metric listings
SKIP_KEYS = {"provenance", "checkpoint", "checkpoint_step", "figures", "per_class", "test_classes", "evaluation",
             "graph", "model", "experiment", "objective", "decoder", "run", "seed", "eval_seconds", "units",
             "not_defined"}


def metric_items(data: dict, limit: int = 60) -> list[tuple[str, str]]:
    """(dotted key, formatted value) pairs of a metrics dict, bookkeeping left out."""
    flat = _flat_numbers({k: v for k, v in data.items() if k not in SKIP_KEYS})
    return [(k, v) for k, v in flat.items() if k][:limit]


def _flat_numbers(d, prefix=""):
    """{dotted key: number or string} of a nested dict (lists shortened)."""
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat_numbers(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        if len(d) <= 4 and all(isinstance(x, (int, float, str)) for x in d):
            out[prefix[:-1]] = ", ".join(fmt(x, 3) if isinstance(x, float) else str(x) for x in d)
    elif isinstance(d, bool) or d is None:
        out[prefix[:-1]] = str(d)
    elif isinstance(d, float):
        out[prefix[:-1]] = fmt(d, 4)
    else:
        out[prefix[:-1]] = str(d)
    return out


def training_rows(run: Run):
    header = ["model", "experiment", "objective", "decoder", "steps", "best val bound", "wall time (s)"]
    rows = []
    for name, info in run.models.items():
        s = run.train_summaries.get(name, {})
        steps = next((s[k] for k in ("steps", "step", "final_step", "global_step") if k in s), None)
        best = next((s[k] for k in ("best_val_bound", "best_val", "best_bound") if k in s), None)
        wall = next((s[k] for k in ("wall_time_s", "wall_time", "seconds", "elapsed_s") if k in s), None)
        objective = "-" if info.get("experiment") == "vae" else (info.get("objective") or NA)  # no class latent
        rows.append([name, info.get("experiment") or NA, objective, info.get("decoder") or NA,
                     fmt(steps if isinstance(steps, int) else steps, 0) if steps is not None else NA,
                     fmt(best) if isinstance(best, (int, float)) else NA,
                     fmt(wall, 0) if isinstance(wall, (int, float)) else NA])
    return header, rows


def write_summary(run: Run, objectives, claims):
    rd = run.run_dir
    header, display, note = objectives
    ccols, crows = claims
    th, trows = training_rows(run)
    structured = structured_figures(run)
    parts = [f"# VHE reproduction: run `{run.name}`\n",
             "Reproduction of Hewitt et al., *The Variational Homoencoder* (UAI 2018, arXiv 1807.08919). "
             "Generated by `python -m paper_figures.make`; n/a marks numbers this run did not measure.\n",
             "## Objectives x decoders\n", markdown_table(header, display), "\n" + note + "\n",
             "## One-shot classification\n", run.classification_display.to_markdown(index=False),
             f"\n\nHeadline estimator: **{run.headline}** ({run.headline_reason}).\n",
             "\n![learning curves](figures/learning_curves.png)\n",
             "\n## Claims of the paper\n", markdown_table(ccols, [[r[c] for c in ccols] for r in crows]),
             "\n## Training\n", markdown_table(th, trows),
             "\n![training curves](figures/training_curves.png)\n",
             "\n## Information in c\n", "\n![KL(c)](figures/kl_c.png)\n",
             "\n## 1-shot samples\n", "\n![1-shot samples](figures/samples_montage.png)\n"]
    parts.append("\n## Hierarchical and factorial models\n")
    smodels = [n for n, i in run.models.items() if i.get("experiment") in OUT.STRUCTURED_EXPERIMENTS]
    for name in smodels:
        m = run.metrics.get(name)
        if m is not None:
            items = metric_items(m.raw)
            if items:
                parts.append(f"\n**{name}**\n\n" + markdown_table(["metric", "value"], [list(kv) for kv in items]))
        else:
            parts.append(f"\n**{name}**: metrics {NA}\n")
    if structured:
        for p in structured:
            parts.append(f"\n![{p.stem}](figures/{p.name})\n")
    else:
        parts.append(f"\nSample grids: {NA}\n")
    if run.extra_metrics:
        parts.append("\n## Other measurements\n")
        for stem, data in run.extra_metrics.items():
            parts.append(f"\n**{stem}** (metrics/{stem}.json)\n\n"
                         + markdown_table(["key", "value"], [list(kv) for kv in metric_items(data)]))
    md = "".join(parts)
    (rd / "summary.md").write_text(md)
    (rd / "summary.html").write_text(summary_html(run, header, display, note, ccols, crows, th, trows, structured))


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p><em>{html.escape(alt)}: {NA}</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _html_table(header, rows) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def summary_html(run: Run, header, display, note, ccols, crows, th, trows, structured) -> str:
    figs = run.run_dir / "figures"
    css = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:1em 0;font-size:0.85em}"
           "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#eee}"
           "img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:0.85em}"
           ".holds{color:#070}.fails{color:#a00}.na{color:#777}")

    def verdict_cell(v):
        cls = {HOLDS: "holds", FAILS: "fails", CL.DIRECTION: "na"}.get(v, "na")
        return f'<span class="{cls}">{html.escape(v)}</span>'

    claims_html = ("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in ccols) + "</tr></thead><tbody>"
                   + "".join("<tr>" + "".join(f"<td>{verdict_cell(r[c]) if c == 'verdict' else html.escape(str(r[c]))}</td>"
                                               for c in ccols) + "</tr>" for r in crows) + "</tbody></table>")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>VHE reproduction: {html.escape(run.name)}</title>"
             f"<style>{css}</style></head><body>",
             f"<h1>VHE reproduction: run <code>{html.escape(run.name)}</code></h1>",
             "<p>Reproduction of Hewitt et al., <em>The Variational Homoencoder</em> (UAI 2018, arXiv 1807.08919). "
             "n/a marks numbers this run did not measure.</p>",
             "<h2>Objectives x decoders</h2>", _html_table(header, display), f"<p>{html.escape(note)}</p>",
             "<h2>One-shot classification</h2>", run.classification_display.to_html(index=False),
             f"<p>Headline estimator: <b>{html.escape(run.headline)}</b> ({html.escape(run.headline_reason)}).</p>",
             _img(figs / "learning_curves.png", "learning curves"),
             "<h2>Claims of the paper</h2>", claims_html,
             "<h2>Training</h2>", _html_table(th, trows), _img(figs / "training_curves.png", "training curves"),
             "<h2>Information in c</h2>", _img(figs / "kl_c.png", "KL(c) per objective and decoder"),
             "<h2>1-shot samples</h2>", _img(figs / "samples_montage.png", "1-shot samples per model"),
             "<h2>Hierarchical and factorial models</h2>"]
    for name, info in run.models.items():
        if info.get("experiment") in OUT.STRUCTURED_EXPERIMENTS:
            m = run.metrics.get(name)
            if m is not None:
                parts.append(f"<h3>{html.escape(name)}</h3>" + _html_table(["metric", "value"], metric_items(m.raw)))
            else:
                parts.append(f"<h3>{html.escape(name)}</h3><p class='na'>metrics {NA}</p>")
    parts += [_img(p, p.stem) for p in structured] or [f"<p class='na'>sample grids: {NA}</p>"]
    if run.extra_metrics:
        parts.append("<h2>Other measurements</h2>")
        for stem, data in run.extra_metrics.items():
            parts.append(f"<h3>{html.escape(stem)}</h3>"
                         + _html_table(["key", "value"], metric_items(data)))
    parts.append("</body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- entry point
def make(run_dir) -> Run:
    run = load_run(run_dir)
    rd = Path(run_dir)
    tables, figures = rd / "tables", rd / "figures"
    tables.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    objectives = write_objectives(run, tables)
    claims = write_claims(run, tables)
    run.classification_display = CL.write(run.classification, run.headline, run.headline_reason, tables, run.name)
    curves = CL.curves_frame(run.histories, run.models)
    curves.to_csv(tables / "learning_curves.csv", index=False)
    _save(CL.figure_learning_curves(curves, _plt(), run.name), figures, "learning_curves")
    figure_training_curves(run, figures)
    figure_kl(run, figures)
    figure_samples(run, figures)
    write_summary(run, objectives, claims)
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paper_figures.make", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", required=True, help="results/<run>")
    args = ap.parse_args(argv)
    try:
        run = make(args.run_dir)
    except (MetricsError, FileNotFoundError) as e:
        print(f"paper_figures.make: error: {e}", file=sys.stderr)
        return 1
    rd = Path(args.run_dir)
    print(f"paper_figures.make: {len(run.metrics)} model metrics, {len(run.histories)} histories -> "
          f"{rd / 'tables'}, {rd / 'figures'}, {rd / 'summary.md'}, {rd / 'summary.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
