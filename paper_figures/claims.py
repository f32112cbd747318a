"""The paper's claims checked on a run's numbers (the long-form metrics frame), and the choice of
the headline classification estimator.

The headline estimator of each decoder is the one with the best mean accuracy over that decoder's
class-structured models on the validation runs; Lake's runs never enter the choice. Classification claims compare two
classifiers on the same trials with McNemar's exact test on their per-trial outcomes (read from
the metrics JSON by exact key); every other value comes from the frame.

Where models were trained with several seeds (config ``replicates``: ``<model>_seed<k>``), each
comparison is made per seed (the models with the same training seed) and judged across seeds: a
paired accuracy comparison "holds" only if significant (McNemar p < 0.05) in every seed, "direction
only" if the direction agrees in every seed but not every seed is significant, "does not hold"
otherwise (:func:`seeds_verdict`); the KL and likelihood claims hold only if they hold in every
seed. Each rule says how many seeds it was judged on ("1 seed" without replicates).
"""

from __future__ import annotations

import pandas as pd

from analysis.stats import binomial_above, mcnemar

from .metrics import RunData, per_trial, value
from .tables import DECODERS, ESTIMATORS, OBJECTIVES, cell_model, fmt, fmt_ci, headline_label, headline_of, seed_summary

HOLDS, DIRECTION, FAILS, UNMEASURED = "holds", "direction only", "does not hold", "not measured"
CLASS_OBJECTIVES = ("ns", "resample", "rescale", "vhe")
COLUMNS = ["claim", "scope", "rule", "evidence", "verdict"]


def choose_headline(df: pd.DataFrame, exclude=()) -> tuple[dict[str, str], str]:
    """({decoder: estimator}, reason): per decoder, the estimator with the best mean accuracy on the
    validation runs over that decoder's class-structured models (conditional where a decoder has no
    validation runs). Per decoder because the estimators' errors depend on it: the decoder's cost
    sets K (evaluation.per_decoder), and the rule that needs no decoder (ns_kl) competes with
    decoder-based ones whose noise grows as K shrinks. ``exclude``: models left out of the choice
    (``paper_figures.make`` leaves out the replicates, so that training more seeds never changes the
    estimator every seed is judged with)."""
    cls = df[(df["metric"] == "accuracy") & (df["experiment"] == "class") & ~df["model"].isin(list(exclude))]
    val = cls[cls["set"] == "validation_runs"]
    decoders = [d for d in DECODERS if d in set(cls["decoder"])] or list(DECODERS)
    choice, parts = {}, []
    for dec in decoders:
        v = val[val["decoder"] == dec]
        if v.empty:
            choice[dec] = ESTIMATORS[0]
            parts.append(f"{DECODERS[dec]}: no validation runs were measured, the conditional estimator by default")
            continue
        means = v.groupby("estimator")["value"].mean()
        order = sorted(
            means.index, key=lambda m: (-round(float(means[m]), 6), ESTIMATORS.index(m) if m in ESTIMATORS else 99)
        )
        choice[dec] = order[0]
        detail = ", ".join(f"{m} {100 * means[m]:.1f}%" for m in order)
        parts.append(f"{DECODERS[dec]}: best mean over its {v['model'].nunique()} class models, {detail}")
    return choice, (
        "chosen per decoder on the validation runs (" + "; ".join(parts) + "); Lake's runs are not used for the choice"
    )


def _verdict(better: bool, p: float) -> str:
    if better and p < 0.05:
        return HOLDS
    return DIRECTION if better else FAILS


def seeds_verdict(results) -> str:
    """The verdict of a paired comparison across training seeds; ``results``: [(better, p)], one per
    seed (better: the first model's accuracy above the second's; p: McNemar's exact p-value on that
    seed's trials).

    "holds" when the first is better with p < 0.05 in every seed (an intersection-union test:
    rejecting "it fails in at least one seed" at 5% needs every seed's test to reject at 5%),
    "direction only" when it is better in every seed but not significant in all of them, "does not
    hold" when the second is at least as good in some seed; "not measured" without a seed. With one
    seed it is the one-run verdict (:func:`_verdict`)."""
    results = list(results)
    if not results:
        return UNMEASURED
    if all(better and p < 0.05 for better, p in results):
        return HOLDS
    return DIRECTION if all(better for better, _ in results) else FAILS


