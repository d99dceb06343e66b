"""Exact uniform-price clearing of many bid curves (pure; numpy on column arrays).

Sign convention (see docs: flexibility.md, "Bid curves"): a curve is a list of (price, q) points
with non-decreasing, finite prices; q(p) is the flexibility *supplied* (reduction, kW) at
clearing price p, linearly interpolated between points, held flat outside them, and non-decreasing
in p. A curve may have a single point (a constant offer).

Vertical steps: two consecutive points at one price, (u, a) then (u, b) with b >= a, are a step
("reduce b - a more if the price is at least u"). A third point at that price is refused. The
curve is right-continuous: at p = u it supplies b. `CurveBook` keeps each step as a jump
(price u, size b - a, device) beside the continuous part, so F(p) = Fc(p) + sum of jumps at u <= p.

Aggregation: device i has response f_i(p) = q_i0 + sum_j dm_ij * max(0, p - p_ij) with slope
changes dm_ij; the fleet's F(p) = C + sum_k dm_k * max(0, p - p_k), C = sum_i q_i0. `CurveBook`
computes these columns once at ingest; `clear` solves F(p*) = Q exactly with the bucketed
slope-change method (np.bincount of dm and dm*p into S price buckets -> F at the bucket edges -> the
bucket holding Q -> sort only that bucket's breakpoints -> exact piecewise-linear solve): O(K + S)
for K breakpoints instead of O(K log K).

Rules (stated once, implemented in `clear`):

* Search domain. Prices are searched on [lo, cap] with lo = min(p_min, cap), p_min = the lowest
  point price of any curve in the book. Below p_min every curve is flat, so F(p) = C there.
* Price rule (covers flat segments and ties). p* = the LOWEST price p in [lo, cap] with
  F(p) >= Q, except that F within eps below Q at a breakpoint counts as reaching Q, with
  eps = 1e-12 * max(1, book.magnitude) (magnitude = sum_i (|q_i0| + q_iP - q_i0)): a rounding
  allowance so that a request equal to a plateau's value, summed in another order, clears at the
  plateau's start and not at its end. So when F is flat at Q over an interval, the interval's
  lowest price wins; on a rising segment p* solves F(p*) = Q.
* Trivially feasible (Q <= C + eps): price = lo, setpoints s_i = q_i0, quantity = C (>= Q: the
  curves offer that much at any price; nobody is curtailed below their first point).
* Infeasible (F(cap) < Q - eps): price = cap, setpoints s_i = f_i(cap), quantity = sum s_i =
  F(cap) = available_at_cap, feasible = False (a best effort, reported as such).
* Otherwise feasible: quantity = Q exactly, s_i = f_i(p*), then the residual Q - sum s_i
  (eps plus rounding) is spread over the marginal devices (slope > 0 at p*) in
  proportion to their slope, so |sum s - Q| <= 1e-9 * max(1, |Q|).
* Tie rule for steps (pro-rata at p*): when Q falls inside the jump of F at a step price u
  (F(u-) < Q <= F(u)), p* = u and every step AT u delivers the same share
  (Q - F(u-)) / (sum of the jumps at u) of its jump; steps below p* deliver in full, steps
  above p* not at all. `dispatch_at(book, price, target)` applies the same rule at a given price
  (grid nodes use it to split a node's target among its devices).

Ingest formats: `CurveBook.from_arrays` takes a PADDED (n_devices x n_points) pair of arrays with
an optional per-device point count (columns beyond a row's count are ignored: any value); it is
fully vectorised and takes strictly increasing prices (no steps). `CurveBook.from_curves` takes RAGGED lists of (price, q) points, validates each
curve with `validate_curve` (a Python loop, fine for parsing) and pads into `from_arrays`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = ["BidCurve", "CurveBook", "Clearing", "clear", "dispatch_at", "validate_curve"]

_EPS_REL = 1e-12


def validate_curve(points: Iterable[Sequence[float]]) -> list[tuple[float, float]]:
    """Check one curve and return it as a list of (price, q) floats.

    Raises ValueError naming the offending point: empty curve, non-finite price or quantity,
    prices decreasing, a third point at one price (a step has two), q decreasing in price.
    """
    pts: list[tuple[float, float]] = []
    for j, pt in enumerate(points):
        try:
            p, q = (float(pt[0]), float(pt[1]))
            if len(pt) != 2:
                raise ValueError
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"bid curve point {j}: expected (price, q), got {pt!r}") from None
        if not math.isfinite(p):
            raise ValueError(f"bid curve point {j}: price {p!r} is not finite")
        if not math.isfinite(q):
            raise ValueError(f"bid curve point {j}: quantity {q!r} is not finite")
        if pts:
            p0, q0 = pts[-1]
            if p < p0:
                raise ValueError(
                    f"bid curve point {j}: prices not increasing ({p!r} after {p0!r}); prices must not decrease"
                )
            if p == p0 and len(pts) >= 2 and pts[-2][0] == p:
                raise ValueError(f"bid curve point {j}: a third point at price {p!r}; a vertical step has two")
            if q < q0:
                raise ValueError(
                    f"bid curve point {j}: quantity decreases ({q!r} after {q0!r} at price {p!r}); "
                    "flexibility supplied must be non-decreasing in price"
                )
        pts.append((p, q))
    if not pts:
        raise ValueError("bid curve has no points")
    return pts


@dataclass(frozen=True)
class BidCurve:
    """One validated curve: (price, q) points, q = reduction supplied (kW), non-decreasing."""

    points: tuple[tuple[float, float], ...]

    def __init__(self, points: Iterable[Sequence[float]]):
        object.__setattr__(self, "points", tuple(validate_curve(points)))

    def __call__(self, price: float) -> float:
        """q(price): interpolated, flat outside, the upper value at a step's price."""
        pts = self.points
        if price < pts[0][0]:
            return pts[0][1]
        out = pts[0][1]
        for (p0, q0), (p1, q1) in zip(pts, pts[1:]):
            if price < p1:
                return q0 + (q1 - q0) * (price - p0) / (p1 - p0) if p1 > p0 else q0
            out = q1
        return out


