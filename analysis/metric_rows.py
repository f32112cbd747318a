"""The rows of one evaluator's metrics JSON, read by exact keys: one dict per number.

Row layout: :data:`experiments.tracking.METRIC_COLUMNS` (``COLUMNS`` here)::

    model, experiment, objective, decoder, metric, set, estimator, value, ci_low, ci_high, n, K,
    unit, steps, git_commit

:func:`evaluate_rows` reads an ``analysis.evaluate`` JSON, :func:`structured_rows` an
``analysis.structured`` one and :func:`baseline_rows` ``analysis.baselines``' ``baselines.json``.
A key that is absent is a :class:`MetricsError` naming the file and the key; a key whose value
is ``null`` gives no row. The evaluators log these rows to W&B
(``experiments.tracking.log_evaluation``); ``paper_figures.metrics`` gathers them for a whole run
into the table every paper table and figure is derived from (the metrics it lists are described
there).

Imports go downwards: :mod:`analysis.stats` and :mod:`experiments.tracking` only, so the
evaluators and ``paper_figures`` (which may import downwards) share it.
"""

from __future__ import annotations

import math

from experiments.tracking import METRIC_COLUMNS as COLUMNS

from .stats import Z95

__all__ = [
    "COLUMNS",
    "NATS",
    "FRACTION",
    "BASELINES",
    "MetricsError",
    "need",
    "evaluate_rows",
    "baseline_rows",
    "structured_rows",
]

NATS, FRACTION = "nats/image", "fraction"


class MetricsError(ValueError):
    """A metrics (or history) file is malformed or lacks a key its evaluator defines."""


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
    if (
        not isinstance(v, (list, tuple))
        or len(v) != 2
        or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)
    ):
        raise MetricsError(f"{where}: {path!r} should be a [low, high] pair of numbers, got {v!r}")
    return float(v[0]), float(v[1])


# --------------------------------------------------------------------------- rows
def _row(
    base: dict, metric: str, value, *, set_=None, estimator=None, ci=(None, None), n=None, K=None, unit=NATS
) -> dict:
    return {
        **base,
        "metric": metric,
        "set": set_,
        "estimator": estimator,
        "value": value,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "n": n,
        "K": K,
        "unit": unit,
    }


def _accuracy_rows(base, entry, where, path, set_, estimator, K) -> list[dict]:
    acc = _num(need(entry, "accuracy", where), where, f"{path}.accuracy")
    if acc is None:  # e.g. episodes skipped for too few characters
        return []
    ci = _interval(need(entry, "ci95", where), where, f"{path}.ci95")
    return [
        _row(
            base,
            "accuracy",
            acc,
            set_=set_,
            estimator=estimator,
            ci=ci,
            n=need(entry, "n_trials", where),
            K=K,
            unit=FRACTION,
        )
    ]


def evaluate_rows(name: str, info: dict, data: dict, where: str) -> list[dict]:
    """Rows of an ``analysis.evaluate`` metrics JSON (class-structured models and VAEs)."""
    base = {
        "model": name,
        **info,
        "steps": need(data, "checkpoint.step", where),
        "git_commit": need(data, "provenance.git_commit", where),
    }
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
                rows += _accuracy_rows(
                    base, entry, where, f"classification.episodes.{key}.{method}", f"episodes/{key}", method, Kc
                )
    return rows


#: Lake's runs baselines of analysis.baselines, in table order
BASELINES = ("pixel_nn_28", "mhd_28", "pixel_nn_105", "mhd_105")


def baseline_rows(data: dict, where: str) -> list[dict]:
    """Rows of ``metrics/baselines.json`` (``analysis.baselines``)."""
    lake = need(data, "lake_runs", where)
    rows = []
    for name in BASELINES:
        if name in lake:
            base = {
                "model": name,
                "experiment": "baseline",
                "objective": None,
                "decoder": None,
                "steps": None,
                "git_commit": (data.get("provenance") or {}).get("git_commit"),
            }
            rows += _accuracy_rows(base, lake[name], where, f"lake_runs.{name}", "lake_runs", name, None)
    return rows


def _se_row(base, metric, data, key, se_key, where, set_="evaluation", unit=NATS, K=None, n=None, path=None):
    """[one row]: ``data[key]`` (required) with the interval value ± 1.96 ``data[se_key]``; [] when
    the value is null. ``path`` prefixes the keys in error messages."""
    at = f"{path}." if path else ""
    v = _num(need(data, key, where), where, f"{at}{key}")
    if v is None:
        return []
    se = _num(data.get(se_key), where, f"{at}{se_key}") if se_key else None
    ci = (v - Z95 * se, v + Z95 * se) if se is not None and math.isfinite(se) else (None, None)
    return [_row(base, metric, v, set_=set_, ci=ci, n=n, K=K, unit=unit)]