def seeds_phrase(seeds) -> str:
    """'1 seed (seed 0)' / '3 seeds (0, 1, 2)' ('1 seed' when none was measured)."""
    seeds = list(seeds)
    if len(seeds) <= 1:
        return "1 seed" + (f" (seed {seeds[0]})" if seeds else "")
    return f"{len(seeds)} seeds ({', '.join(map(str, seeds))})"


def spread(values, scale: float = 100.0, unit: str = "%", digits: int = 1) -> str:
    """'mean 62.1% (sd 1.2, 60.0–63.5)' of a list of numbers across seeds (sample sd)."""
    s = seed_summary(dict(enumerate(values)))
    f = lambda x: f"{scale * x:.{digits}f}"  # noqa: E731
    sd = f"sd {f(s['sd'])}, " if s["sd"] is not None else ""
    return f"mean {f(s['mean'])}{unit} ({sd}{f(s['min'])}–{f(s['max'])})"


def _paired_rule(first: str, second: str, seeds) -> str:
    """The rule text of a paired comparison on ``seeds``."""
    if len(list(seeds)) <= 1:
        return f"holds if McNemar's exact test on the same trials gives p < 0.05; {seeds_phrase(seeds)}"
    return (
        f"judged on {seeds_phrase(seeds)}: holds if {first} is above {second} with McNemar's exact test "
        f"on the same trials giving p < 0.05 in every seed, direction only if above in every seed but not "
        f"significant in all, does not hold otherwise"
    )


def paired_by_seed(run: RunData, df: pd.DataFrame, mine: dict, theirs: dict, set_: str = "lake_runs"):
    """Per seed both sides measured: ``mine``/``theirs`` {seed: (model, estimator)} ->
    ({seed: (row_mine, row_theirs, mcnemar of mine vs theirs, better)}, {seed: (n_mine, n_theirs)} of
    the seeds whose trials differ (not compared))."""
    out, different = {}, {}
    for seed in sorted(set(mine) & set(theirs)):
        (a, ea), (b, eb) = mine[seed], theirs[seed]
        ra, rb = value(df, a, "accuracy", set_, ea), value(df, b, "accuracy", set_, eb)
        if ra is None or rb is None:
            continue
        ta, tb = per_trial(run, a, set_, ea), per_trial(run, b, set_, eb)
        if len(ta) != len(tb):
            different[seed] = (len(ta), len(tb))
            continue
        out[seed] = (ra, rb, mcnemar(ta, tb), bool(ra["value"] > rb["value"]))
    return out, different


def _claim(claim, scope, rule, evidence, verdict) -> dict:
    return {"claim": claim, "scope": scope, "rule": rule, "evidence": evidence, "verdict": verdict}


def _kl_holds(kl_ns: float, kl_vhe: float) -> bool:
    return (kl_ns < 1.0 or kl_ns < 0.1 * kl_vhe) and kl_vhe >= 1.0 and kl_vhe > kl_ns


def kl_claim(run: RunData, df: pd.DataFrame) -> dict:
    """(1) With a PixelCNN decoder, NS leaves c nearly unused while VHE uses it (in every seed where
    both were trained)."""
    ns_by, vhe_by = (run.seed_models(cell_model(run, o, "pixelcnn")) for o in ("ns", "vhe"))
    kls = {}  # seed -> (KL of NS, KL of VHE)
    for seed in sorted(set(ns_by) & set(vhe_by)):
        ns, vhe = value(df, ns_by[seed], "kl_c", "test"), value(df, vhe_by[seed], "kl_c", "test")
        if ns is not None and vhe is not None:
            kls[seed] = (float(ns["value"]), float(vhe["value"]))
    rule = "KL(c) of NS < 1 nat or < 10% of VHE's, and VHE's KL(c) >= 1 nat and above NS's (PixelCNN decoder)"
    claim = "With a PixelCNN decoder the NS objective leaves c nearly unused while VHE uses it"
    if len(kls) <= 1:
        kl_ns, kl_vhe = next(iter(kls.values()), (None, None))
        verdict = UNMEASURED if kl_ns is None else (HOLDS if _kl_holds(kl_ns, kl_vhe) else FAILS)
        return _claim(
            claim,
            "PixelCNN",
            f"{rule}; {seeds_phrase(kls)}",
            f"KL(c): NS {fmt(kl_ns)}, VHE {fmt(kl_vhe)} nats",
            verdict,
        )
    held = [s for s, (a, b) in kls.items() if _kl_holds(a, b)]
    ev = (
        "KL(c) in nats: "
        + "; ".join(f"seed {s}: NS {fmt(a)}, VHE {fmt(b)}" for s, (a, b) in kls.items())
        + f"; NS {spread([a for a, _ in kls.values()], 1, '', 2)}, "
        f"VHE {spread([b for _, b in kls.values()], 1, '', 2)}" + f"; holds in {len(held)} of {len(kls)} seeds"
    )
    return _claim(
        claim,
        "PixelCNN",
        f"{rule}, in every seed; judged on {seeds_phrase(kls)}",
        ev,
        HOLDS if len(held) == len(kls) else FAILS,
    )


