"""Grid nodes: locational price adders and flow limits in clearing (pure; numpy).

A `GridNode` is a substation, feeder or transformer (seed §3.4–3.5). Nodes nest in a `GridTree`
(substation → feeder → transformer); a device sits behind at most one node.

Locational adder. Node n adds a_n = congestion_multiplier × current_load_percent ×
price_adder_per_percent to the price its devices see. The seed's formula is
basePrice + currentLoadPercent × priceAdderPerPercent (0.10 + 75 × 0.001 = 0.175) and its
congestionMultiplier appears beside it unused; we scale the adder by it, which leaves the seed's
example (multiplier 1.0) exactly as printed and gives the operator one knob to sharpen or mute a
congested node. Adders add up along the path to the root: a device behind n sees p + A_n with
A_n = Σ a over n and its ancestors, where p is the system (uniform) price. On the system axis its
curve is f(p + A_n); the program's price cap bounds the system price p.

Flow limits. A node's reduction R_n (the sum over the devices behind it and its descendants) moves
its flow from current_load_kw to current_load_kw − R_n. maxForwardFlowKW then asks for
R_n ≥ current_load_kw − max_forward_kw (relieve an overload) and maxReverseFlowKW for
R_n ≤ current_load_kw + max_reverse_kw (do not push too much back). A limit needs the node's
current load; a node with a limit and no current load is refused. The node's aggregate response is
CLIPPED to its bounds (PowerMatcher's peak-shaving concentrator): the parent sees
g_n(p) = clip(f_n(p), lo, hi), and when a bound binds the node's devices get a NODE price — the
lowest system-side price at which their own response f_n delivers exactly the bound — instead of
p. A bound the node's devices cannot meet at the price cap (or with nobody reducing) is held as
nearly as they can and reported in `violated`.

Exactness: without limits, clearing is the bucketed method of programs.clearing on curves shifted
by their adders. With limits, each limited node's aggregate is built explicitly (its breakpoints
sorted, O(K log K)) and clipped; each level is solved exactly on those explicit curves and its
target split among its members at the level's price with the pro-rata tie rule, down to the
devices (programs.clearing.dispatch_at). Setpoints sum to the cleared quantity, and each limited
node's devices to its clipped target, to float precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from programs.clearing import Clearing, CurveBook, clear, dispatch_at

__all__ = ["GridClearing", "GridNode", "GridTree", "clear_with_grid"]

_EPS_REL = 1e-12


def _finite(v: object, name: str, *, allow_none: bool = False, min_value: float | None = None) -> float | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if min_value is not None and v < min_value:
        raise ValueError(f"{name} must be {min_value:g} or more, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class GridNode:
    """One node: `id` is the operator's name for it; `parent` another node's id or None."""

    id: str
    parent: str | None = None
    load_percent: float = 0.0
    adder_per_percent: float = 0.0
    congestion_multiplier: float = 1.0
    max_forward_kw: float | None = None
    max_reverse_kw: float | None = None
    current_load_kw: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError(f"grid node id must be a non-blank text, got {self.id!r}")
        who = f"grid node {self.id!r}"
        for name in ("load_percent", "adder_per_percent", "congestion_multiplier"):
            object.__setattr__(self, name, _finite(getattr(self, name), f"{who}: {name}", min_value=0.0))
        for name in ("max_forward_kw", "max_reverse_kw"):
            object.__setattr__(self, name, _finite(getattr(self, name), f"{who}: {name}", allow_none=True, min_value=0.0))
        object.__setattr__(self, "current_load_kw",
                           _finite(self.current_load_kw, f"{who}: current_load_kw", allow_none=True))
        if self.current_load_kw is None and (self.max_forward_kw is not None or self.max_reverse_kw is not None):
            raise ValueError(f"{who}: a flow limit needs current_load_kw (the flow the limit is measured against)")

    @property
    def adder(self) -> float:
        """This node's own locational adder (currency per kWh)."""
        return self.congestion_multiplier * self.load_percent * self.adder_per_percent

    @property
    def limited(self) -> bool:
        return self.max_forward_kw is not None or self.max_reverse_kw is not None

    def reduction_bounds(self) -> tuple[float, float]:
        """(lowest, highest) reduction of the node's flow its limits allow (±inf: no limit)."""
        load = self.current_load_kw or 0.0
        lo = load - self.max_forward_kw if self.max_forward_kw is not None else -math.inf
        hi = load + self.max_reverse_kw if self.max_reverse_kw is not None else math.inf
        return lo, hi


