"""A thread-safe LRU cache, bounded or not, that computes each missing key once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
_MISSING = object()  # a key not cached (None is a value like any other)
# A wait on another thread's computation longer than this is no longer a brief overlap (LruCache.on_wait).
WAIT_GRACE_S = 0.1


class LruCache(Generic[V]):
    """Least-recently-used map of at most `size` entries (None: no bound).

    Concurrent requests for the same missing key wait for one computation instead of
    running the same multi-second query side by side. `on_wait`, if given, is called when a
    thread has waited WAIT_GRACE_S for another's computation and is about to wait on; it may
    raise to refuse the wait (the server moves such a request off its request threads).
    """

    def __init__(self, size: int | None, on_wait: Callable[[], None] | None = None) -> None:
        self.size = size
        self.on_wait = on_wait
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}  # key -> held by the thread computing it

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
        while True:
            with self._lock:
                if key in self._data:
                    self._data.move_to_end(key)
                    return self._data[key]
                computing = self._pending.get(key)
                if computing is None:  # this thread computes it
                    computing = self._pending[key] = threading.Lock()
                    computing.acquire()
                    break
            # Another thread computes it: wait for it to end, then look again (it may have failed).
            if not computing.acquire(timeout=WAIT_GRACE_S if self.on_wait else -1):
                assert self.on_wait is not None
                self.on_wait()
                computing.acquire()
            computing.release()
        try:
            value = compute()
            self.put(key, value)
            return value
        finally:
            with self._lock:
                del self._pending[key]
            computing.release()