@dataclass(frozen=True)
class Clearing:
    """Result of `clear`. setpoints[i] = f_i(price) (plus the rounding correction, see module)."""

    price: float
    quantity: float
    feasible: bool
    available_at_cap: float
    setpoints: np.ndarray
    requested: float


class CurveBook:
    """Column arrays of many curves, computed once at ingest.

    Per device (stored transposed, shape (n_points, n_devices), so per-point passes are
    contiguous): prices `pt` (+inf beyond a curve's count), quantities `qt` (the last q repeated),
    segment slopes `mt` (0 for the last and padded segments). Flat (only breakpoints with a
    non-zero slope change): `bp` = breakpoint price - p_min, `dm` = slope change, `dmp` = dm * bp.
    Scalars: C = sum q_i0, p_min, p_max, magnitude.
    Steps (vertical segments) are kept apart as jumps sorted by price: `ju` price, `jq` size,
    `jd` device, `jcum` cumulative size (so the jumps at or below p sum in one searchsorted).
    """

    def __init__(self, prices: np.ndarray, quantities: np.ndarray, counts: np.ndarray | None = None,
                 *, validate: bool = True, jumps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None):
        P = np.asarray(prices, dtype=np.float64)
        Q = np.asarray(quantities, dtype=np.float64)
        if P.ndim != 2 or P.shape != Q.shape:
            raise ValueError(f"prices and quantities must be 2-D arrays of one shape, got {P.shape} and {Q.shape}")
        n, npts = P.shape
        if npts == 0 and n > 0:
            raise ValueError("bid curves need at least one point")
        if counts is None:
            cnt = np.full(n, npts, dtype=np.intp)
        else:
            cnt = np.asarray(counts, dtype=np.intp)
            if cnt.shape != (n,):
                raise ValueError(f"counts must have shape ({n},), got {cnt.shape}")
            if n and (cnt.min() < 1 or cnt.max() > npts):
                bad = int(np.flatnonzero((cnt < 1) | (cnt > npts))[0])
                raise ValueError(f"curve {bad}: point count {int(cnt[bad])} outside 1..{npts}")
        cols = np.arange(npts)
        valid = cols[None, :] < cnt[:, None]  # (n, npts)
        if validate and n:
            _validate_padded(P, Q, valid)
        self.n = n
        self.n_points = npts
        self.counts = cnt
        # transposed, padded: price +inf, q = last valid q, slope 0
        last = np.maximum(cnt - 1, 0)
        qlast = Q[np.arange(n), last] if n else np.zeros(0)
        pt = np.where(valid, P, np.inf).T.copy()
        qt = np.where(valid, Q, qlast[:, None]).T.copy()
        if npts > 1:
            seg_valid = valid[:, 1:].T  # segment j (j -> j+1) valid iff point j+1 valid
            with np.errstate(invalid="ignore", divide="ignore"):
                m = np.where(seg_valid, (qt[1:] - qt[:-1]) / (pt[1:] - pt[:-1]), 0.0)
            mt = np.vstack([m, np.zeros((1, n))])
            dmt = mt.copy()
            dmt[1:] -= mt[:-1]
        else:
            mt = np.zeros((npts, n))
            dmt = np.zeros((npts, n))
        self.pt, self.qt, self.mt = pt, qt, mt
        self.C = float(qt[0].sum()) if n else 0.0
        self.p_min = float(pt[0].min()) if n else 0.0
        self.p_max = float(np.where(valid.T, pt, -np.inf).max()) if n else 0.0
        self.F_max = float(qlast.sum()) if n else 0.0
        self.magnitude = float(np.abs(qt[0]).sum() + (qlast - qt[0]).sum()) if n else 0.0
        nz = dmt != 0.0
        self.bp = pt[nz] - self.p_min
        self.dm = dmt[nz]
        self.dmp = self.dm * self.bp
        self.bp_max = float(self.bp.max()) if self.bp.size else 0.0
        ju, jq, jd = jumps if jumps is not None else (np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.intp))
        order = np.argsort(ju, kind="stable")
        self.ju = np.asarray(ju, dtype=np.float64)[order]
        self.jq = np.asarray(jq, dtype=np.float64)[order]
        self.jd = np.asarray(jd, dtype=np.intp)[order]
        self.jcum = np.cumsum(self.jq)
        jtotal = float(self.jcum[-1]) if self.jq.size else 0.0
        self.F_max += jtotal
        self.magnitude += jtotal
        if self.ju.size:  # the search must reach the highest step
            self.bp_max = max(self.bp_max, float(self.ju[-1]) - self.p_min)
            self.p_max = max(self.p_max, float(self.ju[-1]))

    @classmethod
    def from_arrays(cls, prices, quantities, counts=None) -> "CurveBook":
        """Padded (n_devices x n_points) prices and quantities; `counts` points used per row."""
        return cls(prices, quantities, counts)

    @classmethod
    def from_curves(cls, curves: Iterable[Iterable[Sequence[float]] | BidCurve]) -> "CurveBook":
        """Ragged lists of (price, q) points (or BidCurve); each validated, then padded."""
        checked = []
        for i, c in enumerate(curves):
            pts = c.points if isinstance(c, BidCurve) else c
            try:
                checked.append(validate_curve(pts))
            except ValueError as e:
                raise ValueError(f"curve {i}: {e}") from None
        ju: list[float] = []
        jq: list[float] = []
        jd: list[int] = []
        for i, c in enumerate(checked):
            if any(a[0] == b[0] for a, b in zip(c, c[1:])):
                checked[i] = _split_steps(c, i, ju, jq, jd)
        n = len(checked)
        npts = max((len(c) for c in checked), default=1)
        P = np.zeros((n, npts))
        Q = np.zeros((n, npts))
        cnt = np.empty(n, dtype=np.intp)
        for i, c in enumerate(checked):
            k = len(c)
            cnt[i] = k
            arr = np.asarray(c, dtype=np.float64)
            P[i, :k] = arr[:, 0]
            Q[i, :k] = arr[:, 1]
        jumps = (np.array(ju, dtype=np.float64), np.array(jq, dtype=np.float64), np.array(jd, dtype=np.intp))
        return cls(P, Q, cnt, validate=False, jumps=jumps)

    def __len__(self) -> int:
        return self.n

    def take(self, rows: np.ndarray, shift: np.ndarray | None = None) -> "CurveBook":
        """A book of the given rows (in that order), each curve's prices moved by -shift[row]
        (a grid node's adder: a device that sees p + a offers f(p + a) on the system axis)."""
        rows = np.asarray(rows, dtype=np.intp)
        P = self.pt.T[rows]
        if shift is not None:
            P = P - np.asarray(shift, dtype=np.float64)[rows][:, None]
        # Every step of a source row goes to EVERY position that row takes (rows may repeat: a
        # fleet shares one curve among many devices), so each position keeps its own steps.
        order = np.argsort(rows, kind="stable")
        by_source = rows[order]
        first = np.searchsorted(by_source, self.jd, side="left")
        times = np.searchsorted(by_source, self.jd, side="right") - first  # positions per step
        step = np.repeat(np.arange(self.jd.size), times)
        offset = np.arange(step.size) - np.repeat(np.cumsum(times) - times, times)
        position = order[np.repeat(first, times) + offset]
        ju = self.ju[step]
        if shift is not None and ju.size:
            ju = ju - np.asarray(shift, dtype=np.float64)[self.jd[step]]
        jumps = (ju, self.jq[step], position)
        return CurveBook(P, self.qt.T[rows], self.counts[rows], validate=False, jumps=jumps)

    # --- evaluation -------------------------------------------------------------------------
    def responses(self, price: float) -> np.ndarray:
        """f_i(price) for every device (vectorised, one pass per point column); steps at or
        below `price` in full."""
        s = self._responses(price)[0]
        if self.ju.size:
            k = int(np.searchsorted(self.ju, price, side="right"))
            np.add.at(s, self.jd[:k], self.jq[:k])
        return s

    def jumps_upto(self, price: float, *, inclusive: bool = True) -> float:
        """Sum of the steps at prices <= price (< price with inclusive=False)."""
        k = int(np.searchsorted(self.ju, price, side="right" if inclusive else "left"))
        return float(self.jcum[k - 1]) if k else 0.0

    def _responses(self, price: float):
        n = self.n
        j = np.zeros(n, dtype=np.intp)
        for k in range(self.n_points):  # number of points with p_ik <= price
            j += self.pt[k] <= price
        jj = np.maximum(j - 1, 0)
        flat = jj * n + np.arange(n)
        p0 = self.pt.ravel()[flat]
        q0 = self.qt.ravel()[flat]
        m0 = self.mt.ravel()[flat]
        s = q0 + m0 * np.maximum(price - p0, 0.0)
        return s, j, m0

    def F(self, price: float) -> float:
        """Aggregate response F(price) from the slope-change columns, steps at or below included."""
        return self.Fc(price) + (self.jumps_upto(price) if self.ju.size else 0.0)

    def Fc(self, price: float) -> float:
        """The continuous part of F (no steps)."""
        x = price - self.p_min
        below = self.bp < x
        return self.C + float(x * self.dm[below].sum() - self.dmp[below].sum())

    def clear(self, requested_kw: float, price_cap: float, n_buckets: int | None = None) -> "Clearing":
        return clear(self, requested_kw, price_cap, n_buckets=n_buckets)


