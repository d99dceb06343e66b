"""programs.grid: locational adders and node limits, against a reference that evaluates the
definition directly (no explicit aggregation) and bisects the price."""

from __future__ import annotations

import math

import numpy as np
import pytest

from programs.clearing import BidCurve, CurveBook, clear
from programs.grid import GridNode, GridTree, clear_with_grid
from tests.sweeps import seeds


# --- reference (tests only) ----------------------------------------------------------------------
def _g(tree, curves, nodes, k, p, cap):
    """clip(f_k(p)) straight from the definition (module docstring of programs.grid)."""
    f = _f(tree, curves, nodes, k, p, cap)
    if not tree.nodes[k].limited:
        return f
    lo, hi = tree.nodes[k].reduction_bounds()
    most = _f(tree, curves, nodes, k, cap, cap)
    least = _f(tree, curves, nodes, k, -1e9, cap)
    return min(max(f, min(lo, most)), max(hi, least))


def _f(tree, curves, nodes, k, p, cap):
    total = sum(BidCurve(c)(p + tree.adders[nodes[i]]) for i, c in enumerate(curves) if nodes[i] == k)
    return total + sum(_g(tree, curves, nodes, c, p, cap) for c in range(len(tree)) if tree.parent[c] == k)


def F_reference(tree, curves, nodes, p, cap):
    own = sum(BidCurve(c)(p) for i, c in enumerate(curves) if nodes[i] < 0)
    return own + sum(_g(tree, curves, nodes, k, p, cap) for k in range(len(tree)) if tree.parent[k] < 0)


def price_reference(tree, curves, nodes, Q, cap):
    """The lowest price with F >= Q, searched from the lowest first point on the system axis."""
    lowest = min(c[0][0] - (tree.adders[nodes[i]] if nodes[i] >= 0 else 0.0) for i, c in enumerate(curves))
    lo, hi = min(lowest, cap), cap
    if F_reference(tree, curves, nodes, cap, cap) < Q - 1e-9:
        return cap
    if F_reference(tree, curves, nodes, lo, cap) >= Q - 1e-9:
        return lo
    for _ in range(200):
        mid = (lo + hi) / 2
        if F_reference(tree, curves, nodes, mid, cap) >= Q - 1e-9:
            hi = mid
        else:
            lo = mid
    return hi


# --- the seed's node ------------------------------------------------------------------------------
def test_seed_adder_is_base_plus_load_percent_times_adder():
    """Seed §3.4/3.5: basePrice 0.10 + 75 × 0.001 = currentPrice 0.175 (multiplier 1.0)."""
    node = GridNode("transformer-zone-5", load_percent=75, adder_per_percent=0.001, congestion_multiplier=1.0,
                    max_forward_kw=200, max_reverse_kw=50, current_load_kw=150)
    assert 0.10 + node.adder == pytest.approx(0.175, abs=1e-15)
    assert node.reduction_bounds() == (-50.0, 200.0)  # 150 - 200 … 150 + 50
    assert GridNode("x", load_percent=75, adder_per_percent=0.001, congestion_multiplier=2.0).adder == pytest.approx(0.15)


def test_tree_paths_adders_and_validation():
    t = GridTree([GridNode("sub", load_percent=10, adder_per_percent=0.001), GridNode("feeder", "sub"),
                  GridNode("tx", "feeder", load_percent=50, adder_per_percent=0.002)])
    assert t.path("tx") == ["tx", "feeder", "sub"]
    assert t.path_adder("tx") == pytest.approx(0.11) and t.path_adder("sub") == pytest.approx(0.01)
    with pytest.raises(ValueError, match="cycle"):
        GridTree([GridNode("a", "b"), GridNode("b", "a")])
    with pytest.raises(ValueError, match="parent 'z' is not a grid node"):
        GridTree([GridNode("a", "z")])
    with pytest.raises(ValueError, match="listed twice"):
        GridTree([GridNode("a"), GridNode("a")])
    with pytest.raises(ValueError, match="needs current_load_kw"):
        GridNode("a", max_forward_kw=10)
    with pytest.raises(ValueError, match="max_reverse_kw must be 0 or more"):
        GridNode("a", max_reverse_kw=-1, current_load_kw=0)
    with pytest.raises(ValueError, match="load_percent must be a finite number"):
        GridNode("a", load_percent=float("nan"))


