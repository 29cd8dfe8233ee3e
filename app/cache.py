"""A bounded, thread-safe LRU cache that computes each missing key once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LruCache(Generic[V]):
    """Least-recently-used map of at most `size` entries.

    Concurrent requests for the same missing key wait for one computation instead of
    running the same multi-second query side by side.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> V | None:
        """The cached value, marked as recently used, or None."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            return None

    def put(self, key: Hashable, value: V) -> None:
        """Store a value, evicting the least recently used beyond `size`."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value, or compute it (once across threads), cache it and return it."""
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            key_lock = self._pending.setdefault(key, threading.Lock())
        try:
            with key_lock:
                value = self.get(key)
                if value is None:
                    value = compute()
                    self.put(key, value)
        finally:
            with self._lock:
                self._pending.pop(key, None)
        return value