def _validate_padded(P: np.ndarray, Q: np.ndarray, valid: np.ndarray) -> None:
    def first(mask: np.ndarray) -> tuple[int, int] | None:
        if not mask.any():
            return None
        i, j = np.unravel_index(int(np.argmax(mask)), mask.shape)
        return int(i), int(j)

    bad = first(valid & ~np.isfinite(P))
    if bad:
        raise ValueError(f"curve {bad[0]} point {bad[1]}: price {float(P[bad])!r} is not finite")
    bad = first(valid & ~np.isfinite(Q))
    if bad:
        raise ValueError(f"curve {bad[0]} point {bad[1]}: quantity {float(Q[bad])!r} is not finite")
    if P.shape[1] > 1:
        v = valid[:, 1:]
        with np.errstate(invalid="ignore"):
            bad = first(v & ~(P[:, 1:] > P[:, :-1]))
        if bad:
            i, j = bad[0], bad[1] + 1
            what = "duplicate price" if P[i, j] == P[i, j - 1] else "prices not increasing"
            raise ValueError(f"curve {i} point {j}: {what} ({float(P[i, j])!r} after {float(P[i, j - 1])!r}); "
                             "prices must be strictly increasing")
        bad = first(v & (Q[:, 1:] < Q[:, :-1]))
        if bad:
            i, j = bad[0], bad[1] + 1
            raise ValueError(f"curve {i} point {j}: quantity decreases ({float(Q[i, j])!r} after {float(Q[i, j - 1])!r} "
                             f"at price {float(P[i, j])!r}); flexibility supplied must be non-decreasing in price")


