"""analysis.stats against known values: Wilson, McNemar, the 1.96, the mean with its interval,
and the one rule for intervals from too few units (null with a reason, rendered as "[–]")."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from analysis import stats
from analysis.evaluate import accuracy_summary
from analysis.structured_common import _mean_se, se_reasons


def _wilson_by_hand(k, n, z=1.959963984540054):
    """The Wilson score interval written out: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = p + z**2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return [(centre - half) / (1 + z**2 / n), (centre + half) / (1 + z**2 / n)]


def test_z95_is_the_two_sided_95_percent_normal_quantile():
    assert math.erf(stats.Z95 / math.sqrt(2)) == pytest.approx(0.95, abs=1e-12)  # P(|Z| < z) = erf(z / sqrt 2)


@pytest.mark.parametrize(
    "k, n, expected",
    [
        (8, 10, [0.4902, 0.9433]),  # the textbook example
        (0, 10, [0.0, 0.2775]),
        (10, 10, [0.7225, 1.0]),
        (1, 2, [0.0945, 0.9055]),
        (81, 100, [0.7222, 0.8749]),
        (163, 200, [0.7554, 0.8627]),
    ],
)
def test_wilson_interval_matches_known_values(k, n, expected):
    lo, hi = stats.wilson_interval(k, n)
    assert [lo, hi] == pytest.approx(expected, abs=5e-5)
    assert [lo, hi] == pytest.approx(_wilson_by_hand(k, n), abs=1e-12)


def test_wilson_interval_with_fewer_than_two_trials_is_undefined():
    assert stats.wilson_interval(0, 0) is None and stats.wilson_interval(1, 1) is None
    assert stats.too_few_units(1, "trial").startswith("n < 2") and stats.too_few_units(2) is None


def _exact_two_sided(n01, n10):
    """2 P[Bin(n, 1/2) <= min], capped at 1, in exact fractions."""
    n, k = n01 + n10, min(n01, n10)
    return min(Fraction(1), 2 * sum(Fraction(math.comb(n, i), 2**n) for i in range(k + 1)))


@pytest.mark.parametrize(
    "n10, n01, concordant, p",
    [
        (9, 1, 30, 22 / 1024),  # 2 (1 + 10) / 2^10
        (6, 2, 5, 74 / 256),  # 2 (1 + 8 + 28) / 2^8
        (5, 5, 0, 1.0),  # balanced: capped at 1
        (12, 0, 3, 2 / 4096),
        (0, 0, 7, 1.0),  # no discordant trial
    ],
)
def test_mcnemar_on_known_tables(n10, n01, concordant, p):
    a = [1] * n10 + [0] * n01 + [1] * concordant
    b = [0] * n10 + [1] * n01 + [1] * concordant
    t = stats.mcnemar(a, b)
    assert (t["n10"], t["n01"]) == (n10, n01)
    assert t["p_value"] == pytest.approx(p, rel=1e-12) == float(_exact_two_sided(n01, n10))
    assert stats.mcnemar(b, a)["p_value"] == t["p_value"]  # symmetric in the two classifiers


def test_mcnemar_needs_the_same_trials():
    with pytest.raises(ValueError, match="same trials"):
        stats.mcnemar([1, 0], [1])


def test_paper_figures_use_the_same_statistics():
    from paper_figures import claims, metrics

    assert claims.mcnemar is stats.mcnemar and metrics.Z95 == stats.Z95


def test_mean_se_and_the_normal_interval():
    values = [1.0, 2.0, 4.0, 7.0]
    mean, se = stats.mean_se(values)
    assert mean == 3.5 and se == pytest.approx(np.std(values, ddof=1) / 2)
    z = 1.959963984540054
    assert stats.normal_interval(mean, se) == pytest.approx([3.5 - z * se, 3.5 + z * se])
    assert stats.normal_interval(0.9, 0.1, lo=0.0, hi=1.0) == pytest.approx([0.9 - 0.196, 1.0], abs=1e-4)


@pytest.mark.parametrize("values", [[], [2.5]])
def test_fewer_than_two_units_give_no_standard_error_and_no_interval(values):
    mean, se = stats.mean_se(values)
    assert se is None and mean == (values[0] if values else None)
    assert stats.normal_interval(mean, se) is None
    assert _mean_se(values) == (mean, se)  # the structured models' evaluation follows the same rule


def test_se_reasons_explain_only_measured_values_without_a_standard_error():
    out = {
        "bound_per_image": -90.0,
        "bound_se": None,
        "bound_difference": None,
        "bound_difference_se": None,
        "nll": {"nll_per_image": 95.0, "nll_se": 0.3, "nll_improvement": 1.0, "nll_improvement_se": None},
    }
    se_reasons(out)
    assert out["bound_se_reason"].startswith("n < 2")
    assert "bound_difference_se_reason" not in out  # not measured (no class model), not "too few units"
    assert "nll_se_reason" not in out["nll"] and out["nll"]["nll_improvement_se_reason"].startswith("n < 2")


def test_accuracy_summary_follows_the_rule():
    one_trial = accuracy_summary([{"correct": 1, "n_queries": 1}], "run")
    assert one_trial["ci95"] is None and one_trial["ci95_reason"].startswith("n < 2")
    one_run = accuracy_summary([{"correct": 8, "n_queries": 10}], "run")  # one run of 10 trials: Wilson
    assert one_run["ci95"] == pytest.approx([0.4902, 0.9433], abs=5e-5) and "ci95_reason" not in one_run


def test_a_null_interval_renders_as_a_dash_in_tables():
    from paper_figures.tables import NO_INTERVAL, fmt_ci

    row = pd.Series({"metric": "nll", "value": 95.25, "ci_low": None, "ci_high": None})
    assert fmt_ci(row) == f"95.2 {NO_INTERVAL}" and NO_INTERVAL == "[–]"
    assert fmt_ci(pd.Series({**row, "metric": "kl_c"})) == "95.2"  # a metric without intervals by design
    acc = pd.Series({"metric": "accuracy", "value": 0.8, "ci_low": 0.4902, "ci_high": 0.9433})
    assert fmt_ci(acc, 100) == "80.0 [49.0, 94.3]"
