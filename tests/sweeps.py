"""Seeds for the random sweeps (random fleets, trees and curves checked against a reference).

`seeds(n, quick)` is range(n) as pytest parameters: the first `quick` seeds run in every run
(`make test`), the rest are marked `slow` and run with `-m slow` (`make test-slow`, which CI runs).
Every seed keeps every assertion; only when it runs changes."""

from __future__ import annotations

import pytest


def seeds(n: int, quick: int) -> list[object]:
    return [s if s < quick else pytest.param(s, marks=pytest.mark.slow) for s in range(n)]