def _by_seed_evidence(cmp: dict, first: str, second: str, est: str | None) -> str:
    """Per seed accuracies and McNemar counts, then each side's mean and spread across seeds."""
    parts = [
        f"seed {s}: {second} {fmt_ci(rb, 100)} %, {first} {fmt_ci(ra, 100)} %, {first} right where {second} "
        f"wrong on {t['n10']} trials, the reverse on {t['n01']}, McNemar p = {t['p_value']:.3g}"
        for s, (ra, rb, t, _) in cmp.items()
    ]
    n_better = sum(1 for *_, better in cmp.values() if better)
    n_sig = sum(1 for _, _, t, better in cmp.values() if better and t["p_value"] < 0.05)
    means = (
        f"across {len(cmp)} seeds{f' ({est})' if est else ''}: {second} "
        f"{spread([rb['value'] for _, rb, _, _ in cmp.values()])}, {first} "
        f"{spread([ra['value'] for ra, _, _, _ in cmp.values()])}; {first} above {second} in {n_better} of "
        f"{len(cmp)} seeds, significantly (p < 0.05) in {n_sig}"
    )
    return "; ".join(parts) + "; " + means


def _different(different: dict) -> str:
    return "; ".join(f"seed {s}: different trials ({a} vs {b}), not compared" for s, (a, b) in different.items())


