#!/usr/bin/env python
"""Check that a pipeline run left every expected output behind.

    python scripts/check_outputs.py --configfile config/smoke.yaml [--report results/smoke/report.html]
    python scripts/check_outputs.py --configfile config/smoke.yaml --list     # just print the list
    python scripts/check_outputs.py --configfile config/smoke.yaml --wandb    # also W&B's offline runs

The expected files for a config (prepared data, every model's config, best.pt, history.csv,
train_summary.json and metrics JSON, the sample figures, the structured grids, the tables,
figures and the summary page) come from ``pipeline.outputs.expected_outputs``, the same
list the Snakefile's ``all`` rule builds. With ``--wandb`` (and ``wandb.mode`` offline), the
offline W&B files must also hold, for every model (group ``<run>/<model>``), its training run with
history, its model artifact ``<run>-<model>`` and its evaluation run (``job_type=eval``)
(``experiments.tracking.missing_tracking``), and the profile's summary run; an installed wandb
older than the project's floor is reported as such.

The content check (``--content``, on by default: CI's stage 5 must fail on a run whose files all
exist but hold no numbers; ``--no-content`` checks presence only, e.g. for a ``--touch`` tree)
reads every metrics JSON, ``tables/metrics.csv`` and ``tables/claims.csv`` of the run:

- every metric the evaluators define (the keys ``paper_figures.metrics`` reads) is a finite
  number, or null *with a reason*: ``not_defined[<key or a prefix>]`` (analysis.evaluate: e.g. a
  VAE's kl_c and classification), ``<key>_reason`` beside it (``ci95_reason``: an interval from
  fewer than 2 trials; ``<name>_se_reason``: a standard error from fewer than 2 units,
  analysis.stats) or ``skipped`` in its entry (episodes, alphabet_style). A value its writer
  found non-finite (listed under ``non_finite``) or a ``diverged`` model is a failure, as is a
  NaN/Infinity anywhere in any metrics JSON (data_gap.json too);
- accuracies (and every metrics.csv value whose ``unit`` is fraction) lie in [0, 1] and equal
  correct / n_trials; intervals (ci95, ci95_wilson, ci_low/ci_high) are ordered, inside the
  unit's range and contain their point estimate; -log p <= -ELBO; an interval metric of
  metrics.csv without an interval needs n < 2; the sets, episodes and estimators the profile
  evaluates are there; metrics.csv has rows for every model and baseline;
- every claim's verdict is holds / direction only / does not hold / not measured
  (paper_figures.claims); not every claim is "not measured"; and a claim whose inputs the
  profile produces (its models are in the profile and, for classification claims,
  evaluation.lake_runs is on; for the hierarchical claims, its metrics JSON holds their numbers:
  :func:`measurable_claims`) must not be "not measured";
- the hierarchical model's alphabet measures (analysis.hierarchical): ``context_nll``'s -log p per
  image with and without context and its paired gains (against no context and, where a class model
  was evaluated, against it) finite, each gain equal to the difference of the means and inside its
  95% interval (or the interval null with its reason); ``oneshot_context``'s arms as accuracy
  entries; ``alphabet_style``'s bootstrap interval and its controls' around their accuracies;
- Lake's MHD baseline (metrics/baselines.json, lake_runs.mhd_28 and mhd_105) equals, to the
  trial, the counts on the first ``evaluation.max_runs`` runs stored in
  ``analysis/lake_mhd_reference.json`` (tested against the data mirror and Lake's published
  38.8% error by tests/scripts/test_check_outputs.py).

Each content failure names the file and the key (or the CSV line). Exits 1 naming every missing
or empty file, content failure or W&B gap, 2 on a bad config.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def expected(configfile, root: Path) -> list[Path]:
    from experiments.config import load_config
    from pipeline.outputs import expected_outputs

    cfg = load_config(configfile)
    return [root / p for p in expected_outputs(cfg)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", required=True, help="the profile the pipeline ran with")
    ap.add_argument("--root", default=".", help="the pipeline's working directory (default: .)")
    ap.add_argument("--report", action="append", default=[], help="also expect this file (e.g. the HTML report)")
    ap.add_argument("--list", action="store_true", help="print the expected files and exit")
    ap.add_argument(
        "--content",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also check what the metrics and tables hold (default: on; --no-content: presence only)",
    )
    ap.add_argument(
        "--wandb", action="store_true", help="also check W&B's offline runs (training, model artifacts, evaluation)"
    )
    args = ap.parse_args(argv)
    root = Path(args.root)
    try:
        files = expected(args.configfile, root)
    except Exception as e:  # ConfigError, missing file, ...
        print(f"check_outputs: cannot read the config {args.configfile}: {e}", file=sys.stderr)
        return 2
    files += [root / r for r in args.report]
    if args.list:
        print("\n".join(str(f) for f in files))
        return 0
    missing = [f for f in files if not f.is_file()]
    empty = [f for f in files if f.is_file() and os.path.getsize(f) == 0]
    rc = 0
    if missing or empty:
        print(
            f"check_outputs: {len(missing)} missing and {len(empty)} empty of {len(files)} expected outputs "
            f"({args.configfile}):",
            file=sys.stderr,
        )
        for f in missing:
            print(f"  missing: {f}", file=sys.stderr)
        for f in empty:
            print(f"  empty:   {f}", file=sys.stderr)
        rc = 1
    else:
        print(f"check_outputs: all {len(files)} expected outputs present ({args.configfile})")
    if args.content:
        from experiments.config import load_config

        problems = check_content(load_config(args.configfile), root, skip=missing + empty)
        if problems:
            print(f"check_outputs: {len(problems)} content problems:", file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            rc = 1
        else:
            print(
                "check_outputs: content: every metric finite or null with a reason, accuracies in [0, 1], "
                "intervals around their values, claims measured, Lake's MHD as in "
                f"{MHD_REFERENCE.relative_to(ROOT)}"
            )
    if args.wandb:
        rc = max(rc, check_wandb(args.configfile, root))
    return rc


# =========================================================================== content (--content)
#: the MHD baseline's per-run counts on Lake's runs (computed once from the data mirror; the one place)
MHD_REFERENCE = ROOT / "analysis" / "lake_mhd_reference.json"
#: rounding slack for "lo <= point <= hi" and "accuracy == correct / n_trials"
TOL = 1e-9


class Problems:
    """Content problems, one per (file, key), each "<file>: <key>: <what>"."""

    def __init__(self, root: Path):
        self.root, self.items = root, {}

    def add(self, path: Path, key: str, what: str) -> None:
        try:
            where = path.relative_to(self.root)
        except ValueError:
            where = path
        self.items.setdefault((str(where), key), f"{where}: {key}: {what}")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items.values())


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _get(d, dotted: str):
    """d["a"]["b"] for "a.b"; a missing key (or a non-dict on the way) is KeyError."""
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(dotted)
        cur = cur[part]
    return cur


def _number(p: Problems, path: Path, key: str, v, *, reason=None, lo=None, hi=None, missing=False):
    """A metric that must be a finite number (in [lo, hi] where given), or null with ``reason``.
    Returns the number, or None."""
    if missing:
        p.add(path, key, "missing")
        return None
    if v is None:
        if not reason:
            p.add(path, key, "null without a reason (an undefined value needs one: not_defined, *_reason, skipped)")
        return None
    if not _is_num(v):
        p.add(path, key, f"should be a number, got {v!r}")
        return None
    if not math.isfinite(v):
        p.add(path, key, f"not finite ({v})")
        return None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        p.add(path, key, f"{v} is not in [{lo}, {hi}]")
    return float(v)


def _metric(p: Problems, path: Path, d: dict, key: str, prefix: str = "", **kw):
    """:func:`_number` of ``d[key]`` (dotted; named ``prefix + key``); an absent key is a problem."""
    try:
        v = _get(d, key)
    except KeyError:
        return _number(p, path, prefix + key, None, missing=True)
    return _number(p, path, prefix + key, v, **kw)


def _interval(p: Problems, path: Path, key: str, iv, point, lo=None, hi=None) -> None:
    """[low, high]: numbers, finite, ordered, inside [lo, hi] and around ``point``."""
    if not isinstance(iv, (list, tuple)) or len(iv) != 2 or not all(_is_num(x) for x in iv):
        p.add(path, key, f"should be a [low, high] pair of numbers, got {iv!r}")
        return
    a, b = float(iv[0]), float(iv[1])
    if not (math.isfinite(a) and math.isfinite(b)):
        p.add(path, key, f"not finite ({iv})")
    elif a > b:
        p.add(path, key, f"not ordered: low {a} > high {b}")
    elif (lo is not None and a < lo - TOL) or (hi is not None and b > hi + TOL):
        p.add(path, key, f"[{a}, {b}] is not inside [{lo}, {hi}]")
    elif point is not None and not (a - TOL <= point <= b + TOL):
        p.add(path, key, f"[{a}, {b}] does not contain its point estimate {point}")


def _walk(d, prefix=""):
    """(dotted key, value) of every leaf of nested dicts and lists."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _walk(v, f"{prefix}[{i}]")
    else:
        yield prefix, d