class GridTree:
    """Validated nodes (unique ids, known parents, no cycles) in the order given."""

    def __init__(self, nodes: list[GridNode] | tuple[GridNode, ...]):
        self.nodes = list(nodes)
        self.index = {}
        for i, n in enumerate(self.nodes):
            if n.id in self.index:
                raise ValueError(f"grid node {n.id!r} is listed twice")
            self.index[n.id] = i
        for n in self.nodes:
            if n.parent is not None and n.parent not in self.index:
                raise ValueError(f"grid node {n.id!r}: its parent {n.parent!r} is not a grid node")
        self.parent = np.array([-1 if n.parent is None else self.index[n.parent] for n in self.nodes], dtype=np.intp)
        self.depth = np.zeros(len(self.nodes), dtype=np.intp)
        self.adders = np.zeros(len(self.nodes))  # path adders A_n
        for i, n in enumerate(self.nodes):
            seen = {i}
            k, total, depth = i, 0.0, 0
            while k >= 0:
                total += self.nodes[k].adder
                k = int(self.parent[k])
                if k in seen:
                    raise ValueError(f"grid node {n.id!r}: its parents form a cycle")
                seen.add(k)
                depth += 1
            self.adders[i], self.depth[i] = total, depth - 1

    def __len__(self) -> int:
        return len(self.nodes)

    def path(self, node_id: str) -> list[str]:
        """The node and its ancestors, nearest first."""
        out, k = [], self.index[node_id]
        while k >= 0:
            out.append(self.nodes[k].id)
            k = int(self.parent[k])
        return out

    def path_adder(self, node_id: str) -> float:
        return float(self.adders[self.index[node_id]])


@dataclass(frozen=True)
class GridClearing(Clearing):
    """A Clearing with the grid: per device the price it saw; per node (by id) the price its
    devices see, its reduction, the limit that binds ("max_forward_kw" / "max_reverse_kw") and the
    limits that could not be held."""

    device_prices: np.ndarray = field(default_factory=lambda: np.zeros(0))
    node_prices: dict[str, float] = field(default_factory=dict)
    node_reductions: dict[str, float] = field(default_factory=dict)
    binding: dict[str, str] = field(default_factory=dict)
    violated: tuple[str, ...] = ()


# --- explicit aggregate curves -----------------------------------------------------------------
@dataclass
class _Agg:
    """An aggregate response as explicit points: sorted distinct prices x, F(x-) and F(x);
    flat at left[0] below x[0] and at right[-1] above x[-1], linear in between."""

    x: np.ndarray
    left: np.ndarray
    right: np.ndarray

    def at(self, p: float, *, side: str = "right") -> float:
        x = self.x
        if not x.size:
            return 0.0
        k = int(np.searchsorted(x, p, side="left"))
        if k < x.size and x[k] == p:
            return float(self.left[k] if side == "left" else self.right[k])
        if k == 0:
            return float(self.left[0])
        if k == x.size:
            return float(self.right[-1])
        x0, x1, y0, y1 = x[k - 1], x[k], self.right[k - 1], self.left[k]
        return float(y0 + (y1 - y0) * (p - x0) / (x1 - x0))

    def many(self, ps: np.ndarray, side: str) -> np.ndarray:
        """`at` for many prices (vectorised)."""
        x, left, right = self.x, self.left, self.right
        ps = np.asarray(ps, dtype=np.float64)
        if not x.size:
            return np.zeros(ps.size)
        k = np.searchsorted(x, ps, side="left")
        kc = np.minimum(k, x.size - 1)
        on = x[kc] == ps
        if x.size > 1:
            kk = np.clip(k, 1, x.size - 1)
            x0, x1 = x[kk - 1], x[kk]
            with np.errstate(invalid="ignore", divide="ignore"):
                out = right[kk - 1] + (left[kk] - right[kk - 1]) * (ps - x0) / (x1 - x0)
        else:
            out = np.zeros(ps.size)
        out = np.where(k == 0, left[0], np.where(k == x.size, right[-1], out))
        return np.where(on, (left if side == "left" else right)[kc], out)

    @property
    def magnitude(self) -> float:
        return float(np.abs(self.left[:1]).sum() + (self.right[-1:] - self.left[:1]).sum()) if self.x.size else 0.0


