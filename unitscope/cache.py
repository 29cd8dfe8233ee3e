"""A thread-safe LRU cache, bounded or not, that computes each missing key once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
_MISSING = object()  # a key not cached (None is a value like any other)


class LruCache(Generic[V]):
    """Least-recently-used map of at most `size` entries (None: no bound).

    Concurrent requests for the same missing key wait for one computation instead of
    running the same multi-second query side by side.
    """

    def __init__(self, size: int | None) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self._data)

    def _lookup(self, key: Hashable) -> V | object:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            return _MISSING

    def get(self, key: Hashable) -> V | None:
        """The cached value, marked as recently used, or None."""
        value = self._lookup(key)
        return None if value is _MISSING else value  # type: ignore[return-value]

    def put(self, key: Hashable, value: V) -> None:
        """Store a value, evicting the least recently used beyond `size`."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while self.size is not None and len(self._data) > self.size:
                self._data.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value, or compute it (once across threads), cache it and return it."""
        value = self._lookup(key)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        with self._lock:
            key_lock = self._pending.setdefault(key, threading.Lock())
        try:
            with key_lock:
                value = self._lookup(key)
                if value is _MISSING:
                    value = compute()
                    self.put(key, value)
        finally:
            with self._lock:
                self._pending.pop(key, None)
        return value  # type: ignore[return-value]