def _read_json(p: Problems, path: Path):
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        p.add(path, "(file)", f"not valid JSON ({e})")
        return None
    if not isinstance(data, dict):
        p.add(path, "(file)", f"the top level should be a JSON object, got {type(data).__name__}")
        return None
    return data


def _finite_everywhere(p: Problems, path: Path, data: dict) -> None:
    """Any metrics JSON: no NaN/Infinity token, no value its writer found non-finite
    (``non_finite``: vhe.files.write_json writes those as null), no diverged model."""
    for key, v in _walk(data):
        if isinstance(v, float) and not math.isfinite(v):
            p.add(path, key, f"not finite ({v})")
    for key, why in (data.get("non_finite") or {}).items():
        p.add(path, key, f"not finite (written as null; non_finite: {why})")
    if data.get("diverged"):
        p.add(path, "diverged", str(data["diverged"]))


def _accuracy_entry(p: Problems, path: Path, key: str, e, reason=None) -> None:
    """An ``analysis.evaluate.accuracy_summary`` entry (models and baselines): accuracy in [0, 1]
    and equal to correct / n_trials, per_trial consistent, ci95 (and ci95_wilson) ordered, inside
    [0, 1] and around the accuracy, or null with ``ci95_reason`` (fewer than 2 trials)."""
    if e is None:
        if not reason:
            p.add(path, key, "null without a reason")
        return
    if not isinstance(e, dict):
        p.add(path, key, f"should be an object, got {e!r}")
        return
    if "accuracy" not in e:
        p.add(path, f"{key}.accuracy", "missing")
        return
    acc = _number(p, path, f"{key}.accuracy", e["accuracy"], reason=reason or e.get("skipped"), lo=0.0, hi=1.0)
    if acc is None:
        return
    n, correct = e.get("n_trials"), e.get("correct")
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 0):
        p.add(path, f"{key}.n_trials", f"should be a count, got {n!r}")
        n = None
    if correct is not None and n is not None:
        if not (isinstance(correct, int) and 0 <= correct <= n):
            p.add(path, f"{key}.correct", f"{correct!r} is not a count in [0, n_trials = {n}]")
        elif n and abs(acc - correct / n) > TOL:
            p.add(path, f"{key}.accuracy", f"{acc} is not correct / n_trials = {correct}/{n}")
    trials = e.get("per_trial")
    if trials is not None and n is not None:
        if not isinstance(trials, list) or any(t not in (0, 1) or isinstance(t, bool) for t in trials):
            p.add(path, f"{key}.per_trial", "should be a list of 0/1 outcomes")
        elif len(trials) != n or (correct is not None and sum(trials) != correct):
            p.add(
                path,
                f"{key}.per_trial",
                f"{len(trials)} trials with {sum(trials)} correct, but n_trials = {n} and correct = {correct}",
            )
    for ci in ("ci95", "ci95_wilson"):
        if ci not in e:
            if ci == "ci95":
                p.add(path, f"{key}.ci95", "missing")
            continue
        if e[ci] is None:
            if not e.get("ci95_reason"):
                p.add(
                    path,
                    f"{key}.{ci}",
                    "null without ci95_reason (an interval is undefined only from fewer than 2 trials)",
                )
            continue
        _interval(p, path, f"{key}.{ci}", e[ci], acc, 0.0, 1.0)