def _aggregate(book: CurveBook) -> _Agg:
    """F of a book as explicit points, exact up to summation order (O(K log K))."""
    if not book.n:
        return _Agg(np.zeros(0), np.zeros(0), np.zeros(0))
    order = np.argsort(book.bp, kind="stable")
    bp, dm, dmp = book.bp[order], book.dm[order], book.dmp[order]
    x = np.unique(np.concatenate(([book.p_min], bp + book.p_min, book.ju)))
    rel = x - book.p_min
    k = np.searchsorted(bp, rel, side="left")  # breakpoints strictly below x
    cm = np.concatenate(([0.0], np.cumsum(dm)))
    cp = np.concatenate(([0.0], np.cumsum(dmp)))
    fc = book.C + rel * cm[k] - cp[k]
    jc = np.concatenate(([0.0], book.jcum))
    jl = jc[np.searchsorted(book.ju, x, side="left")]
    jr = jc[np.searchsorted(book.ju, x, side="right")]
    left, right = fc + jl, fc + jr
    # F is non-decreasing: enforce it against summation rounding so searches stay monotone
    both = np.maximum.accumulate(np.column_stack([left, right]).ravel())
    return _Agg(x, both[0::2].copy(), both[1::2].copy())


def _sum(aggs: list[_Agg]) -> _Agg:
    aggs = [a for a in aggs if a.x.size]
    if not aggs:
        return _Agg(np.zeros(0), np.zeros(0), np.zeros(0))
    if len(aggs) == 1:
        return aggs[0]
    x = np.unique(np.concatenate([a.x for a in aggs]))
    left = sum((a.many(x, "left") for a in aggs), np.zeros(x.size))
    right = sum((a.many(x, "right") for a in aggs), np.zeros(x.size))
    return _Agg(x, left, right)


def _clip(a: _Agg, lo: float, hi: float) -> _Agg:
    """clip(a, lo, hi) exactly: the points where a crosses a bound are added first."""
    if not a.x.size or (lo == -math.inf and hi == math.inf):
        return a
    y0, y1 = a.right[:-1], a.left[1:]
    extra = []
    for bound in (lo, hi):
        if math.isfinite(bound):
            cross = ((y0 < bound) & (y1 > bound)) | ((y0 > bound) & (y1 < bound))
            t = (bound - y0[cross]) / (y1[cross] - y0[cross])
            extra.append(a.x[:-1][cross] + t * (a.x[1:][cross] - a.x[:-1][cross]))
    x = np.unique(np.concatenate([a.x, *extra])) if extra else a.x
    return _Agg(x, np.clip(a.many(x, "left"), lo, hi), np.clip(a.many(x, "right"), lo, hi))