def classification_claims(run: RunData, df: pd.DataFrame, headline) -> list[dict]:
    """(2) VHE classifies better than NS per decoder, and the best VHE beats Lake's MHD (28x28).
    ``headline``: {decoder: estimator} (or one estimator for every decoder). Where models were
    trained with several seeds (config ``replicates``) each comparison is made per seed and judged
    across seeds (:func:`seeds_verdict`)."""
    out = []
    for dec, label in DECODERS.items():
        est = headline_of(headline, dec)
        claim = "VHE classifies better than NS (Lake's runs)"
        ns_by, vhe_by = (run.seed_models(cell_model(run, o, dec)) for o in ("ns", "vhe"))
        cmp, different = paired_by_seed(
            run, df, {s: (m, est) for s, m in vhe_by.items()}, {s: (m, est) for s, m in ns_by.items()}
        )
        rule = f"VHE's Lake-runs accuracy above NS's with the decoder's headline estimator ({est}); " + _paired_rule(
            "VHE", "NS", cmp
        )
        if not cmp:
            out.append(_claim(claim, label, rule, _different(different) or "not measured", UNMEASURED))
            continue
        verdict = seeds_verdict((better, t["p_value"]) for _, _, t, better in cmp.values())
        if len(cmp) == 1:
            r_vhe, r_ns, t, better = next(iter(cmp.values()))
            ev = (
                f"NS {fmt_ci(r_ns, 100)} %, VHE {fmt_ci(r_vhe, 100)} % ({est}); VHE right where NS wrong on "
                f"{t['n10']} trials, the reverse on {t['n01']}; McNemar p = {t['p_value']:.3g}"
            )
            if verdict != HOLDS:
                ev += "; the difference is not significant at 5%" if better else "; NS is at least as accurate here"
        else:
            ev = _by_seed_evidence(cmp, "VHE", "NS", est)
        if different:
            ev += "; " + _different(different)
        out.append(_claim(claim, label, rule, ev, verdict))
    claim = "VHE beats Lake's modified-Hausdorff baseline on the same images (Lake's runs, 28x28)"
    rule = (
        f"the best VHE model (its decoder's headline estimator: {headline_label(headline)}; best by its mean "
        "accuracy over its seeds) more accurate than MHD on the same 28x28 trials; "
    )
    vhes = {}  # VHE model -> {seed: (model, its decoder's headline estimator)}, the seeds with a Lake-runs accuracy
    for dec in DECODERS:
        est = headline_of(headline, dec)
        base = cell_model(run, "vhe", dec)
        by = {
            s: (m, est)
            for s, m in run.seed_models(base).items()
            if value(df, m, "accuracy", "lake_runs", est) is not None
        }
        if by:
            vhes[base] = by
    mhd = value(df, "mhd_28", "accuracy", "lake_runs", "mhd_28")
    if not vhes or mhd is None:
        return out + [_claim(claim, "best VHE", rule + _paired_rule("it", "MHD", ()), "not measured", UNMEASURED)]

    def mean_acc(by):
        return sum(float(value(df, m, "accuracy", "lake_runs", e)["value"]) for m, e in by.values()) / len(by)

    best = max(vhes, key=lambda n: mean_acc(vhes[n]))
    mine = vhes[best]
    cmp, different = paired_by_seed(run, df, mine, {s: ("mhd_28", "mhd_28") for s in mine})
    rule += _paired_rule(best, "MHD", cmp)
    if not cmp:
        (a, b) = next(iter(different.values()))
        ev = (
            f"different trials ({a} vs {b}): evaluation.max_runs differs"
            if len(different) == 1
            else _different(different)
        )
        return out + [_claim(claim, best, rule, ev, UNMEASURED)]
    verdict = seeds_verdict((better, t["p_value"]) for _, _, t, better in cmp.values())
    mhd_105 = fmt_ci(value(df, "mhd_105", "accuracy", "lake_runs", "mhd_105"), 100)
    if len(cmp) == 1:
        r_best, _, t, better = next(iter(cmp.values()))
        est = next(iter(mine.values()))[1]
        ev = (
            f"{best} {fmt_ci(r_best, 100)} % ({est}) vs MHD {fmt_ci(mhd, 100)} % (105x105 originals: "
            f"{mhd_105} %); {best} right where MHD wrong on {t['n10']} trials, the reverse on {t['n01']}; "
            f"McNemar p = {t['p_value']:.3g}"
        )
        if verdict != HOLDS:
            ev += "; not significant at 5%" if better else "; MHD is at least as accurate"
    else:
        ev = (
            _by_seed_evidence(cmp, best, "MHD", next(iter(mine.values()))[1])
            + f" (MHD is deterministic: the same {fmt_ci(mhd, 100)} % in every seed; 105x105 originals: {mhd_105} %)"
        )
    if different:
        ev += "; " + _different(different)
    return out + [_claim(claim, best, rule, ev, verdict)]


