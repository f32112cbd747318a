"""The paper's claims checked on a run's numbers (the long-form metrics frame), and the choice of
the headline classification estimator.

The headline estimator of each decoder is the one with the best mean accuracy over that decoder's
class-structured models on the validation runs; Lake's runs never enter the choice. Classification claims compare two
classifiers on the same trials with McNemar's exact test on their per-trial outcomes (read from
the metrics JSON by exact key); every other value comes from the frame.
"""
from __future__ import annotations

import math

import pandas as pd

from .metrics import RunData, per_trial, value
from .tables import DECODERS, ESTIMATORS, OBJECTIVES, cell_model, fmt, fmt_ci, headline_label, headline_of

HOLDS, DIRECTION, FAILS, UNMEASURED = "holds", "direction only", "does not hold", "not measured"
CLASS_OBJECTIVES = ("ns", "resample", "rescale", "vhe")
COLUMNS = ["claim", "scope", "rule", "evidence", "verdict"]


def choose_headline(df: pd.DataFrame) -> tuple[dict[str, str], str]:
    """({decoder: estimator}, reason): per decoder, the estimator with the best mean accuracy on the
    validation runs over that decoder's class-structured models (conditional where a decoder has no
    validation runs). Per decoder because the estimators' errors depend on it: the decoder's cost
    sets K (evaluation.per_decoder), and the rule that needs no decoder (ns_kl) competes with
    decoder-based ones whose noise grows as K shrinks."""
    cls = df[(df["metric"] == "accuracy") & (df["experiment"] == "class")]
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
        order = sorted(means.index, key=lambda m: (-round(float(means[m]), 6),
                                                   ESTIMATORS.index(m) if m in ESTIMATORS else 99))
        choice[dec] = order[0]
        detail = ", ".join(f"{m} {100 * means[m]:.1f}%" for m in order)
        parts.append(f"{DECODERS[dec]}: best mean over its {v['model'].nunique()} class models, {detail}")
    return choice, ("chosen per decoder on the validation runs (" + "; ".join(parts)
                    + "); Lake's runs are not used for the choice")


def mcnemar(a: list[int], b: list[int]) -> dict:
    """McNemar's exact test of two classifiers on the same trials (1 = correct).

    Returns n01 (a wrong, b right), n10 (a right, b wrong) and the two-sided p-value
    min(1, 2 P[Binomial(n01 + n10, 1/2) <= min(n01, n10)]).
    """
    if len(a) != len(b):
        raise ValueError(f"McNemar needs the same trials: {len(a)} vs {len(b)} outcomes")
    n10 = sum(1 for x, y in zip(a, b) if x and not y)
    n01 = sum(1 for x, y in zip(a, b) if y and not x)
    n, k = n01 + n10, min(n01, n10)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    return {"n01": n01, "n10": n10, "p_value": p}


def _verdict(better: bool, p: float) -> str:
    if better and p < 0.05:
        return HOLDS
    return DIRECTION if better else FAILS


def _paired(mine: list[int], theirs: list[int], better: bool) -> tuple[dict, str]:
    """McNemar's test of ``mine`` against ``theirs`` (same trials) and the verdict for ``better``
    (the first classifier's point estimate above the second's)."""
    t = mcnemar(mine, theirs)
    return t, _verdict(better, t["p_value"])


def _claim(claim, scope, rule, evidence, verdict) -> dict:
    return {"claim": claim, "scope": scope, "rule": rule, "evidence": evidence, "verdict": verdict}


def kl_claim(run: RunData, df: pd.DataFrame) -> dict:
    """(1) With a PixelCNN decoder, NS leaves c nearly unused while VHE uses it."""
    ns, vhe = value(df, cell_model(run, "ns", "pixelcnn"), "kl_c", "test"), \
        value(df, cell_model(run, "vhe", "pixelcnn"), "kl_c", "test")
    kl_ns, kl_vhe = (None if r is None else float(r["value"]) for r in (ns, vhe))
    rule = "KL(c) of NS < 1 nat or < 10% of VHE's, and VHE's KL(c) >= 1 nat and above NS's (PixelCNN decoder)"
    if kl_ns is None or kl_vhe is None:
        verdict = UNMEASURED
    else:
        verdict = HOLDS if (kl_ns < 1.0 or kl_ns < 0.1 * kl_vhe) and kl_vhe >= 1.0 and kl_vhe > kl_ns else FAILS
    return _claim("With a PixelCNN decoder the NS objective leaves c nearly unused while VHE uses it", "PixelCNN",
                  rule, f"KL(c): NS {fmt(kl_ns)}, VHE {fmt(kl_vhe)} nats", verdict)