def _lowest_price(a: _Agg, Q: float, cap: float, eps: float) -> tuple[float, bool]:
    """(the lowest price <= cap with a >= Q - eps, True), or (cap, False) when a(cap) < Q - eps.
    At a jump that holds Q the price is the jump's (the tie rule shares it)."""
    if a.at(cap) < Q - eps:
        return cap, False
    lo = min(float(a.x[0]), cap) if a.x.size else cap
    if a.at(lo) >= Q - eps:
        return lo, True
    xs = a.x[(a.x > lo) & (a.x < cap)]
    cand = np.concatenate((xs, [cap]))
    rights = np.concatenate((a.right[(a.x > lo) & (a.x < cap)], [a.at(cap)]))
    k = int(np.searchsorted(rights, Q - eps, side="left"))  # rights is non-decreasing
    x = float(cand[k])
    prev = float(cand[k - 1]) if k else lo
    if a.at(x, side="left") < Q - eps:
        return x, True  # inside the jump at x
    f0, f1 = a.at(prev), a.at(x, side="left")
    p = prev + (Q - f0) * (x - prev) / (f1 - f0) if f1 > f0 else x
    return min(max(p, prev), x), True


# --- one level of the tree: devices + limited children --------------------------------------------
@dataclass
class _Level:
    """The members a limited node (or the top) splits its target among."""

    rows: np.ndarray  # device rows (indices into the whole fleet)
    book: CurveBook  # those devices on the system axis
    children: list[int]  # limited node indices whose nearest limited ancestor is this level
    agg_devices: _Agg | None = None