def check_evaluate(p: Problems, path: Path, d: dict, ev) -> None:
    """A metrics JSON of ``analysis.evaluate`` (class-structured models and VAEs)."""
    nd = d.get("not_defined") or {}
    if not isinstance(nd, dict):
        p.add(path, "not_defined", f"should be an object, got {nd!r}")
        nd = {}

    def reason(key: str):
        """not_defined[k] for ``key`` or one of its prefixes (e.g. "kl_c" for "kl_c.mean")."""
        for k, why in nd.items():
            if (key == k or key.startswith(k + ".")) and why:
                return why
        return None

    for key in ("K", "n_classes", "nll_estimate", "nll_stderr", "elbo", "bounds", "kl_c", "classification"):
        if key not in d:
            p.add(path, key, "missing")
    nll = _number(p, path, "nll_estimate", d.get("nll_estimate"), reason=reason("nll_estimate"))
    if nll is not None:
        _number(p, path, "nll_stderr", d.get("nll_stderr"), reason=reason("nll_stderr"), lo=0.0)
        elbo = _number(p, path, "elbo", d.get("elbo"), reason=reason("elbo"))
        if elbo is not None and nll > elbo + 1e-6 * max(1.0, abs(elbo)):
            p.add(path, "nll_estimate", f"{nll} exceeds -ELBO {elbo} (same samples: -log p <= -ELBO)")
    bounds = d.get("bounds")
    if bounds is None:
        _number(p, path, "bounds", None, reason=reason("bounds"))
    else:
        for s in ("test", "train"):
            _metric(p, path, bounds, f"{s}.value", "bounds.", reason=reason(f"bounds.{s}"))
    kl = d.get("kl_c")
    if kl is None:
        _number(p, path, "kl_c", None, reason=reason("kl_c"))
    else:
        _number(
            p,
            path,
            "kl_c.mean",
            kl.get("mean") if isinstance(kl, dict) else kl,
            reason=reason("kl_c.mean"),
            missing=isinstance(kl, dict) and "mean" not in kl,
        )
    cl = d.get("classification")
    if cl is None:
        if not reason("classification"):
            p.add(path, "classification", "null without a reason")
        return
    wanted = {
        "validation_runs": ev.validation_runs["n_runs"] > 0 and not reason("classification.validation_runs"),
        "lake_runs": bool(ev.lake_runs),
        "within_alphabet_runs": ev.within_alphabet_runs > 0,
    }
    sets = {s: cl.get(s) for s in wanted}
    episodes = cl.get("episodes") or {}
    for w in ev.episodes.get("ways", []):
        for s in ev.episodes.get("shots", []):
            wanted[f"episodes.{w}way_{s}shot"] = True
            sets[f"episodes.{w}way_{s}shot"] = episodes.get(f"{w}way_{s}shot")
    for key, entry in episodes.items():
        sets.setdefault(f"episodes.{key}", entry)
    for set_, entries in sets.items():
        if not entries:
            if wanted.get(set_):
                p.add(path, f"classification.{set_}", "missing or empty, but the profile evaluates it")
            continue
        for est in ev.estimators:
            if est not in entries:
                p.add(path, f"classification.{set_}.{est}", "missing (an estimator of evaluation.estimators)")
        for est, entry in entries.items():
            key = f"classification.{set_}.{est}"
            _accuracy_entry(p, path, key, entry, reason=reason(key))