def classification_claims(run: RunData, df: pd.DataFrame, headline) -> list[dict]:
    """(2) VHE classifies better than NS per decoder, and the best VHE beats Lake's MHD (28x28).
    ``headline``: {decoder: estimator} (or one estimator for every decoder)."""
    out = []
    for dec, label in DECODERS.items():
        est = headline_of(headline, dec)
        rule = (f"VHE's Lake-runs accuracy above NS's with the decoder's headline estimator ({est}); "
                f"holds if McNemar's exact test on the same trials gives p < 0.05")
        ns, vhe = cell_model(run, "ns", dec), cell_model(run, "vhe", dec)
        r_ns, r_vhe = value(df, ns, "accuracy", "lake_runs", est), value(df, vhe, "accuracy", "lake_runs", est)
        if r_ns is None or r_vhe is None:
            out.append(_claim("VHE classifies better than NS (Lake's runs)", label, rule, "not measured", UNMEASURED))
            continue
        better = r_vhe["value"] > r_ns["value"]
        t, verdict = _paired(per_trial(run, vhe, "lake_runs", est), per_trial(run, ns, "lake_runs", est), better)
        ev = (f"NS {fmt_ci(r_ns, 100)} %, VHE {fmt_ci(r_vhe, 100)} % ({est}); VHE right where NS wrong on "
              f"{t['n10']} trials, the reverse on {t['n01']}; McNemar p = {t['p_value']:.3g}")
        if verdict != HOLDS:
            ev += "; the difference is not significant at 5%" if better else "; NS is at least as accurate here"
        out.append(_claim("VHE classifies better than NS (Lake's runs)", label, rule, ev, verdict))
    claim = "VHE beats Lake's modified-Hausdorff baseline on the same images (Lake's runs, 28x28)"
    rule = (f"the best VHE model (its decoder's headline estimator: {headline_label(headline)}) more accurate "
            "than MHD on the same 28x28 trials; holds if McNemar p < 0.05")
    vhes = {}  # VHE model -> (its decoder's headline estimator, its Lake-runs accuracy row)
    for dec in DECODERS:
        name, est = cell_model(run, "vhe", dec), headline_of(headline, dec)
        r = value(df, name, "accuracy", "lake_runs", est)
        if r is not None:
            vhes[name] = (est, r)
    mhd = value(df, "mhd_28", "accuracy", "lake_runs", "mhd_28")
    if not vhes or mhd is None:
        return out + [_claim(claim, "best VHE", rule, "not measured", UNMEASURED)]
    best = max(vhes, key=lambda n: vhes[n][1]["value"])
    est, r_best = vhes[best]
    mine, theirs = per_trial(run, best, "lake_runs", est), per_trial(run, "mhd_28", "lake_runs", "mhd_28")
    if len(mine) != len(theirs):
        return out + [_claim(claim, best, rule, f"different trials ({len(mine)} vs {len(theirs)}): "
                                                "evaluation.max_runs differs", UNMEASURED)]
    better = r_best["value"] > mhd["value"]
    t, verdict = _paired(mine, theirs, better)
    ev = (f"{best} {fmt_ci(r_best, 100)} % ({est}) vs MHD {fmt_ci(mhd, 100)} % (105x105 originals: "
          f"{fmt_ci(value(df, 'mhd_105', 'accuracy', 'lake_runs', 'mhd_105'), 100)} %); {best} right where MHD "
          f"wrong on {t['n10']} trials, the reverse on {t['n01']}; McNemar p = {t['p_value']:.3g}")
    if verdict != HOLDS:
        ev += "; not significant at 5%" if better else "; MHD is at least as accurate"
    return out + [_claim(claim, best, rule, ev, verdict)]


def likelihood_claims(run: RunData, df: pd.DataFrame) -> list[dict]:
    """(3) VHE's test likelihood is the best of the four objectives, per decoder."""
    out = []
    for dec, label in DECODERS.items():
        vals = {}
        for o in CLASS_OBJECTIVES:
            r = value(df, cell_model(run, o, dec), "nll", "test")
            vals[o] = None if r is None else float(r["value"])
        others = {o: v for o, v in vals.items() if o != "vhe" and v is not None}
        missing = [OBJECTIVES[o] for o, v in vals.items() if o != "vhe" and v is None]
        if vals["vhe"] is None or not others:
            verdict = UNMEASURED
        else:
            verdict = HOLDS if vals["vhe"] <= min(others.values()) else FAILS
        ev = "NLL (nats/image): " + ", ".join(f"{OBJECTIVES[o]} {fmt(v, 3)}" for o, v in vals.items())
        if missing and verdict != UNMEASURED:
            ev += f" (compared without {', '.join(missing)})"
        out.append(_claim("VHE's test likelihood is the best of the four objectives", label,
                          "VHE's NLL estimate <= every other measured objective's (lower is better)", ev, verdict))
    return out


def check_claims(run: RunData, df: pd.DataFrame, headline) -> pd.DataFrame:
    """Every claim: one row each (claim, scope, rule, evidence, verdict); ``headline`` as in
    :func:`classification_claims`."""
    rows = [kl_claim(run, df)] + classification_claims(run, df, headline) + likelihood_claims(run, df)
    return pd.DataFrame(rows, columns=COLUMNS)
