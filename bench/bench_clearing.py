#!/usr/bin/env python
"""Clearing benchmark: exact bucketed clearing (programs.clearing) vs a fixed price grid.

Synthetic fleet: N curves x 10 points (seeded), prices = random start + cumulative gaps in
[0.001, 0.05] $/kWh, quantities cumulative with 30 % zero-slope segments and some steep ones.
For each N it measures (median of --runs runs, wall clock, one process):

  ingest  — CurveBook.from_arrays (validation + column arrays + slope changes), once per run;
  exact   — clear(book, Q, cap) for a request at ~60 % of the fleet's range, including the
            setpoints s_i = f_i(p*) for every device;
  grid    — a PowerMatcher-style fixed price grid of --steps prices over [p_min, cap]: the aggregate
            F at the grid prices (np.bincount of the same slope-change columns, i.e. the cheapest
            way to aggregate on a grid), the price by linear interpolation between grid prices,
            then the same setpoints pass. Its quantity error is |sum f_i(p_grid) - Q|.

Examples:
    .venv/bin/python bench/bench_clearing.py                 # 1e5 and 1e6 curves, 7 runs
    .venv/bin/python bench/bench_clearing.py --sizes 100000 --runs 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from programs.clearing import CurveBook, clear  # noqa: E402


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fleet(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gaps = rng.uniform(0.001, 0.05, (n, k))
    gaps[:, 0] = rng.uniform(0.0, 0.3, n)
    steep = rng.random((n, k)) < 0.05
    gaps[steep] = 1e-6
    prices = np.cumsum(gaps, axis=1)
    dq = np.where(rng.random((n, k)) < 0.3, 0.0, rng.uniform(0.0, 2.0, (n, k)))
    dq[:, 0] = rng.uniform(0.0, 1.0, n)
    return prices, np.cumsum(dq, axis=1)


def grid_clear(book: CurveBook, Q: float, cap: float, steps: int):
    """Fixed price grid: F at `steps` grid prices, linear interpolation between them."""
    hi = cap - book.p_min
    g = np.linspace(0.0, hi, steps)
    w = hi / (steps - 1)
    idx = np.minimum(np.ceil(book.bp / w).astype(np.intp), steps)  # first grid price >= bp
    sm = np.cumsum(np.bincount(idx, weights=book.dm, minlength=steps + 1))[:steps]
    sp = np.cumsum(np.bincount(idx, weights=book.dmp, minlength=steps + 1))[:steps]
    Fg = book.C + g * sm - sp
    t = int(np.searchsorted(Fg, Q))
    if t == 0:
        x = 0.0
    elif t >= steps:
        x = hi
    else:
        x = g[t - 1] + (Q - Fg[t - 1]) / (Fg[t] - Fg[t - 1]) * w
    price = book.p_min + x
    s = book.responses(price)
    return price, s


def timed(fn, runs):
    out, ts = None, []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return out, statistics.median(ts), ts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--points", type=int, default=10)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    print(f"machine: nproc={os.cpu_count()} cpu={cpu_model()!r} python={platform.python_version()} "
          f"numpy={np.__version__}")
    rows = []
    for n in a.sizes:
        P, Qa = fleet(n, a.points, a.seed)
        book, t_ing, _ = timed(lambda: CurveBook.from_arrays(P, Qa), a.runs)
        cap = float(P[:, -1].max()) + 0.01
        Q = book.C + 0.6 * (book.F_max - book.C)
        c, t_ex, _ = timed(lambda: clear(book, Q, cap), a.runs)
        assert c.feasible and abs(c.setpoints.sum() - Q) <= 1e-9 * Q
        Fx = float(np.sum(book.responses(c.price)))
        (pg, sg), t_gr, _ = timed(lambda: grid_clear(book, Q, cap, a.steps), a.runs)
        err = abs(float(sg.sum()) - Q)
        rows.append((n, a.points, book.bp.size, t_ing, t_ex, abs(Fx - Q) / Q, t_gr, err / Q, abs(pg - c.price)))
    print()
    print(f"{'curves':>9} {'pts':>3} {'breakpts':>9} {'ingest ms':>10} {'exact ms':>9} "
          f"{'exact rel err':>13} {'grid ms':>8} {'grid rel err':>12} {'grid |dp|':>10}")
    for n, k, K, ti, te, ee, tg, eg, dp in rows:
        print(f"{n:>9} {k:>3} {K:>9} {ti * 1e3:>10.1f} {te * 1e3:>9.1f} {ee:>13.1e} "
              f"{tg * 1e3:>8.1f} {eg:>12.1e} {dp:>10.1e}")
    print(f"(median of {a.runs} runs; exact rel err = |sum f_i(p*) - Q|/Q before the residual spread; "
          f"grid = {a.steps} fixed prices)")


if __name__ == "__main__":
    main()