def _se_pair(p: Problems, path: Path, d: dict, prefix: str, value_key: str, se_key: str) -> None:
    """A structured metric (required, finite) and its standard error: finite and >= 0, or null
    with ``<se_key>_reason`` (analysis.structured_common.se_reasons: fewer than 2 units)."""
    v = _metric(p, path, d, value_key, prefix)
    if v is None or se_key not in d:
        if v is not None:
            p.add(path, prefix + se_key, "missing")
        return
    _number(p, path, prefix + se_key, d[se_key], reason=d.get(f"{se_key}_reason"), lo=0.0)


def check_hierarchical(p: Problems, path: Path, d: dict, comparison: str | None) -> None:
    """A metrics JSON of ``analysis.hierarchical`` (via ``analysis.structured``)."""
    _se_pair(p, path, d, "", "bound_per_image", "bound_se")
    kl = d.get("kl")
    if not isinstance(kl, dict) or not kl:
        p.add(path, "kl", f"should be an object of KLs per latent, got {kl!r}")
    else:
        for latent, v in kl.items():
            _number(p, path, f"kl.{latent}", v)
    cm = d.get("class_model")
    if cm is None:
        if comparison:
            p.add(path, "class_model", f"null, but the profile has the comparison model {comparison}")
    elif not isinstance(cm, dict):
        p.add(path, "class_model", f"should be an object, got {cm!r}")
    else:
        _se_pair(p, path, cm, "class_model.", "bound_per_image", "bound_se")
        _se_pair(p, path, d, "", "bound_difference", "bound_difference_se")
    nll = d.get("nll")
    if not isinstance(nll, dict):
        p.add(path, "nll", f"should be an object (evaluation.n_samples >= 1), got {nll!r}")
    else:
        _se_pair(p, path, nll, "nll.", "nll_per_image", "nll_se")
        if "class_nll_per_image" in nll or cm is not None:
            _se_pair(p, path, nll, "nll.", "class_nll_per_image", "class_nll_se")
            _se_pair(p, path, nll, "nll.", "nll_improvement", "nll_improvement_se")
    if isinstance(nll, dict) or "context_nll" in d:  # measured with -log p(X) (evaluation.n_samples >= 1)
        check_context_nll(p, path, d.get("context_nll"), cm is not None)
    check_oneshot_context(p, path, d.get("oneshot_context"), cm is not None)
    style = d.get("alphabet_style")
    if not isinstance(style, dict):
        p.add(path, "alphabet_style", f"should be an object, got {style!r}")
    elif not style.get("skipped"):
        for k in ("accuracy", "chance", "classifier_accuracy_real"):
            _metric(p, path, style, k, "alphabet_style.", lo=0.0, hi=1.0)
        _bootstrap(p, path, style, "alphabet_style.")
        controls = style.get("controls")
        if not isinstance(controls, dict):
            p.add(path, "alphabet_style.controls", f"should be an object, got {controls!r}")
            return
        for name in ("prior_a", "class_model"):
            entry, key = controls.get(name), f"alphabet_style.controls.{name}"
            if name == "class_model" and entry is None:
                if cm is not None or not controls.get("class_model_reason"):
                    p.add(path, key, "null, but the comparison model was evaluated" if cm else "null without a reason")
            elif isinstance(entry, dict):
                _metric(p, path, entry, "accuracy", key + ".", lo=0.0, hi=1.0)
                _bootstrap(p, path, entry, key + ".")
            elif name in controls:
                p.add(path, key, f"should be an object, got {entry!r}")


