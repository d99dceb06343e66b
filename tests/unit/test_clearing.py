"""programs.clearing: exact bucketed clearing against hand-computed cases and an exact reference."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from programs.clearing import BidCurve, CurveBook, clear, validate_curve
from tests.sweeps import seeds


# --- reference (tests only): plain Python, exact rationals, sort all breakpoints -------------
def _f_exact(curve, p):
    """f_i(p) exactly for a curve of Fraction points."""
    if p <= curve[0][0]:
        return curve[0][1]
    for (p0, q0), (p1, q1) in zip(curve, curve[1:]):
        if p <= p1:
            return q0 + (q1 - q0) * (p - p0) / (p1 - p0)
    return curve[-1][1]


def clear_bruteforce(curves, requested_kw, price_cap):
    """Same rules as programs.clearing.clear, by sorting every breakpoint (exact arithmetic).

    Returns (price, quantity, feasible, setpoints) as floats.
    """
    fc = [[(Fraction(p), Fraction(q)) for p, q in c] for c in curves]
    Q = Fraction(requested_kw)
    cap = Fraction(price_cap)
    magnitude = sum(abs(float(c[0][1])) + float(c[-1][1] - c[0][1]) for c in fc)
    eps = Fraction(1e-12 * max(1.0, magnitude))
    C = sum(c[0][1] for c in fc)
    p_min = min(c[0][0] for c in fc)
    lo = min(p_min, cap)
    # slope changes, sorted
    dms: dict[Fraction, Fraction] = {}
    for c in fc:
        prev_m = Fraction(0)
        for j, (p, q) in enumerate(c):
            m = (c[j + 1][1] - q) / (c[j + 1][0] - p) if j + 1 < len(c) else Fraction(0)
            if m != prev_m:
                dms[p] = dms.get(p, Fraction(0)) + (m - prev_m)
            prev_m = m
    xs = sorted(x for x in dms if lo < x < cap) + [cap]
    slope = sum((d for x, d in dms.items() if x <= lo), Fraction(0))
    F = C + sum((d * (lo - x) for x, d in dms.items() if x <= lo), Fraction(0))

    def result(price, quantity, feasible, setpoints):
        return float(price), float(quantity), feasible, np.array([float(s) for s in setpoints])

    if F >= Q - eps:
        return result(lo, sum(c[0][1] for c in fc), True, [c[0][1] for c in fc])
    x_prev, F_prev = lo, F
    for x in xs:
        Fx = F_prev + slope * (x - x_prev)
        if Fx >= Q - eps:
            p = min(x_prev + (Q - F_prev) / slope, x)
            return result(p, Q, True, [_f_exact(c, p) for c in fc])
        x_prev, F_prev = x, Fx
        slope += dms.get(x, Fraction(0))
    s = [_f_exact(c, cap) for c in fc]
    return result(cap, sum(s), False, s)


# --- hand-computed -------------------------------------------------------------------------
def test_two_linear_curves_by_hand():
    # f1: 0 kW at 0, 10 kW at 1; f2: 0 kW at 0.5, 10 kW at 1.5
    book = CurveBook.from_curves([[(0, 0), (1, 10)], [(0.5, 0), (1.5, 10)]])
    c = clear(book, 10, 2.0)  # F(p) = 10p + 10(p - .5) = 10 at p = .75
    assert c.feasible and c.price == pytest.approx(0.75, abs=1e-12)
    assert c.quantity == 10
    np.testing.assert_allclose(c.setpoints, [7.5, 2.5], atol=1e-12)
    assert c.available_at_cap == pytest.approx(20)
    c = clear(book, 5, 2.0)  # only f1 moves below 0.5
    assert c.price == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_allclose(c.setpoints, [5, 0], atol=1e-12)


def test_three_curves_with_plateau_and_step_like_segment_by_hand():
    curves = [
        [(1.0, 2.0), (2.0, 6.0), (4.0, 6.0)],  # rises 4 kW per unit price to 2, then flat
        [(3.0, 0.0), (3.000001, 5.0)],  # very steep: 5 kW within 1e-6
        [(0.0, 1.0)],  # constant 1 kW
    ]
    book = CurveBook.from_curves(curves)
    assert book.C == 3.0
    c = clear(book, 5.0, 10.0)  # 2 + 4(p - 1) + 1 = 5 -> p = 1.5
    assert c.price == pytest.approx(1.5, abs=1e-12)
    np.testing.assert_allclose(c.setpoints, [4.0, 0.0, 1.0], atol=1e-12)
    # F = 7 on the plateau [2, 3]: the lowest price wins
    c = clear(book, 7.0, 10.0)
    assert c.price == pytest.approx(2.0, abs=1e-12)
    np.testing.assert_allclose(c.setpoints, [6.0, 0.0, 1.0], atol=1e-12)
    # inside the steep segment: 7 + 5e6 (p - 3) = 9.5 -> p = 3 + 5e-7
    c = clear(book, 9.5, 10.0)
    assert c.price == pytest.approx(3.0000005, abs=1e-12)
    np.testing.assert_allclose(c.setpoints, [6.0, 2.5, 1.0], atol=1e-9)
    assert abs(c.setpoints.sum() - 9.5) <= 1e-9 * 9.5
    # all of it: the lowest price reaching 12 is the end of the steep segment
    c = clear(book, 12.0, 10.0)
    assert c.feasible and c.price == pytest.approx(3.000001, abs=1e-12)


def test_infeasible_is_best_effort_at_the_cap():
    book = CurveBook.from_curves([[(0, 0), (1, 10)], [(0.5, 0), (1.5, 10)]])
    c = clear(book, 15, 0.8)  # F(0.8) = 8 + 3 = 11 < 15
    assert not c.feasible
    assert c.price == 0.8
    assert c.quantity == pytest.approx(11) and c.available_at_cap == pytest.approx(11)
    np.testing.assert_allclose(c.setpoints, [8, 3], atol=1e-12)
    c = clear(book, 25, 100.0)  # beyond the whole range
    assert not c.feasible and c.price == 100.0 and c.quantity == pytest.approx(20)


def test_trivially_feasible_clears_at_the_lowest_bid_price():
    book = CurveBook.from_curves([[(0.2, 3), (1, 10)], [(0.5, 1), (1.5, 10)]])
    for q in (0.0, 2.0, 4.0, -5.0):
        c = clear(book, q, 2.0)
        assert c.feasible and c.price == 0.2
        assert c.quantity == 4.0  # C: the curves offer that much at any price
        np.testing.assert_array_equal(c.setpoints, [3, 1])
    c = clear(book, 2.0, 0.1)  # cap below every bid price: still C, at the cap
    assert c.feasible and c.price == 0.1 and c.quantity == 4.0
    c = clear(book, 5.0, 0.1)
    assert not c.feasible and c.price == 0.1 and c.quantity == 4.0


def test_flat_and_empty_books():
    book = CurveBook.from_curves([[(1, 5)], [(2, 1), (3, 1)]])
    assert clear(book, 6, 10).feasible and clear(book, 6, 10).price == 1
    assert not clear(book, 7, 10).feasible
    empty = CurveBook.from_curves([])
    c = clear(empty, 1, 1)
    assert not c.feasible and c.quantity == 0 and c.setpoints.size == 0


def test_padded_arrays_with_counts_equal_ragged():
    P = np.array([[0.0, 1.0, 9.0], [0.5, 1.5, 2.0]])
    Qa = np.array([[0.0, 10.0, -99.0], [0.0, 10.0, 12.0]])
    b1 = CurveBook.from_arrays(P, Qa, counts=[2, 3])  # -99 is padding: ignored
    b2 = CurveBook.from_curves([[(0, 0), (1, 10)], [(0.5, 0), (1.5, 10), (2, 12)]])
    for q in (3, 10, 19, 21.5, 30):
        c1, c2 = clear(b1, q, 5), clear(b2, q, 5)
        assert c1.price == c2.price and c1.feasible == c2.feasible
        np.testing.assert_array_equal(c1.setpoints, c2.setpoints)


# --- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "points, message",
    [
        ([(1, 0), (0.5, 1)], "point 1: prices not increasing"),
        ([(1, 0), (1, 1), (1, 2)], "point 2: a third point at price 1.0"),
        ([(0, 0), (float("nan"), 1)], "point 1: price nan is not finite"),
        ([(0, 0), (1, float("inf"))], "point 1: quantity inf is not finite"),
        ([(0, 0), (1, 5), (2, 4)], "point 2: quantity decreases"),
        ([], "no points"),
        ([(1, 2, 3)], "point 0: expected (price, q)"),
    ],
)
def test_validation_errors(points, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_curve(points)
    with pytest.raises(ValueError, match="curve 1"):
        CurveBook.from_curves([[(0, 0)], points])


@pytest.mark.parametrize(
    "row, message",
    [
        ([[0, 1, 0.5], [0, 1, 2]], "curve 0 point 2: prices not increasing"),
        ([[0, 1, 1], [0, 1, 2]], "curve 0 point 2: duplicate price"),
        ([[0, 1, 2], [0, np.nan, 2]], "curve 1 point 1: price nan"),
        ([[0, np.inf, 2], [0, 1, 2]], "curve 0 point 1: price inf"),
    ],
)
def test_validation_errors_padded(row, message):
    with pytest.raises(ValueError, match=message):
        CurveBook.from_arrays(np.array(row, dtype=float), np.zeros((2, 3)))


def test_validation_errors_padded_quantity():
    P = np.array([[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match="curve 0 point 2: quantity decreases"):
        CurveBook.from_arrays(P, np.array([[0.0, 3.0, 2.0]]))
    with pytest.raises(ValueError, match="curve 0 point 0: quantity nan"):
        CurveBook.from_arrays(P, np.array([[np.nan, 3.0, 4.0]]))
    # padding beyond the count is not validated
    CurveBook.from_arrays(np.array([[0.0, 1.0, np.nan]]), np.array([[0.0, 3.0, -1.0]]), counts=[2])


def test_bidcurve_evaluates():
    c = BidCurve([(0, 0), (1, 10)])
    assert c(0.25) == 2.5 and c(-1) == 0 and c(5) == 10


# --- random fleets against the exact reference ---------------------------------------------
def _random_fleet(rng, n, dyadic=False):
    curves = []
    for _ in range(n):
        k = int(rng.integers(1 if dyadic else 2, 13))
        if dyadic:  # exactly representable prices and quantities: plateaus hit exactly
            gaps = rng.integers(1, 64, size=k) / 64.0
            gaps[0] = rng.integers(0, 64) / 64.0
            dq = rng.integers(0, 9, size=k) / 8.0 * (rng.random(k) < 0.6)
            q0 = rng.integers(-16, 16) / 8.0
        else:
            kind = rng.random(k)
            gaps = np.where(kind < 0.15, rng.uniform(1e-5, 1e-4, k), rng.uniform(0.005, 0.2, k))
            gaps[0] = rng.uniform(0.0, 0.5)
            dq = np.where(rng.random(k) < 0.3, 0.0, rng.uniform(0.0, 5.0, k))
            dq[(rng.random(k) < 0.05) & (gaps > 1e-3)] *= 100.0
            q0 = rng.uniform(-2.0, 3.0) if rng.random() < 0.5 else 0.0
        prices = np.cumsum(gaps)
        qs = q0 + np.concatenate(([0.0], np.cumsum(dq[1:])))
        curves.append([(float(p), float(q)) for p, q in zip(prices, qs)])
    return curves


def _requests(rng, curves):
    book = CurveBook.from_curves(curves)
    C = book.C
    Fmax = sum(c[-1][1] for c in curves)
    ps = sorted({p for c in curves for p, _ in c})
    at_bp = [float(book.F(ps[int(i)])) for i in rng.integers(0, len(ps), size=3)]
    inside = list(rng.uniform(C, Fmax, size=6)) if Fmax > C else []
    return [C, Fmax, C - 1.0, Fmax + 1.0, (C + Fmax) / 2, *at_bp, *inside]


def _check(curves, q, cap):
    book = CurveBook.from_curves(curves)
    c = clear(book, q, cap)
    rp, rq, rf, rs = clear_bruteforce(curves, q, cap)
    scale = max(1.0, abs(q), book.magnitude)
    ctx = f"q={q!r} cap={cap!r} n={len(curves)}"
    assert c.feasible == rf, ctx
    assert c.price == pytest.approx(rp, rel=1e-9, abs=1e-9), ctx
    assert c.quantity == pytest.approx(rq, rel=1e-9, abs=1e-9), ctx
    np.testing.assert_allclose(c.setpoints, rs, rtol=1e-9, atol=1e-9 * scale / len(curves) + 1e-10, err_msg=ctx)
    assert abs(c.setpoints.sum() - c.quantity) <= 1e-9 * max(1.0, abs(c.quantity)), ctx


@pytest.mark.parametrize("seed", seeds(40, quick=6))
def test_random_fleets_match_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 3, 5, 10, 30, 100, 150]))
    curves = _random_fleet(rng, n)
    top = max(c[-1][0] for c in curves)
    for q in _requests(rng, curves):
        for cap in (top + 1.0, float(rng.uniform(0.0, top)), 0.0):
            _check(curves, q, cap)


@pytest.mark.parametrize("seed", seeds(20, quick=6))
def test_random_dyadic_fleets_hit_plateaus_exactly(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.choice([2, 3, 10, 50, 120]))
    curves = _random_fleet(rng, n, dyadic=True)
    top = max(c[-1][0] for c in curves)
    for q in _requests(rng, curves):
        for cap in (top + 1.0, float(rng.integers(0, 64 * int(top + 1)) / 64.0)):
            _check(curves, q, cap)


@pytest.mark.parametrize("n_buckets", [1, 2, 7, 1000])
def test_bucket_count_does_not_change_the_answer(n_buckets):
    rng = np.random.default_rng(7)
    curves = _random_fleet(rng, 200)
    book = CurveBook.from_curves(curves)
    top = max(c[-1][0] for c in curves)
    for q in _requests(rng, curves):
        a, b = clear(book, q, top), clear(book, q, top, n_buckets=n_buckets)
        assert a.feasible == b.feasible
        assert a.price == pytest.approx(b.price, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(a.setpoints, b.setpoints, rtol=1e-9, atol=1e-9)


def test_larger_fleet_sums_and_responses():
    rng = np.random.default_rng(3)
    n, k = 20000, 10
    P = np.cumsum(rng.uniform(0.001, 0.05, (n, k)), axis=1)
    Qa = np.cumsum(np.where(rng.random((n, k)) < 0.3, 0.0, rng.uniform(0, 2, (n, k))), axis=1)
    book = CurveBook.from_arrays(P, Qa)
    for q in np.linspace(Qa[:, 0].sum() + 1, Qa[:, -1].sum() - 1, 7):
        c = clear(book, q, 10.0)
        assert c.feasible
        assert abs(c.setpoints.sum() - q) <= 1e-9 * q
        # every device is on its own curve at p*
        direct = np.array([np.interp(c.price, P[i], Qa[i]) for i in range(0, n, 997)])
        np.testing.assert_allclose(c.setpoints[::997], direct, rtol=1e-9, atol=1e-9)
        assert math.isclose(book.F(c.price), q, rel_tol=1e-9)