def likelihood_claims(run: RunData, df: pd.DataFrame) -> list[dict]:
    """(3) VHE's test likelihood is the best of the four objectives, per decoder: in every seed in
    which VHE and each objective measured with VHE's own seed were trained."""
    out = []
    for dec, label in DECODERS.items():
        by = {o: run.seed_models(cell_model(run, o, dec)) for o in CLASS_OBJECTIVES}

        def nlls(seed):
            vals = {}
            for o in CLASS_OBJECTIVES:
                r = value(df, by[o].get(seed), "nll", "test")
                vals[o] = None if r is None else float(r["value"])
            return vals

        base = cell_model(run, "vhe", dec)
        base_seed = run.seeds.get(base, 0) if base is not None else None
        first = nlls(base_seed)
        measured = [o for o, v in first.items() if v is not None]
        per_seed = {base_seed: first}
        for seed in by["vhe"]:
            if seed != base_seed:
                vals = nlls(seed)
                if all(vals[o] is not None for o in measured):
                    per_seed[seed] = vals
        per_seed = dict(sorted(per_seed.items()))
        verdicts = {}
        for seed, vals in per_seed.items():
            others = {o: v for o, v in vals.items() if o != "vhe" and v is not None}
            verdicts[seed] = (
                UNMEASURED
                if vals["vhe"] is None or not others
                else HOLDS
                if vals["vhe"] <= min(others.values())
                else FAILS
            )
        measured_seeds = [s for s, v in verdicts.items() if v != UNMEASURED]
        rule = "VHE's NLL estimate <= every other measured objective's (lower is better)"
        missing = [OBJECTIVES[o] for o, v in first.items() if o != "vhe" and v is None]
        if len(measured_seeds) <= 1:
            verdict = verdicts[base_seed]
            ev = "NLL (nats/image): " + ", ".join(f"{OBJECTIVES[o]} {fmt(v, 3)}" for o, v in first.items())
            rule += f"; {seeds_phrase(measured_seeds)}"
        else:
            verdict = HOLDS if all(verdicts[s] == HOLDS for s in measured_seeds) else FAILS
            ev = "NLL (nats/image): " + "; ".join(
                f"seed {s}: "
                + ", ".join(f"{OBJECTIVES[o]} {fmt(v, 3)}" for o, v in per_seed[s].items() if v is not None)
                for s in measured_seeds
            )
            ev += f"; holds in {sum(verdicts[s] == HOLDS for s in measured_seeds)} of {len(measured_seeds)} seeds"
            rule += f", in every seed; judged on {seeds_phrase(measured_seeds)}"
        if missing and verdict != UNMEASURED:
            ev += f" (compared without {', '.join(missing)})"
        out.append(_claim("VHE's test likelihood is the best of the four objectives", label, rule, ev, verdict))
    return out


def factorial_claims(run: RunData, df: pd.DataFrame) -> list[dict]:
    """(5) Content and style separate (factorial models): the generated grid cells carry the column's
    texture and the row's character above chance: each accuracy's 95% bootstrap interval over the
    grid's rows and columns (cells of a row share c, of a column t) above chance, in every training
    seed; metrics without that interval (older runs) fall back to a one-sided exact binomial test
    over the cells (p < 0.05). One row per factorial model (none without one)."""
    out = []
    claim = "Factorial VHE: generated cells carry the style image's texture and the content image's character"
    for name, info in run.models.items():
        if info.get("experiment") != "factorial" or run.is_replicate(name):
            continue
        per_seed = {}  # seed -> {part: (accuracy, chance, cells, p)}
        for seed, model in run.seed_models(name).items():
            parts = {}
            for part in ("texture", "character"):
                acc, ch = value(df, model, f"{part}_accuracy", "grid"), value(df, model, f"{part}_chance")
                if acc is None or ch is None or pd.isna(acc["n"]):
                    break
                n = int(acc["n"])
                k = int(round(float(acc["value"]) * n))
                low = acc.get("ci_low")
                boot = None if low is None or pd.isna(low) else (float(low), float(acc["ci_high"]))
                p = binomial_above(k, n, float(ch["value"])) if boot is None else None
                parts[part] = (float(acc["value"]), float(ch["value"]), n, p, boot)
            else:
                per_seed[seed] = parts
        bootstrapped = all(b is not None for parts in per_seed.values() for *_, b in parts.values())
        rule = (
            "texture and character accuracies each with a 95% bootstrap interval (rows and columns of the grid "
            "resampled) above chance"
            if bootstrapped
            else "texture and character accuracies each above chance with a one-sided exact binomial test over "
            "the grid's cells, p < 0.05"
        ) + f", in every seed; {seeds_phrase(per_seed)}"
        if not per_seed:
            out.append(_claim(claim, name, rule, "not evaluated", UNMEASURED))
            continue
        # per seed: (both accuracies above chance, both significantly so: the bootstrap interval
        # above chance, or the binomial test's p < 0.05 where the metrics have no interval)
        results = [
            (
                all(a > c for a, c, *_ in parts.values()),
                all(boot[0] > c if boot else p < 0.05 for _, c, _, p, boot in parts.values()),
            )
            for parts in per_seed.values()
        ]

        def part_evidence(part, a, c, n, p, boot):
            shown = f"[{100 * boot[0]:.1f}, {100 * boot[1]:.1f}]" if boot else f"(p = {p:.3g})"
            return f"{part} {100 * a:.1f}% {shown} vs chance {100 * c:.1f}% over {n} cells"

        ev = "; ".join(
            (f"seed {seed}: " if len(per_seed) > 1 else "")
            + ", ".join(part_evidence(part, *vals) for part, vals in parts.items())
            for seed, parts in per_seed.items()
        )
        out.append(_claim(claim, name, rule, ev, interval_verdict(results)))
    return out