def _bootstrap(p: Problems, path: Path, entry: dict, prefix: str) -> None:
    """``accuracy_ci95`` of an alphabet-style entry: a [low, high] inside [0, 1] around ``accuracy``,
    or null with ``accuracy_ci95_reason`` (fewer than 2 alphabets)."""
    if "accuracy_ci95" not in entry:
        p.add(path, prefix + "accuracy_ci95", "missing")
    elif entry["accuracy_ci95"] is None:
        if not entry.get("accuracy_ci95_reason"):
            p.add(path, prefix + "accuracy_ci95", "null without accuracy_ci95_reason")
    else:
        acc = entry.get("accuracy")
        _interval(p, path, prefix + "accuracy_ci95", entry["accuracy_ci95"], acc if _is_num(acc) else None, 0.0, 1.0)


def _paired_gain(p: Problems, path: Path, ctx: dict, key: str, first: str, second: str) -> None:
    """A paired difference of ``context_nll`` (nats per image): finite, its SE >= 0 (or null with a
    reason), its ``<key>_ci95`` around it (or null with ``<key>_ci95_reason``), and equal to
    ``first - second`` (the mean of per-character differences is the difference of the means)."""
    prefix = "context_nll."
    _se_pair(p, path, ctx, prefix, key, f"{key}_se")
    v, ci_key = ctx.get(key), f"{key}_ci95"
    if not _is_num(v):
        return
    if ci_key not in ctx:
        p.add(path, prefix + ci_key, "missing")
    elif ctx[ci_key] is None:
        if not ctx.get(f"{ci_key}_reason"):
            p.add(path, prefix + ci_key, f"null without {ci_key}_reason (undefined only from fewer than 2 characters)")
    else:
        _interval(p, path, prefix + ci_key, ctx[ci_key], float(v))
    a, b = ctx.get(first), ctx.get(second)
    if _is_num(a) and _is_num(b) and abs(v - (a - b)) > 1e-6 * max(1.0, abs(a), abs(b)):
        p.add(path, prefix + key, f"{v} is not {first} - {second} = {a - b}")


def check_context_nll(p: Problems, path: Path, ctx, with_class: bool) -> None:
    """``context_nll`` (analysis.hierarchical.context_likelihood): -log p(X | C)/|X| with and without
    the alphabet context (nats per image, SEs), the paired gains against no context and (``with_class``:
    a class model was evaluated) against the class model, and the share of characters helped."""
    if not isinstance(ctx, dict):
        p.add(path, "context_nll", f"should be an object (measured with nll), got {ctx!r}")
        return
    if ctx.get("skipped"):
        return
    prefix = "context_nll."
    _se_pair(p, path, ctx, prefix, "nll_context_per_image", "nll_context_se")
    _se_pair(p, path, ctx, prefix, "nll_no_context_per_image", "nll_no_context_se")
    _paired_gain(p, path, ctx, "context_gain", "nll_no_context_per_image", "nll_context_per_image")
    if with_class or "context_gain_vs_class" in ctx:
        _se_pair(p, path, ctx, prefix, "class_nll_per_image", "class_nll_se")
        _paired_gain(p, path, ctx, "context_gain_vs_class", "class_nll_per_image", "nll_context_per_image")
    _metric(p, path, ctx, "context_helps_share", prefix, lo=0.0, hi=1.0)


def check_oneshot_context(p: Problems, path: Path, one, with_class: bool) -> None:
    """``oneshot_context`` (analysis.hierarchical.oneshot_context): an accuracy entry per arm
    (with_context, prior_a, no_context, and class_model where a class model was evaluated) and chance."""
    if not isinstance(one, dict):
        p.add(path, "oneshot_context", f"should be an object, got {one!r}")
        return
    if one.get("skipped"):
        return
    arms = ("with_context", "prior_a", "no_context") + (("class_model",) if with_class or "class_model" in one else ())
    for arm in arms:
        if arm not in one:
            p.add(path, f"oneshot_context.{arm}", "missing")
        else:
            _accuracy_entry(p, path, f"oneshot_context.{arm}", one[arm])
    _metric(p, path, one, "chance", "oneshot_context.", lo=0.0, hi=1.0)