def test_adders_shift_the_curves_and_device_prices():
    """A device behind a node with adder 0.1 offers at p what it would at p + 0.1."""
    t = GridTree([GridNode("n", load_percent=100, adder_per_percent=0.001)])
    book = CurveBook.from_curves([[(0, 0), (1, 10)], [(0, 0), (1, 10)]])
    c = clear_with_grid(book, np.array([0, -1]), t, 6, 2.0)  # 10(p+.1) + 10p = 6 → p = .25
    assert c.price == pytest.approx(0.25) and c.feasible
    np.testing.assert_allclose(c.setpoints, [3.5, 2.5])
    np.testing.assert_allclose(c.device_prices, [0.35, 0.25])
    assert c.node_prices == {"n": pytest.approx(0.35)} and c.node_reductions == {"n": pytest.approx(3.5)}


def test_a_binding_reverse_limit_gets_a_node_price_that_delivers_the_bound_exactly():
    # node: load 5 kW, may take at most 5 + 3 = 8 kW of reduction
    t = GridTree([GridNode("tx", max_reverse_kw=3, current_load_kw=5)])
    book = CurveBook.from_curves([[(0, 0), (1, 10)]] * 3)
    c = clear_with_grid(book, np.array([0, 0, -1]), t, 12, 5.0)
    # behind tx: 2 × 10p clipped at 8; outside: 10p; 8 + 10p = 12 → p = .4 (tx unclipped would give 8 at .4: tie)
    assert c.price == pytest.approx(0.4) and c.quantity == pytest.approx(12)
    c = clear_with_grid(book, np.array([0, 0, -1]), t, 15, 5.0)  # 8 + 10p = 15 → p = .7
    assert c.price == pytest.approx(0.7)
    assert c.setpoints[:2].sum() == pytest.approx(8, abs=1e-12)  # the bound, exactly
    np.testing.assert_allclose(c.device_prices, [0.4, 0.4, 0.7])  # node price: 20 p = 8
    assert c.binding == {"tx": "max_reverse_kw"} and c.violated == ()


def test_a_forward_limit_forces_relief_and_an_unreachable_one_is_reported():
    t = GridTree([GridNode("tx", max_forward_kw=100, current_load_kw=104)])  # needs >= 4 kW
    book = CurveBook.from_curves([[(0, 0), (1, 10)], [(0, 0), (1, 10)]])
    c = clear_with_grid(book, np.array([0, -1]), t, 5, 1.0)  # 4 from tx, 10 p = 1 → p = .1
    assert c.price == pytest.approx(0.1)
    np.testing.assert_allclose(c.setpoints, [4, 1])
    np.testing.assert_allclose(c.device_prices, [0.4, 0.1])
    assert c.binding == {"tx": "max_forward_kw"}
    t = GridTree([GridNode("tx", max_forward_kw=100, current_load_kw=150)])  # needs 50, can give 10
    c = clear_with_grid(book, np.array([0, -1]), t, 5, 1.0)
    assert c.violated == ("tx",)
    assert c.setpoints[0] == pytest.approx(10)  # as near the bound as it can


def test_nested_limits_hold_at_every_level():
    t = GridTree([GridNode("sub", max_reverse_kw=10, current_load_kw=5),  # <= 15
                  GridNode("tx1", "sub", max_reverse_kw=2, current_load_kw=4),  # <= 6
                  GridNode("tx2", "sub", load_percent=50, adder_per_percent=0.002)])
    curves = [[(0, 0), (1, 10)]] * 5
    nodes = np.array([1, 1, 2, 2, -1])
    c = clear_with_grid(CurveBook.from_curves(curves), nodes, t, 30, 1.0)
    assert c.node_reductions["tx1"] <= 6 + 1e-9 and c.node_reductions["sub"] <= 15 + 1e-9
    assert c.quantity == pytest.approx(c.setpoints.sum())
    assert c.price == pytest.approx(price_reference(t, curves, nodes, 30, 1.0), abs=1e-9)