def clear_with_grid(book: CurveBook, nodes: np.ndarray, tree: GridTree, requested_kw: float,
                    price_cap: float, *, n_buckets: int | None = None) -> GridClearing:
    """Clear `book` (one curve per device) with device i behind node nodes[i] (-1: none)."""
    n = book.n
    nodes = np.asarray(nodes, dtype=np.intp)
    if nodes.shape != (n,):
        raise ValueError(f"nodes must give one node index per device ({n}), got shape {nodes.shape}")
    if n and (nodes.min() < -1 or nodes.max() >= len(tree)):
        raise ValueError("nodes holds an index that is not a node of the tree")
    Q, cap = float(requested_kw), float(price_cap)
    if not (math.isfinite(Q) and math.isfinite(cap)):
        raise ValueError("requested_kw and price_cap must be finite")
    shift = np.where(nodes >= 0, tree.adders[np.maximum(nodes, 0)] if len(tree) else 0.0, 0.0)
    limited = [i for i, nd in enumerate(tree.nodes) if nd.limited]
    system = book.take(np.arange(n), shift) if np.any(shift) else book

    if not limited:
        c = clear(system, Q, cap, n_buckets=n_buckets)
        prices = np.full(n, c.price) + shift
        return _result(c.price, c.quantity, c.feasible, c.available_at_cap, c.setpoints, Q, prices,
                       tree, nodes, {i: c.price for i in range(len(tree))}, {}, ())

    # owner: the nearest limited node at or above each node (-1: the top level)
    owner = np.full(len(tree), -1, dtype=np.intp)
    for i in np.argsort(tree.depth, kind="stable"):
        p = int(tree.parent[i])
        owner[i] = i if tree.nodes[i].limited else (owner[p] if p >= 0 else -1)
    dev_owner = np.where(nodes >= 0, owner[np.maximum(nodes, 0)], -1) if n else np.zeros(0, dtype=np.intp)
    levels: dict[int, _Level] = {}
    for lv in [-1, *limited]:
        rows = np.flatnonzero(dev_owner == lv)
        kids = [k for k in limited if (owner[tree.parent[k]] if tree.parent[k] >= 0 else -1) == lv]
        levels[lv] = _Level(rows, system.take(rows), kids)

    # bottom-up: each limited node's unclipped aggregate f and clipped g
    f: dict[int, _Agg] = {}
    g: dict[int, _Agg] = {}
    violated = []
    for k in sorted(limited, key=lambda i: -int(tree.depth[i])):
        lv = levels[k]
        lv.agg_devices = _aggregate(lv.book)
        f[k] = _sum([lv.agg_devices, *(g[c] for c in lv.children)])
        lo, hi = tree.nodes[k].reduction_bounds()
        least, most = (f[k].at(-math.inf), f[k].at(cap)) if f[k].x.size else (0.0, 0.0)
        tol = 1e-9 * max(1.0, f[k].magnitude)
        if lo > most + tol or hi < least - tol:
            violated.append(tree.nodes[k].id)
        g[k] = _clip(f[k], min(lo, most), max(hi, least)) if f[k].x.size else f[k]
    top = levels[-1]
    top.agg_devices = _aggregate(top.book)
    F = _sum([top.agg_devices, *(g[c] for c in top.children)])
    eps = _EPS_REL * max(1.0, F.magnitude)
    price, feasible = _lowest_price(F, Q, cap, eps) if F.x.size else (cap, Q <= 0.0)
    available = F.at(cap) if F.x.size else 0.0
    target = Q if feasible else available

    setpoints = np.zeros(n)
    level_price: dict[int, float] = {}
    binding: dict[str, str] = {}

    def split(lv_id: int, p: float, t: float) -> None:
        lv = levels[lv_id]
        level_price[lv_id] = p
        members = [lv.agg_devices, *(g[c] for c in lv.children)]
        lefts = [m.at(p, side="left") for m in members]
        rights = [m.at(p) for m in members]
        jump = sum(r - l for l, r in zip(lefts, rights))
        share = min(max((t - sum(lefts)) / jump, 0.0), 1.0) if jump > 0 else 0.0
        targets = [l + share * (r - l) for l, r in zip(lefts, rights)]
        if lv.book.n:
            setpoints[lv.rows] = dispatch_at(lv.book, p, targets[0])
        for c, tc in zip(lv.children, targets[1:]):
            fl, fr = f[c].at(p, side="left"), f[c].at(p)
            tol = 1e-9 * max(1.0, abs(tc), f[c].magnitude)
            if fl - tol <= tc <= fr + tol:
                split(c, p, tc)  # the limit does not bind: the node sees the level's price
                continue
            lo, hi = tree.nodes[c].reduction_bounds()
            binding[tree.nodes[c].id] = "max_reverse_kw" if fr > tc else "max_forward_kw"
            pc, _ = _lowest_price(f[c], tc, cap, _EPS_REL * max(1.0, f[c].magnitude))
            split(c, pc, tc)

    split(-1, price, target)
    node_level = {i: level_price[int(owner[i])] for i in range(len(tree))}
    prices = np.array([level_price[int(o)] for o in dev_owner]) + shift if n else np.zeros(0)
    return _result(price, float(setpoints.sum()), feasible, available, setpoints, Q, prices, tree,
                   nodes, node_level, binding, tuple(violated))


def _result(price: float, quantity: float, feasible: bool, available: float, setpoints: np.ndarray, Q: float,
            device_prices: np.ndarray, tree: GridTree, nodes: np.ndarray, node_level: dict[int, float],
            binding: dict[str, str], violated: tuple[str, ...]) -> GridClearing:
    reductions: dict[str, float] = {}
    if len(tree):
        direct = np.bincount(nodes[nodes >= 0], weights=setpoints[nodes >= 0], minlength=len(tree))
        total = direct.copy()
        for i in np.argsort(-tree.depth, kind="stable"):  # children before parents
            p = int(tree.parent[i])
            if p >= 0:
                total[p] += total[i]
        reductions = {nd.id: float(total[i]) for i, nd in enumerate(tree.nodes)}
    node_prices = {nd.id: float(node_level[i] + tree.adders[i]) for i, nd in enumerate(tree.nodes)}
    return GridClearing(price=float(price), quantity=float(quantity), feasible=bool(feasible),
                        available_at_cap=float(available), setpoints=setpoints, requested=Q,
                        device_prices=device_prices, node_prices=node_prices, node_reductions=reductions,
                        binding=binding, violated=violated)