def check_factorial(p: Problems, path: Path, d: dict) -> None:
    """A metrics JSON of ``analysis.factorial`` (via ``analysis.structured``)."""
    for part in ("texture", "character"):
        for k in ("accuracy", "chance", "classifier_accuracy_real"):
            _metric(p, path, d, f"{part}.{k}", lo=0.0, hi=1.0)
    _metric(p, path, d, "both_accuracy", lo=0.0, hi=1.0)
    cells = d.get("cells")
    if not (isinstance(cells, int) and not isinstance(cells, bool) and cells > 0):
        p.add(path, "cells", f"should be a positive count, got {cells!r}")


def mhd_reference(max_runs: int | None) -> dict:
    """{"mhd_28" | "mhd_105": {"correct", "n_trials", "runs": [(name, correct), ...]}} on the first
    ``max_runs`` of Lake's runs (all 20 when None), from :data:`MHD_REFERENCE`."""
    ref = json.loads(MHD_REFERENCE.read_text())
    n = len(ref["runs"]) if max_runs is None else min(int(max_runs), len(ref["runs"]))
    out = {}
    for name, counts in ref["correct"].items():
        out[name] = {
            "correct": sum(counts[:n]),
            "n_trials": sum(ref["n_queries"][:n]),
            "runs": list(zip(ref["runs"][:n], counts[:n])),
        }
    return out


def check_baselines(p: Problems, path: Path, d: dict, max_runs: int | None) -> None:
    """``metrics/baselines.json`` (``analysis.baselines``): every baseline's accuracy entry, and
    Lake's MHD equal to :func:`mhd_reference` on the profile's ``evaluation.max_runs`` runs
    (deterministic: a difference of one trial is a failure)."""
    from paper_figures.metrics import BASELINES

    lake = d.get("lake_runs")
    if not isinstance(lake, dict):
        p.add(path, "lake_runs", f"should be an object, got {lake!r}")
        return
    for name in BASELINES:
        if name not in lake:
            p.add(path, f"lake_runs.{name}", "missing")
        else:
            _accuracy_entry(p, path, f"lake_runs.{name}", lake[name])
    for name, want in mhd_reference(max_runs).items():
        got = lake.get(name)
        if not isinstance(got, dict):
            continue
        ref = f"{MHD_REFERENCE.relative_to(ROOT)} (the first {len(want['runs'])} of Lake's runs)"
        if (got.get("correct"), got.get("n_trials")) != (want["correct"], want["n_trials"]):
            p.add(
                path,
                f"lake_runs.{name}",
                f"{got.get('correct')}/{got.get('n_trials')} correct, expected "
                f"{want['correct']}/{want['n_trials']} from {ref}",
            )
        elif not (_is_num(got.get("accuracy")) and abs(got["accuracy"] - want["correct"] / want["n_trials"]) <= TOL):
            p.add(
                path,
                f"lake_runs.{name}.accuracy",
                f"{got.get('accuracy')!r}, expected {want['correct'] / want['n_trials']} from {ref}",
            )
        runs = got.get("runs")
        if isinstance(runs, list) and [(r.get("name"), r.get("correct")) for r in runs if isinstance(r, dict)] != [
            tuple(x) for x in want["runs"]
        ]:
            p.add(path, f"lake_runs.{name}.runs", f"per-run correct answers differ from {ref}: expected {want['runs']}")


def _csv_rows(p: Problems, path: Path, columns) -> list[dict] | None:
    import csv

    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        p.add(path, "(file)", f"cannot read as CSV ({e})")
        return None
    lacking = [c for c in columns if c not in header]
    if lacking:
        p.add(path, "(header)", f"lacks the column(s) {lacking} (has {header})")
        return None
    return rows


def _float(text):
    """A CSV cell as a float (None when empty; the text itself when it is not a number)."""
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


#: the range of a value by metrics.csv's ``unit``
UNIT_RANGE = {"fraction": (0.0, 1.0), "percent": (0.0, 100.0), "%": (0.0, 100.0)}