# --- random trees against the reference -------------------------------------------------------------
def _random_case(rng):
    nn = int(rng.integers(1, 6))
    tree_nodes = []
    for k in range(nn):
        parent = f"n{int(rng.integers(0, k))}" if k and rng.random() < 0.6 else None
        limited = rng.random() < 0.6
        load = float(rng.uniform(-5, 20))
        tree_nodes.append(GridNode(
            f"n{k}", parent, load_percent=float(rng.uniform(0, 100)), adder_per_percent=float(rng.choice([0, 0.001, 0.003])),
            max_forward_kw=float(rng.uniform(0, 20)) if limited and rng.random() < 0.5 else None,
            max_reverse_kw=float(rng.uniform(0, 10)) if limited else None,
            current_load_kw=load if limited else None))
    tree = GridTree(tree_nodes)
    n = int(rng.integers(1, 25))
    curves = []
    for _ in range(n):
        if rng.random() < 0.25:
            u = float(rng.uniform(0, 1))
            curves.append([(u, 0.0), (u, float(rng.uniform(0.5, 5)))])
        else:
            k = int(rng.integers(2, 6))
            ps = np.sort(rng.uniform(0, 1, k))
            qs = np.cumsum(rng.uniform(0, 3, k)) - rng.uniform(0, 1)
            curves.append([(float(p), float(q)) for p, q in zip(ps, qs)])
    nodes = rng.integers(-1, nn, size=n)
    return tree, curves, nodes


@pytest.mark.parametrize("seed", seeds(40, quick=10))
def test_random_trees_match_the_reference_and_hold_their_limits(seed):
    rng = np.random.default_rng(seed)
    tree, curves, nodes = _random_case(rng)
    book = CurveBook.from_curves(curves)
    top = F_reference(tree, curves, nodes, 1.0, 1.0)
    for Q in (float(rng.uniform(-2, top + 1)), top * 0.5, top + 5):
        c = clear_with_grid(book, nodes, tree, Q, 1.0)
        ref_p = price_reference(tree, curves, nodes, Q, 1.0)
        assert c.price == pytest.approx(ref_p, abs=1e-7), (Q, seed)
        assert c.feasible == (F_reference(tree, curves, nodes, 1.0, 1.0) >= Q - 1e-9)
        if c.feasible and F_reference(tree, curves, nodes, -10.0, 1.0) < Q:
            assert c.quantity == pytest.approx(Q, abs=1e-8)
        assert c.setpoints.sum() == pytest.approx(c.quantity, abs=1e-8)
        for k, nd in enumerate(tree.nodes):
            if nd.limited and nd.id not in c.violated:
                lo, hi = nd.reduction_bounds()
                assert lo - 1e-8 <= c.node_reductions[nd.id] <= hi + 1e-8, (nd, c.node_reductions)
        # every device is on its own curve at the price it saw (pro rata only inside a step)
        for i, cv in enumerate(curves):
            b = BidCurve(cv)
            lo_v = b(c.device_prices[i] - 1e-12)
            hi_v = b(c.device_prices[i])
            assert lo_v - 1e-7 <= c.setpoints[i] <= hi_v + 1e-7, (i, cv, c.device_prices[i], c.setpoints[i])


def test_without_nodes_it_is_plain_clearing():
    rng = np.random.default_rng(1)
    P = np.cumsum(rng.uniform(0.01, 0.1, (200, 5)), axis=1)
    Qa = np.cumsum(rng.uniform(0, 2, (200, 5)), axis=1)
    book = CurveBook.from_arrays(P, Qa)
    a = clear(book, 300, 1.0)
    b = clear_with_grid(book, np.full(200, -1), GridTree([]), 300, 1.0)
    assert a.price == b.price and np.array_equal(a.setpoints, b.setpoints)
    assert math.isclose(b.quantity, 300)