#: the hierarchical claims (the issue's targets), by their text
CONTEXT_CLAIM = "Hierarchical VHE: alphabet context improves log p(new character)"
STYLE_CLAIM = "Hierarchical VHE: new characters carry their alphabet's style"
#: the alphabet-style target: the lower end of the style accuracy's 95% interval above 5% (chance with
#: the 20 alphabets of Omniglot's evaluation set), and above chance (1 / #alphabets) where that is higher
STYLE_TARGET = 0.05


def interval_verdict(results) -> str:
    """The verdict across training seeds of a measure judged by its 95% interval; ``results``:
    [(point above, interval above)], one per seed (above the claim's threshold). The rule of
    :func:`seeds_verdict` with "significant" meaning the whole interval lies above: "holds" when the
    interval is above in every seed, "direction only" when the point estimate is above in every seed
    but not every interval, "does not hold" otherwise; "not measured" without a seed."""
    results = list(results)
    if not results:
        return UNMEASURED
    if all(above and interval for above, interval in results):
        return HOLDS
    return DIRECTION if all(above for above, _ in results) else FAILS


def _interval_rule(what: str, seeds) -> str:
    """The rule text of an interval claim (:func:`interval_verdict`) judged on ``seeds``."""
    if len(list(seeds)) <= 1:
        return (
            f"holds if {what}; direction only if the point estimates are but not the whole interval, does not "
            f"hold otherwise; {seeds_phrase(seeds)}"
        )
    return (
        f"judged on {seeds_phrase(seeds)}: holds if {what} in every seed, direction only if the point "
        f"estimates are in every seed but not every interval, does not hold otherwise"
    )


def _above(r: pd.Series, threshold: float) -> tuple[bool, bool]:
    """(point above ``threshold``, the whole 95% interval above it) of a frame row; no interval
    (fewer than 2 units) is not above."""
    point = bool(float(r["value"]) > threshold)
    return point, bool(point and pd.notna(r["ci_low"]) and float(r["ci_low"]) > threshold)


def _class_model_note(run: RunData, model: str) -> str:
    """'the class model vhe_deconv' (from the hierarchical metrics JSON), noting checkpoints of
    different training steps."""
    cm = (run.raw.get(model) or {}).get("class_model")
    if not isinstance(cm, dict):
        return "the class model"
    note = f"the class model {cm.get('name')}"
    if cm.get("same_training_steps") is False:
        note += " (a checkpoint of another training step)"
    return note


def _context_claim(run: RunData, df: pd.DataFrame, name: str) -> dict:
    """The alphabet-context claim of hierarchical model ``name`` (and its replicates)."""
    per_seed, missing = {}, []  # seed -> (gain row, gain vs class row)
    for seed, model in run.seed_models(name).items():
        gain = value(df, model, "context_gain", "evaluation")
        vs_class = value(df, model, "context_gain_vs_class", "evaluation")
        if gain is None or vs_class is None:
            missing.append(
                f"seed {seed} ({model}): "
                + ("no context_nll" if gain is None else f"no class-model comparison (gain {fmt_ci(gain, 1, 2)})")
            )
            continue
        per_seed[seed] = (model, gain, vs_class)
    what = (
        "the paired 95% interval (over characters) of the gain in log p(X | C)/|X| from an alphabet context C "
        "is above 0 nats per image against both the same model without context and the class-structured "
        "comparison model (compare_with, else the same objective and decoder)"
    )
    rule = _interval_rule(what, per_seed)
    if not per_seed:
        return _claim(CONTEXT_CLAIM, name, rule, "; ".join(missing) or "not evaluated", UNMEASURED)
    results = [tuple(a and b for a, b in zip(_above(g, 0.0), _above(c, 0.0))) for _, g, c in per_seed.values()]
    ev = "; ".join(
        (f"seed {seed}: " if len(per_seed) > 1 else "")
        + f"gain per image (nats) over no context {fmt_ci(g, 1, 2)}, over {_class_model_note(run, model)} "
        f"{fmt_ci(c, 1, 2)}; {int(g['n']) if pd.notna(g['n']) else 'n/a'} characters, K = "
        f"{int(g['K']) if pd.notna(g['K']) else 'n/a'}"
        for seed, (model, g, c) in per_seed.items()
    )
    if missing:
        ev += "; " + "; ".join(missing)
    return _claim(CONTEXT_CLAIM, name, rule, ev, interval_verdict(results))


