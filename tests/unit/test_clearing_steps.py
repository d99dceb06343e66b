"""programs.clearing with vertical steps: the pro-rata tie rule, against an exact reference."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from programs.clearing import BidCurve, CurveBook, clear, dispatch_at
from tests.sweeps import seeds


# --- reference (tests only): exact rationals, right-continuous curves with steps ----------------
def _f(curve, p, left=False):
    """f(p) of a curve of Fraction points (f(p-) with left=True); steps are equal prices."""
    if p < curve[0][0] or (left and p == curve[0][0]):
        return curve[0][1]
    out = curve[0][1]
    for (p0, q0), (p1, q1) in zip(curve, curve[1:]):
        if p < p1 or (left and p == p1):
            return q0 + (q1 - q0) * (p - p0) / (p1 - p0) if p1 > p0 else q0
        out = q1
    return out


def clear_reference(curves, requested_kw, price_cap):
    """The rules of programs.clearing.clear (lowest price with F >= Q; pro rata at a step)."""
    fc = [[(Fraction(p), Fraction(q)) for p, q in c] for c in curves]
    Q, cap = Fraction(requested_kw), Fraction(price_cap)
    magnitude = sum(abs(float(c[0][1])) + float(c[-1][1] - c[0][1]) for c in fc)
    eps = Fraction(1e-12 * max(1.0, magnitude))
    lo = min(min(c[0][0] for c in fc), cap)

    def F(p, left=False):
        return sum(_f(c, p, left) for c in fc)

    def at(p, target):
        below = [_f(c, p, left=True) for c in fc]
        jumps = [_f(c, p) - b for c, b in zip(fc, below)]
        total = sum(jumps)
        share = min(max((target - sum(below)) / total, 0), 1) if total else 0
        return [b + j * share for b, j in zip(below, jumps)]

    def out(price, quantity, feasible, s):
        return float(price), float(quantity), feasible, np.array([float(x) for x in s])

    if F(cap) < Q - eps:
        s = [_f(c, cap) for c in fc]
        return out(cap, sum(s), False, s)
    if F(lo) >= Q - eps:
        s = at(lo, Q)
        return out(lo, sum(s), True, s)
    xs = sorted({p for c in fc for p, _ in c if lo < p < cap} | {cap})
    prev = lo
    for x in xs:
        if F(x) >= Q - eps:
            Fl = F(x, left=True)
            if Fl >= Q - eps:  # on the continuous segment (prev, x): linear
                Fp = F(prev)
                p = prev + (Q - Fp) * (x - prev) / (Fl - Fp) if Fl > Fp else x
                p = min(max(p, prev), x)
                return out(p, Q, True, at(p, Q))
            return out(x, Q, True, at(x, Q))
        prev = x
    raise AssertionError("unreachable: F(cap) >= Q")


def _check(curves, q, cap):
    book = CurveBook.from_curves(curves)
    c = clear(book, q, cap)
    rp, rq, rf, rs = clear_reference(curves, q, cap)
    ctx = f"q={q!r} cap={cap!r} curves={curves!r}"
    assert c.feasible == rf, ctx
    assert c.price == pytest.approx(rp, rel=1e-9, abs=1e-9), ctx
    assert c.quantity == pytest.approx(rq, rel=1e-9, abs=1e-9), ctx
    np.testing.assert_allclose(c.setpoints, rs, rtol=1e-9, atol=1e-8, err_msg=ctx)
    assert abs(c.setpoints.sum() - c.quantity) <= 1e-9 * max(1.0, abs(c.quantity)), ctx


# --- by hand -------------------------------------------------------------------------------------
def test_steps_share_pro_rata_at_the_step_price():
    """Tie rule: two 5 kW steps at 1.0 and a ramp 0→4 kW over 0…2. F(1-) = 2, F(1) = 12."""
    book = CurveBook.from_curves([[(1, 0), (1, 5)], [(1, 0), (1, 5)], [(0, 0), (2, 4)]])
    c = clear(book, 3, 3)  # 1 kW more than F(1-) = 2: each step gives 1/10 of 5 kW
    assert (c.price, c.quantity, c.feasible) == (1.0, 3.0, True)
    np.testing.assert_allclose(c.setpoints, [0.5, 0.5, 2.0])
    c = clear(book, 13, 3)  # past the steps: the ramp alone, 12 + 2 (p - 1) = 13
    assert c.price == pytest.approx(1.5)
    np.testing.assert_allclose(c.setpoints, [5, 5, 3])
    c = clear(book, 1, 3)  # below the steps
    assert c.price == pytest.approx(0.5)
    np.testing.assert_allclose(c.setpoints, [0, 0, 1])


def test_unequal_steps_share_in_proportion_to_their_size():
    book = CurveBook.from_curves([[(0.2, 0), (0.2, 2)], [(0.2, 0), (0.2, 6)]])
    c = clear(book, 4, 1)
    assert c.price == 0.2
    np.testing.assert_allclose(c.setpoints, [1, 3])  # half of each step


def test_step_inside_a_curve_and_its_continuous_part():
    # 0→1 kW over 0…0.1, a 3 kW step at 0.1, then 4→6 kW over 0.1…0.3
    curve = [(0, 0), (0.1, 1), (0.1, 4), (0.3, 6)]
    b = BidCurve(curve)
    assert b(0.05) == pytest.approx(0.5) and b(0.1) == 4 and b(0.2) == pytest.approx(5) and b(1) == 6
    book = CurveBook.from_curves([curve])
    assert book.F(0.0999999) == pytest.approx(0.999999) and book.F(0.1) == pytest.approx(4.0)
    c = clear(book, 2.5, 1)
    assert c.price == pytest.approx(0.1) and c.setpoints[0] == pytest.approx(2.5)
    c = clear(book, 5, 1)
    assert c.price == pytest.approx(0.2) and c.setpoints[0] == pytest.approx(5)


def test_infeasible_with_steps_above_the_cap():
    book = CurveBook.from_curves([[(0.5, 0), (0.5, 10)], [(0, 0), (1, 2)]])
    c = clear(book, 5, 0.4)  # the step at 0.5 is above the cap
    assert not c.feasible and c.price == 0.4
    np.testing.assert_allclose(c.setpoints, [0, 0.8])
    assert c.available_at_cap == pytest.approx(0.8)


def test_dispatch_at_meets_a_target_inside_the_jump_and_clamps_outside():
    book = CurveBook.from_curves([[(1, 0), (1, 4)], [(0, 1), (2, 3)]])  # F(1-) = 2, F(1) = 6
    np.testing.assert_allclose(dispatch_at(book, 1.0, 3.0), [1, 2])
    np.testing.assert_allclose(dispatch_at(book, 1.0, 100.0), [4, 2])  # share at most 1
    np.testing.assert_allclose(dispatch_at(book, 1.0, 0.0), [0, 2])  # share at least 0


# --- random fleets with steps against the reference ------------------------------------------------
def _random_step_fleet(rng, n):
    curves = []
    for _ in range(n):
        k = int(rng.integers(1, 7))
        prices = np.cumsum(rng.integers(0, 8, size=k) / 16.0 + (rng.random(k) < 0.5) / 16.0)
        pts = []
        q = float(rng.integers(-4, 4) / 4.0)
        for p in prices:
            p = float(p)
            if pts and p == pts[-1][0] and len(pts) >= 2 and pts[-2][0] == p:
                continue
            if pts:
                q += float(rng.integers(0, 6) / 4.0)
            pts.append((p, q))
        if rng.random() < 0.4:  # an objective-like pure step
            u = float(rng.integers(0, 16) / 16.0)
            pts = [(u, 0.0), (u, float(rng.integers(1, 9) / 2.0))]
        curves.append(pts)
    return curves


@pytest.mark.parametrize("seed", seeds(30, quick=10))
def test_random_step_fleets_match_reference(seed):
    rng = np.random.default_rng(500 + seed)
    n = int(rng.choice([1, 2, 3, 8, 25, 60]))
    curves = _random_step_fleet(rng, n)
    book = CurveBook.from_curves(curves)
    top = max(c[-1][0] for c in curves)
    jumps_at = sorted({p for c in curves for p, _ in c})
    requests = [book.C - 1, book.F_max + 1, *rng.uniform(book.C, book.F_max, 5)]
    for u in rng.choice(jumps_at, size=min(3, len(jumps_at)), replace=False):
        lo, hi = book.F(float(u) - 1e-12), book.F(float(u))
        requests += [(lo + hi) / 2, hi]
    for q in requests:
        for cap in (top + 0.5, float(rng.integers(0, 16) / 16.0)):
            _check(curves, float(q), cap)


def test_a_book_taken_with_repeated_rows_keeps_every_rows_steps():
    """A fleet shares one step curve among many devices (CurveBook.take with repeated rows): each
    device keeps its own steps, so the book equals one built curve by curve."""
    step = [(0.10, 0.0), (0.20, 0.0), (0.20, 2.0), (0.40, 2.0)]
    smooth = [(0.10, 0.0), (0.30, 3.0)]
    rows = np.array([0, 1, 0, 0, 1])
    taken = CurveBook.from_curves([step, smooth]).take(rows)
    built = CurveBook.from_curves([step, smooth, step, step, smooth])
    for price in (0.05, 0.15, 0.2, 0.25, 0.35, 0.5):
        assert np.allclose(taken.responses(price), built.responses(price)), price
    q = 5.0
    a, b = clear(taken, q, 0.5), clear(built, q, 0.5)
    assert (a.price, a.feasible) == (b.price, b.feasible)
    assert np.allclose(dispatch_at(taken, a.price, q), dispatch_at(built, b.price, q))
    shifted = CurveBook.from_curves([step, smooth]).take(rows, np.array([0.05, 0.0]))
    assert np.allclose(shifted.responses(0.17), [2.0, 1.05, 2.0, 2.0, 1.05])  # the step moved to 0.15
