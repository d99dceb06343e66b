"""A small bounded, time-bounded cache for answers several processes may change (roles, poll
rates, rendered documents).

Entries live at most `ttl` seconds and are dropped at once by `invalidate()`. A value computed
while an invalidation happened is returned but not kept: it may predate the change. When
`max_entries` are held, a new entry evicts the least recently used one (a hit counts as a use),
never the whole cache: a fleet larger than the bound keeps its most active devices' documents
instead of losing everyone's at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(self, ttl: float, max_entries: int = 200_000, clock: Callable[[], float] = time.monotonic):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self._epoch = 0
        self.evictions = 0  # entries dropped for room (not expiry, not invalidation)

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        return self.get_until(key, lambda: (load(), None))

    def get_until(self, key: Hashable, load: Callable[[], tuple[V, float | None]]) -> V:
        """Like get, for values that know how long they stay true: `load` returns (value,
        seconds it stays true or None); the entry lives the shorter of that and `ttl`."""
        now = self._clock()
        hit = self._data.get(key)
        if hit is not None and hit[0] > now:
            with self._lock:
                if key in self._data:  # an invalidation or eviction may have raced the read
                    self._data.move_to_end(key)
            return hit[1]
        epoch = self._epoch
        value, lifetime = load()
        ttl = self.ttl if lifetime is None else min(self.ttl, lifetime)
        with self._lock:
            if epoch != self._epoch:
                return value  # invalidated while loading: the value may be older than the change
            if ttl > 0:
                self._data[key] = (now + ttl, value)
                self._data.move_to_end(key)
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)
                    self.evictions += 1
            else:
                self._data.pop(key, None)  # an expired entry stays no longer than its next miss
        return value

    def invalidate(self) -> None:
        with self._lock:
            self._epoch += 1
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