def _style_claim(run: RunData, df: pd.DataFrame, name: str) -> dict:
    """The alphabet-style claim of hierarchical model ``name`` (and its replicates)."""
    per_seed = {}  # seed -> (model, style row, threshold, chance)
    for seed, model in run.seed_models(name).items():
        style, chance = value(df, model, "alphabet_style", "evaluation"), value(df, model, "alphabet_style_chance")
        if style is not None and chance is not None:
            per_seed[seed] = (model, style, max(STYLE_TARGET, float(chance["value"])), float(chance["value"]))
    what = (
        f"the lower end of the 95% bootstrap interval (over alphabets) of the share of new characters "
        f"c ~ p(c | a) classified as the alphabet a was inferred from is above {100 * STYLE_TARGET:.0f}% and "
        f"above chance (1 / #alphabets)"
    )
    rule = _interval_rule(what, per_seed)
    if not per_seed:
        return _claim(STYLE_CLAIM, name, rule, "not evaluated (alphabet_style skipped or absent)", UNMEASURED)
    parts = []
    for seed, (model, style, _, chance) in per_seed.items():
        controls = [
            f"{label} {fmt_ci(value(df, model, metric, 'evaluation'), 100)} %"
            for metric, label in (
                ("alphabet_style_class_model", f"control {_class_model_note(run, model)}"),
                ("alphabet_style_prior_a", "control a ~ p(a)"),
            )
            if value(df, model, metric, "evaluation") is not None
        ]
        parts.append(
            (f"seed {seed}: " if len(per_seed) > 1 else "")
            + f"{fmt_ci(style, 100)} % over {int(style['n']) if pd.notna(style['n']) else 'n/a'} alphabets, "
            f"chance {100 * chance:.1f} %" + (f"; {', '.join(controls)}" if controls else "; no control model")
        )
    results = [_above(style, threshold) for _, style, threshold, _ in per_seed.values()]
    return _claim(STYLE_CLAIM, name, rule, "; ".join(parts), interval_verdict(results))


def hierarchical_claims(run: RunData, df: pd.DataFrame) -> list[dict]:
    """(6) What the alphabet latent is for (hierarchical models), per hierarchical model (its
    replicates judged with it across seeds, :func:`interval_verdict`): alphabet context improves
    log p(new character) (the paired 95% interval of the gain in nats per image above 0 against the
    same model without context and against the class-structured comparison model), and new
    characters carry their alphabet's style (the style accuracy's 95% bootstrap interval above
    :data:`STYLE_TARGET` and chance). Both "not measured" (scope hierarchical) when the run has no
    hierarchical model."""
    names = [n for n, i in run.models.items() if i.get("experiment") == "hierarchical" and not run.is_replicate(n)]
    if not names:
        why = "the run has no hierarchical model"
        return [
            _claim(CONTEXT_CLAIM, "hierarchical", _interval_rule("the context gain is above 0", ()), why, UNMEASURED),
            _claim(
                STYLE_CLAIM,
                "hierarchical",
                _interval_rule(f"the style accuracy is above {100 * STYLE_TARGET:.0f}% and chance", ()),
                why,
                UNMEASURED,
            ),
        ]
    out = []
    for name in names:
        out += [_context_claim(run, df, name), _style_claim(run, df, name)]
    return out


def check_claims(run: RunData, df: pd.DataFrame, headline) -> pd.DataFrame:
    """Every claim: one row each (claim, scope, rule, evidence, verdict); ``headline`` as in
    :func:`classification_claims`."""
    rows = (
        [kl_claim(run, df)]
        + classification_claims(run, df, headline)
        + likelihood_claims(run, df)
        + factorial_claims(run, df)
        + hierarchical_claims(run, df)
    )
    return pd.DataFrame(rows, columns=COLUMNS)