def _solve(book: CurveBook, Q: float, hi: float, eps: float, n_buckets: int | None) -> tuple[float, float]:
    """Lowest x in [0, hi] (relative to p_min) with F(x) >= Q - eps, and F(hi).

    Returns (x, F_hi); x is nan when F(hi) < Q - eps.
    """
    bp, dm, dmp = book.bp, book.dm, book.dmp
    K = bp.size
    C = book.C
    if K == 0 or hi <= 0.0:
        return (0.0 if C >= Q - eps else math.nan), C
    S = n_buckets or int(min(max(K // 64, 16), 1 << 16))
    w = hi / S
    idx = (bp * (1.0 / w)).astype(np.intp)  # bp >= 0; bucket S = beyond hi
    np.minimum(idx, S, out=idx)
    sm = np.bincount(idx, weights=dm, minlength=S + 1)
    sp = np.bincount(idx, weights=dmp, minlength=S + 1)
    cm = np.concatenate(([0.0], np.cumsum(sm[:S])))  # sum dm over points below edge k
    cp = np.concatenate(([0.0], np.cumsum(sp[:S])))
    edges = np.arange(S + 1) * w
    edges[-1] = hi
    Fe = C + edges * cm - cp
    # F is non-decreasing; enforce it against rounding so the search is monotone
    if hi >= book.bp_max:  # beyond the last breakpoint F is exactly sum of the last q: use it
        Fe[-1] = book.F_max
    Fe = np.maximum.accumulate(Fe)
    F_hi = float(Fe[-1])
    if F_hi < Q - eps:
        return math.nan, F_hi
    if Fe[0] >= Q - eps:
        return 0.0, F_hi
    k = int(np.searchsorted(Fe, Q - eps, side="left"))  # first edge with F >= Q - eps; k >= 1
    b = k - 1
    sel = np.flatnonzero(idx == b)
    order = np.argsort(bp[sel], kind="stable")
    ps = bp[sel][order]
    ds = dm[sel][order]
    lo_e, hi_e = edges[b], edges[k]
    ps = np.clip(ps, lo_e, hi_e)
    x = np.concatenate(([lo_e], ps, [hi_e]))
    slopes = cm[b] + np.concatenate(([0.0], np.cumsum(ds)))  # slope on (x[t], x[t+1])
    Fx = np.empty(x.size)
    Fx[0] = Fe[b]
    Fx[1:] = Fe[b] + np.cumsum(slopes * np.diff(x))
    Fx = np.maximum.accumulate(Fx)
    t = int(np.searchsorted(Fx, Q - eps, side="left"))
    t = min(max(t, 1), x.size - 1)
    m = slopes[t - 1]
    gap = Q - Fx[t - 1]
    if gap <= 0.0 or m <= 0.0:
        xs = x[t - 1] if gap <= 0.0 else x[t]
    else:
        xs = min(max(x[t - 1] + gap / m, x[t - 1]), x[t])
    return float(xs), F_hi


def clear(book: CurveBook, requested_kw: float, price_cap: float, *, n_buckets: int | None = None) -> Clearing:
    """Uniform-price clearing of `book` for a requested reduction, under a price cap.

    See the module docstring for the exact rules (lowest price on flat segments and ties,
    trivially feasible, infeasible).
    """
    Q = float(requested_kw)
    cap = float(price_cap)
    if not (math.isfinite(Q) and math.isfinite(cap)):
        raise ValueError("requested_kw and price_cap must be finite")
    if book.n == 0:
        return Clearing(cap, 0.0, Q <= 0.0, 0.0, np.zeros(0), Q)
    eps = _EPS_REL * max(book.magnitude, 1.0)
    if book.ju.size:
        return _clear_with_steps(book, Q, cap, eps, n_buckets)
    cap_rel = cap - book.p_min
    hi = min(cap_rel, book.bp_max)
    x, F_hi = _solve(book, Q, hi, eps, n_buckets)
    if math.isnan(x):  # infeasible: best effort at the cap
        s = book.responses(cap)
        got = float(s.sum())
        return Clearing(cap, got, False, got, s, Q)
    if x <= 0.0 and book.C >= Q - eps:  # trivially feasible
        price = min(book.p_min, cap)
        s = book.qt[0].copy()
        return Clearing(price, float(book.C), True, F_hi, s, Q)
    price = book.p_min + x
    s, j, m_right = book._responses(price)
    _spread_residual(book, s, j, m_right, price, Q)
    return Clearing(price, Q, True, F_hi, s, Q)


def _spread_residual(book: CurveBook, s: np.ndarray, j: np.ndarray, m_right: np.ndarray,
                     price: float, Q: float) -> None:
    """Make sum(s) == Q to rounding by moving the marginal devices along their slopes."""
    n = book.n
    for _ in range(2):
        r = Q - float(s.sum())
        if abs(r) <= 1e-12 * max(1.0, abs(Q)):
            return
        w = np.where(j > 0, m_right, 0.0)
        if not w.any():  # price sits on breakpoints whose right side is flat: use the left slope
            jl = np.maximum(j - 2, 0)
            at = (j >= 2) & (book.pt.ravel()[(j - 1).clip(0) * n + np.arange(n)] == price)
            w = np.where(at, book.mt.ravel()[jl * n + np.arange(n)], 0.0)
        tot = float(w.sum())
        if tot <= 0.0:
            return
        s += w * (r / tot)


def _split_steps(c: list[tuple[float, float]], i: int, ju: list[float], jq: list[float],
                 jd: list[int]) -> list[tuple[float, float]]:
    """The continuous part of a curve with steps; each step's (price, size, device) appended."""
    out: list[tuple[float, float]] = []
    offset = 0.0
    prev_q = 0.0
    for p, q in c:
        if out and p == out[-1][0]:
            size = q - prev_q
            if size > 0.0:
                ju.append(p)
                jq.append(size)
                jd.append(i)
                offset += size
        else:
            out.append((p, q - offset))
        prev_q = q
    return out


def _clear_with_steps(book: CurveBook, Q: float, cap: float, eps: float, n_buckets: int | None) -> Clearing:
    """`clear` for a book with steps: find the segment between step prices that holds Q (binary
    search on F at the step prices), solve the continuous part there, or stop at a step price and
    share its steps pro rata (the tie rule)."""
    F_cap = book.F(cap)
    if F_cap < Q - eps:  # infeasible: best effort at the cap
        s = book.responses(cap)
        got = float(s.sum())
        return Clearing(cap, got, False, got, s, Q)
    lo = min(book.p_min, cap)
    if book.F(lo) >= Q - eps:
        s = dispatch_at(book, lo, Q)
        return Clearing(lo, float(s.sum()), True, F_cap, s, Q)
    u = np.unique(book.ju[(book.ju > lo) & (book.ju <= cap)])
    a, b = 0, u.size  # the first step price with F >= Q - eps is u[k] for k in [a, b]; b = none
    while a < b:
        mid = (a + b) // 2
        if book.F(float(u[mid])) >= Q - eps:
            b = mid
        else:
            a = mid + 1
    top = float(u[a]) if a < u.size else cap
    below = book.jumps_upto(top, inclusive=False)  # steps strictly below the segment's top
    x, _ = _solve(book, Q - below, min(top - book.p_min, book.bp_max), eps, n_buckets)
    if math.isnan(x) or book.p_min + x > top:
        price = top  # Q sits inside the jump at `top`: pro rata
    else:
        price = book.p_min + x
    s = dispatch_at(book, price, Q)
    return Clearing(price, Q, True, F_cap, s, Q)


def dispatch_at(book: CurveBook, price: float, target: float) -> np.ndarray:
    """Setpoints at a given price that sum to `target` where the book allows it: the continuous
    responses at `price`, steps below it in full, steps AT it pro rata (the tie rule), and the
    rounding residual spread over the marginal devices. A target outside [F(price-), F(price)]
    gets the nearest end (no step share below 0 or above 1)."""
    s, j, m_right = book._responses(price)
    if book.ju.size:
        k_lo = int(np.searchsorted(book.ju, price, side="left"))
        k_hi = int(np.searchsorted(book.ju, price, side="right"))
        np.add.at(s, book.jd[:k_lo], book.jq[:k_lo])
        at = book.jq[k_lo:k_hi]
        total = float(at.sum())
        if total > 0.0:
            share = min(max((target - float(s.sum())) / total, 0.0), 1.0)
            np.add.at(s, book.jd[k_lo:k_hi], at * share)
    if abs(target - float(s.sum())) <= 1e-9 * max(1.0, abs(target), book.magnitude):
        _spread_residual(book, s, j, m_right, price, target)  # rounding only, never a real gap
    return s