def _ci_pair(entry: dict, key: str, where: str, path: str):
    """The [low, high] interval ``entry[key]`` (absent or null: no interval)."""
    return _interval(entry.get(key), where, f"{path}.{key}")


def _ci_row(base, metric, entry, key, where, path, *, ci_key=None, set_, n=None, K=None, unit=FRACTION, estimator=None):
    """[one row]: ``entry[key]`` (required) with the [low, high] interval ``entry[ci_key]`` (absent
    or null: none); [] when the value is null. ``path`` names ``entry`` in error messages."""
    v = _num(need(entry, key, where), where, f"{path}.{key}")
    if v is None:
        return []
    ci = _ci_pair(entry, ci_key, where, path) if ci_key else (None, None)
    return [_row(base, metric, v, set_=set_, estimator=estimator, ci=ci, n=n, K=K, unit=unit)]


def _context_rows(base, ctx, where) -> list[dict]:
    """Rows of ``context_nll`` (analysis.hierarchical.context_likelihood): -log p(X | C)/|X| with the
    alphabet context, without, and their paired differences (nats/image)."""
    K, n = need(ctx, "n_samples", where), need(ctx, "characters", where)
    rows = []
    for metric, key, se_key in (
        ("nll_context", "nll_context_per_image", "nll_context_se"),
        ("nll_no_context", "nll_no_context_per_image", "nll_no_context_se"),
    ):
        rows += _se_row(base, metric, ctx, key, se_key, where, K=K, n=n, path="context_nll")
    for metric in ("context_gain", "context_gain_vs_class"):
        if metric == "context_gain_vs_class" and metric not in ctx:
            continue
        rows += _ci_row(
            base,
            metric,
            ctx,
            metric,
            where,
            "context_nll",
            ci_key=f"{metric}_ci95",
            set_="evaluation",
            n=n,
            K=K,
            unit=NATS,
        )
    rows += _ci_row(
        base, "context_helps_share", ctx, "context_helps_share", where, "context_nll", set_="evaluation", n=n, K=K
    )
    return rows


def _oneshot_rows(base, one, where) -> list[dict]:
    """Rows of ``oneshot_context`` (analysis.hierarchical.oneshot_context): within-alphabet one-shot
    accuracy per arm (``estimator``: with_context, prior_a, no_context, class_model), Wilson intervals."""
    K = need(one, "n_samples", where)
    rows = []
    for arm in ("with_context", "prior_a", "no_context", "class_model"):
        entry = one.get(arm)
        if entry is None:
            continue
        path = f"oneshot_context.{arm}"
        need(entry, "ci95", where)
        n = need(entry, "n_trials", where)
        rows += _ci_row(
            base,
            "oneshot_accuracy",
            entry,
            "accuracy",
            where,
            path,
            ci_key="ci95",
            set_="within_alphabet",
            n=n,
            K=K,
            estimator=arm,
        )
    chance = _num(need(one, "chance", where), where, "oneshot_context.chance")
    rows.append(_row(base, "oneshot_chance", chance, set_="within_alphabet", unit=FRACTION))
    return rows


def _style_control_rows(base, style, where) -> list[dict]:
    """Rows of ``alphabet_style.controls``: the style measure for generators that ignore the alphabet."""
    rows = []
    n = style.get("alphabets")
    for name, entry in (style.get("controls") or {}).items():
        if not isinstance(entry, dict):
            continue
        path = f"alphabet_style.controls.{name}"
        v = _num(need(entry, "accuracy", where), where, f"{path}.accuracy")
        ci = _ci_pair(entry, "accuracy_ci95", where, path)
        rows.append(_row(base, f"alphabet_style_{name}", v, set_="evaluation", ci=ci, n=n, unit=FRACTION))
    return rows


