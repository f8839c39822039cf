"""Experiment statistics as pure functions: Wilson interval, sign test, per-arm results, verdict."""
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.experiment_stats import CellFact, PickFact, arm_results, sign_test_p, verdict, wilson_interval


def test_wilson_matches_hand_computed_values():
    # 7 of 10: p=.7, z²=3.8415, centre=(.7+.19207)/1.38415=.6445, half=1.96*sqrt(.021+.0096)/1.38415=.2477
    lo, hi = wilson_interval(7, 10)
    assert lo == pytest.approx(0.3968, abs=1e-4) and hi == pytest.approx(0.8922, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_refuses_impossible_counts():
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(5, 3)


@given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_stays_in_unit_interval_and_contains_the_estimate(kn):
    k, n = kn
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= hi <= 1.0
    if n:
        assert lo - 1e-12 <= k / n <= hi + 1e-12


def test_sign_test_exact_values():
    assert sign_test_p(5, 5) == 1.0
    assert sign_test_p(10, 0) == pytest.approx(2 / 1024)
    assert sign_test_p(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 0.109
    assert sign_test_p(0, 0) == 1.0


def _cells(costs_a, costs_b):
    out = []
    for i, (ca, cb) in enumerate(zip(costs_a, costs_b)):
        out.append(CellFact(0, (i, "portrait_front"), "completed", Decimal(ca), 100 + i))
        out.append(CellFact(1, (i, "portrait_front"), "completed", Decimal(cb), 200 + i))
    return out


def test_arm_results_hand_checked_example():
    # 6 rows; B wins 4, A wins 1, 1 tie. A costs 0.04 per image, B 0.05.
    cells = _cells(["0.04"] * 6, ["0.05"] * 6)
    picks = [PickFact((0, "portrait_front"), "win", 1, ("anatomy",)), PickFact((1, "portrait_front"), "win", 1, ()),
             PickFact((2, "portrait_front"), "win", 1, ("anatomy", "artifact")),
             PickFact((3, "portrait_front"), "win", 1, ()), PickFact((4, "portrait_front"), "win", 0, ("style_drift",)),
             PickFact((5, "portrait_front"), "tie", None, ())]
    a, b = arm_results(["v1 (active)", "draft"], cells, picks)
    assert (b.wins, b.ties, b.judged, b.approved) == (4, 1, 6, 5)
    assert b.win_rate == pytest.approx(4 / 6) and b.approval_rate == pytest.approx(5 / 6)
    assert b.win_ci == pytest.approx(wilson_interval(4, 6))
    assert b.cost_usd == Decimal("0.30") and b.cost_per_image == Decimal("0.05")
    assert b.cost_per_approved == Decimal("0.30") / 5 and b.cost_per_win == Decimal("0.30") / 4
    assert a.cost_per_approved == Decimal("0.24") / 2  # one win + one tie
    assert a.reasons == {"anatomy": 2, "artifact": 1} and b.reasons == {"style_drift": 1}
    assert b.median_latency_ms == 202.5
    line = verdict([a, b])
    assert line.startswith("draft wins 4 of 6 rows (67 %, 95 % CI 30 %–90 %); v1 (active) wins 1")
    assert "cost per approved image -50 % vs v1 (active)" in line  # 0.06 vs 0.12


def test_both_bad_charges_every_arm_and_failed_cells_are_counted():
    cells = [CellFact(0, (1, "s"), "failed", None, None), CellFact(1, (1, "s"), "completed", Decimal("0.1"), 5)]
    [a, b] = arm_results(["A", "B"], cells, [PickFact((1, "s"), "both_bad", None, ("off_model_face",))])
    assert (a.failed, a.images, b.images) == (1, 0, 1)
    assert a.reasons == b.reasons == {"off_model_face": 1}
    assert a.approved == b.approved == 0 and b.cost_per_approved is None
    assert "No winner yet" in verdict([a, b])


def test_verdict_before_any_pick():
    assert verdict(arm_results(["A", "B"], [], [])).startswith("No rows judged yet")


def test_mean_drift_ignores_unscored_images():
    cells = [CellFact(0, (1, "s"), "completed", None, 10, 0.2), CellFact(0, (2, "s"), "completed", None, 10, 0.4),
             CellFact(0, (3, "s"), "completed", None, 10, None), CellFact(1, (1, "s"), "completed", None, 10, None)]
    a, b = arm_results(["A", "B"], cells, [])
    assert a.mean_drift == pytest.approx(0.3) and b.mean_drift is None