def check_metrics_csv(p: Problems, path: Path, cfg) -> None:
    """``tables/metrics.csv`` (``paper_figures.metrics.metrics_frame``): every value a finite
    number (the frame has no row for a null metric), inside its unit's range (fraction: [0, 1]),
    its interval (ci_low, ci_high) both or neither given, ordered, inside the range and around the
    value; an interval metric without an interval only from fewer than 2 units (n); a row for
    every model of the profile and every baseline."""
    from paper_figures.metrics import BASELINES, COLUMNS, INTERVAL_METRICS
    from pipeline.outputs import models

    rows = _csv_rows(p, path, COLUMNS)
    if rows is None:
        return
    for i, r in enumerate(rows, start=2):  # line 1 is the header
        key = f"line {i} ({r['model']} {r['metric']} {r['set'] or '-'} {r['estimator'] or '-'})"
        v = _float(r["value"])
        if v is None:
            p.add(path, key, "value is empty (a metric measured as null)")
            continue
        lo, hi = UNIT_RANGE.get(r["unit"], (None, None))
        v = _number(p, path, f"{key} value", v, lo=lo, hi=hi)
        a, b = _float(r["ci_low"]), _float(r["ci_high"])
        if a is None and b is None:
            n = _float(r["n"])
            if r["metric"] in INTERVAL_METRICS and isinstance(n, float) and n >= 2:
                p.add(path, f"{key} ci", f"no interval from n = {int(n)} units (undefined only from fewer than 2)")
        elif a is None or b is None:
            p.add(path, f"{key} ci", f"only one end of the interval: ci_low {r['ci_low']!r}, ci_high {r['ci_high']!r}")
        else:
            _interval(p, path, f"{key} ci", [a, b], v, lo, hi)
    have = {r["model"] for r in rows}
    wanted = list(models(cfg)) + (list(BASELINES) if cfg["evaluation"]["lake_runs"] else [])
    for m in wanted:
        if m not in have:
            p.add(
                path,
                m,
                "no row: the profile measures this model"
                if m in models(cfg)
                else "no row: the profile evaluates Lake's runs, so this baseline",
            )