def _factorial_extra_rows(base, data, where) -> list[dict]:
    """Rows of the factorial diagnostics (analysis.factorial): KL per latent, the t-swap test, the
    texture of the row image in the cells (leak through c) and the texture classifier on noisy real
    images. Sections absent from older metrics files give no rows."""
    rows = []
    kl = data.get("kl")
    if kl is not None:
        det = need(data, "kl_episodes", where)
        se_of, n = need(det, "se", where), need(det, "n_targets", where)
        for latent, v in kl.items():
            v = _num(v, where, f"kl.{latent}")
            se = _num(se_of.get(latent), where, f"kl_episodes.se.{latent}")
            ok = v is not None and se is not None and math.isfinite(se)
            ci = (v - Z95 * se, v + Z95 * se) if ok else (None, None)
            rows.append(_row(base, f"kl_{latent}", v, set_="evaluation", ci=ci, n=n, unit="nats"))
    sw = data.get("t_swap")
    if sw is not None and "skipped" not in sw:
        n = need(sw, "cells", where)
        for metric, key in (("t_swap_follows_t", "follows_t"), ("t_swap_changed", "changed")):
            rows += _ci_row(base, metric, sw, key, where, "t_swap", ci_key=f"{key}_ci95", set_="grid", n=n)
        rows += _ci_row(base, "t_swap_chance", sw, "chance", where, "t_swap", set_="grid")
    tex = need(data, "texture", where)
    if "follows_row" in tex and _num(tex["follows_row"], where, "texture.follows_row") is not None:
        n = need(tex, "follows_row_cells", where)
        rows += _ci_row(
            base,
            "texture_follows_row",
            tex,
            "follows_row",
            where,
            "texture",
            ci_key="follows_row_ci95",
            set_="grid",
            n=n,
        )
        rows += _ci_row(base, "texture_follows_row_chance", tex, "follows_row_chance", where, "texture", set_="grid")
    rob = data.get("texture_robustness")
    if rob is not None and "skipped" not in rob:
        n = need(rob, "n_images", where)
        for i, entry in enumerate(need(rob, "flips", where)):
            rate = _num(need(entry, "flip_rate", where), where, f"texture_robustness.flips[{i}].flip_rate")
            acc = _num(need(entry, "accuracy", where), where, f"texture_robustness.flips[{i}].accuracy")
            rows.append(
                _row(
                    base,
                    f"texture_real_flip{round(100 * rate):g}pct",
                    acc,
                    set_="validation",
                    ci=_interval(entry.get("ci95"), where, f"texture_robustness.flips[{i}].ci95"),
                    n=n,
                    unit=FRACTION,
                )
            )
    return rows


def structured_rows(name: str, info: dict, data: dict, where: str) -> list[dict]:
    """Rows of an ``analysis.structured`` metrics JSON (hierarchical, factorial).

    The alphabet-context and factorial-diagnostic sections (``context_nll``, ``oneshot_context``,
    ``alphabet_style.controls``; ``kl``, ``t_swap``, ``texture.follows_row``, ``texture_robustness``)
    are read when present (metrics files written before they existed have none), by exact keys inside."""
    base = {
        "model": name,
        **info,
        "steps": need(data, "checkpoint_step", where),
        "git_commit": need(data, "provenance.git_commit", where),
    }
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
        ctx = data.get("context_nll")
        if ctx is not None and "skipped" not in ctx:
            rows += _context_rows(base, ctx, where)
        one = data.get("oneshot_context")
        if one is not None and "skipped" not in one:
            rows += _oneshot_rows(base, one, where)
        style = need(data, "alphabet_style", where)
        if "skipped" not in style:
            rows.append(
                _row(
                    base,
                    "alphabet_style",
                    _num(need(style, "accuracy", where), where, "alphabet_style.accuracy"),
                    set_="evaluation",
                    ci=_ci_pair(style, "accuracy_ci95", where, "alphabet_style"),
                    n=style.get("alphabets"),
                    unit=FRACTION,
                )
            )
            rows += _style_control_rows(base, style, where)
            rows.append(
                _row(
                    base,
                    "alphabet_style_chance",
                    _num(need(style, "chance", where), where, "alphabet_style.chance"),
                    unit=FRACTION,
                )
            )
            rows.append(
                _row(
                    base,
                    "alphabet_style_real",
                    _num(
                        need(style, "classifier_accuracy_real", where), where, "alphabet_style.classifier_accuracy_real"
                    ),
                    unit=FRACTION,
                )
            )
    elif info.get("experiment") == "factorial":
        for part in ("texture", "character"):
            sec = need(data, part, where)
            boot = sec.get("bootstrap_ci95")  # over rows and columns (absent from older metrics files)
            for suffix, key in (("accuracy", "accuracy"), ("chance", "chance"), ("real", "classifier_accuracy_real")):
                rows.append(
                    _row(
                        base,
                        f"{part}_{suffix}",
                        _num(need(sec, key, where), where, f"{part}.{key}"),
                        set_="grid",
                        ci=_interval(boot, where, f"{part}.bootstrap_ci95")
                        if suffix == "accuracy" and boot
                        else (None, None),
                        n=need(data, "cells", where),
                        unit=FRACTION,
                    )
                )
        rows.append(
            _row(
                base,
                "both_accuracy",
                _num(need(data, "both_accuracy", where), where, "both_accuracy"),
                set_="grid",
                n=need(data, "cells", where),
                unit=FRACTION,
            )
        )
        rows += _factorial_extra_rows(base, data, where)
    return rows