def measurable_claims(cfg, metrics_dir: Path | None = None) -> dict:
    """{claim text: scope -> (bool, why)}: whether the profile produces a claim's inputs
    (paper_figures.claims): its models are in the profile (and, for classification claims,
    evaluation.lake_runs is on); for the hierarchical claims (scope: the model), whether its metrics
    JSON under ``metrics_dir`` holds them (context gains against no context and the class model; an
    alphabet-style accuracy: a small profile may have too few alphabets). A claim text not listed
    here is only checked for its verdict."""
    from paper_figures.claims import CONTEXT_CLAIM, STYLE_CLAIM
    from paper_figures.tables import DECODERS
    from pipeline.outputs import models

    have = {
        (e.get("objective", "vhe"), e.get("decoder", "deconv"))
        for e in (cfg.get("models") or {}).values()
        if e.get("experiment") == "class"
    }
    lake = bool(cfg["evaluation"]["lake_runs"])
    label_to_dec = {label: dec for dec, label in DECODERS.items()}

    def pair(dec):
        return ("ns", dec) in have and ("vhe", dec) in have

    def kl(scope):
        return pair("pixelcnn"), "the profile has ns and vhe class models with a PixelCNN decoder"

    def vs_ns(scope):
        dec = label_to_dec.get(scope)
        return bool(dec and pair(dec) and lake), f"the profile has ns and vhe {dec} class models and Lake's runs"

    def vs_mhd(scope):
        return any(o == "vhe" for o, _ in have) and lake, "the profile has a vhe class model and Lake's runs"

    def nll(scope):
        dec = label_to_dec.get(scope)
        ok = bool(dec) and ("vhe", dec) in have and any(o != "vhe" and d == dec for o, d in have)
        return ok, f"the profile has a vhe {dec} class model and another objective with that decoder"

    def section(scope, key) -> dict:
        """``key`` of the hierarchical model ``scope``'s metrics JSON ({} when absent or unreadable)."""
        if metrics_dir is None or models(cfg).get(scope) != "hierarchical":
            return {}
        try:
            d = json.loads((Path(metrics_dir) / f"{scope}.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        sec = d.get(key) if isinstance(d, dict) else None
        return sec if isinstance(sec, dict) else {}

    def context(scope):
        ctx = section(scope, "context_nll")
        ok = all(_is_num(ctx.get(k)) for k in ("context_gain", "context_gain_vs_class"))
        return ok, f"metrics/{scope}.json holds the context gains against no context and the class model"

    def style(scope):
        sty = section(scope, "alphabet_style")
        ok = _is_num(sty.get("accuracy")) and _is_num(sty.get("chance"))
        return ok, f"metrics/{scope}.json holds the alphabet-style accuracy"

    return {
        CONTEXT_CLAIM: context,
        STYLE_CLAIM: style,
        "With a PixelCNN decoder the NS objective leaves c nearly unused while VHE uses it": kl,
        "VHE classifies better than NS (Lake's runs)": vs_ns,
        "VHE beats Lake's modified-Hausdorff baseline on the same images (Lake's runs, 28x28)": vs_mhd,
        "VHE's test likelihood is the best of the four objectives": nll,
    }


def check_claims_csv(p: Problems, path: Path, cfg) -> None:
    """``tables/claims.csv`` (``paper_figures.claims``): every verdict is one of holds / direction
    only / does not hold / not measured; not every claim is "not measured"; and a claim whose
    inputs the profile produces (:func:`measurable_claims`) has a measured verdict."""
    from paper_figures.claims import COLUMNS, DIRECTION, FAILS, HOLDS, UNMEASURED

    verdicts = (HOLDS, DIRECTION, FAILS, UNMEASURED)
    rows = _csv_rows(p, path, COLUMNS)
    if rows is None:
        return
    if not rows:
        p.add(path, "(rows)", "no claims")
        return
    rules = measurable_claims(cfg, path.parent.parent / "metrics")
    for i, r in enumerate(rows, start=2):
        key = f"line {i} ({r['claim']} [{r['scope']}])"
        if r["verdict"] not in verdicts:
            p.add(path, f"{key} verdict", f"{r['verdict']!r} is not one of {list(verdicts)}")
        elif r["verdict"] == UNMEASURED and r["claim"] in rules:
            ok, why = rules[r["claim"]](r["scope"])
            if ok:
                p.add(path, f"{key} verdict", f"not measured, but {why}: its inputs are missing ({r['evidence']})")
    if all(r["verdict"] == UNMEASURED for r in rows):
        p.add(path, "verdict", f"every one of the {len(rows)} claims is {UNMEASURED!r}")


def check_content(cfg, root: Path, skip=()) -> Problems:
    """Every content rule (see the module docstring) on the run of ``cfg`` under ``root``;
    files in ``skip`` (missing or empty: reported by the presence check) are not read."""
    from experiments.sections import Evaluation
    from pipeline import outputs as OUT

    p = Problems(root)
    skip = {Path(s) for s in skip}
    rd = root / OUT.results_dir(cfg)
    ev_all = Evaluation.of(cfg["evaluation"])
    metrics_dir = rd / "metrics"
    checked = set()
    for name, exp in OUT.models(cfg).items():
        path = root / OUT.metrics_file(cfg, name)
        checked.add(path)
        if path in skip or not path.is_file():
            continue
        data = _read_json(p, path)
        if data is None:
            continue
        _finite_everywhere(p, path, data)
        if exp in OUT.CLASS_EXPERIMENTS:
            check_evaluate(p, path, data, ev_all.for_decoder(cfg["models"][name].get("decoder")))
        elif exp == "hierarchical":
            check_hierarchical(p, path, data, OUT.comparison_model(cfg, name))
        elif exp == "factorial":
            check_factorial(p, path, data)
    for path in [root / f for f in OUT.baseline_files(cfg)]:
        checked.add(path)
        if path not in skip and path.is_file():
            data = _read_json(p, path)
            if data is not None:
                _finite_everywhere(p, path, data)
                check_baselines(p, path, data, cfg["evaluation"]["max_runs"])
    # every other metrics JSON (data_gap.json, ...): finite throughout
    for path in sorted(metrics_dir.glob("*.json")) if metrics_dir.is_dir() else []:
        if path not in checked and path not in skip and not path.name.startswith("."):
            data = _read_json(p, path)
            if data is not None:
                _finite_everywhere(p, path, data)
    for name, check in (("metrics.csv", check_metrics_csv), ("claims.csv", check_claims_csv)):
        path = rd / "tables" / name
        if path not in skip and path.is_file():
            check(p, path, cfg)
    return p


def check_wandb(configfile, root: Path) -> int:
    from experiments.config import load_config
    from experiments.tracking import missing_tracking, wandb_problem
    from pipeline.outputs import models, results_dir

    cfg = load_config(configfile)
    if cfg["wandb"]["mode"] != "offline":
        print(f"check_outputs: W&B mode is {cfg['wandb']['mode']!r}: no offline runs to check")
        return 0
    problem = wandb_problem()
    if problem:
        print(f"check_outputs: W&B: {problem}", file=sys.stderr)
        return 1
    gaps = missing_tracking(root / results_dir(cfg) / "wandb", cfg["run"], list(models(cfg)))
    if gaps:
        print(f"check_outputs: {len(gaps)} W&B gaps:", file=sys.stderr)
        for g in gaps:
            print(f"  {g}", file=sys.stderr)
        return 1
    print(
        f"check_outputs: W&B offline runs hold the training run, model artifact and evaluation run of all "
        f"{len(models(cfg))} models and the summary run"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
