"""Heavy work: what a request computes over every response of a layer because publication did not store it
(a threshold, k or stat of its own), run in its own small pool so that it never holds a request thread.

A page is built on a request thread. When it reaches such a computation (Source.heavy, from
unitscope.data.scores.whole_layer) it stops with HeavyNeeded, and answer() builds the page again
in the heavy pool, where that computation runs. The pool bounds what it takes on:
- workers at once, and a queue; past it a 503 with Retry-After;
- memory: each computation's estimate is reserved while it is admitted, and one that could never
  fit is refused (503, no Retry-After);
- time: past the limit (queue included) it is stopped and answered 503;
- clients: one that hangs up stops its computation (DuckDB's interrupt for a query; between
  chunks for the permutation null, checkpoint()).
A request thread that would wait on another's computation of the same result (unitscope.cache)
moves to the pool the same way, so waiters are bounded too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Generic, TypeVar

from anyio import to_thread

from unitscope.errors import Unavailable

if TYPE_CHECKING:  # the data layer imports this module, and nothing of HTTP (tests/test_app_errors.py)
    from starlette.requests import Request

T = TypeVar("T")
log = logging.getLogger("app.heavy")

# How often a waiting request looks for its client having left, or its time being up.
POLL_S = 0.1


class HeavyNeeded(Exception):
    """Raised on a request thread that reached heavy work: answer() moves the request to the pool."""

    def __init__(self, estimate: int) -> None:
        super().__init__(f"heavy work of about {estimate:,} bytes")
        self.estimate = estimate


class Busy(Unavailable):
    """The pool's queue (or its memory) is full now: answered 503 with Retry-After."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Stopped(Unavailable):
    """A computation stopped before its end: its time was up, or its client left."""


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


class _Job(Generic[T]):
    """One request's page, built on a heavy thread."""

    def __init__(self, work: Callable[[], T], interrupt: Callable[[], None] | None) -> None:
        self.work = work
        self.interrupt = interrupt
        self.reason: Stopped | None = None

    def stop(self, reason: Stopped) -> None:
        if self.reason is None:
            self.reason = reason
            if self.interrupt is not None:
                self.interrupt()  # a DuckDB query in flight ends with InterruptException

    def run(self) -> T:
        _local.job = self
        try:
            checkpoint()
            return self.work()
        except Exception as exc:
            if self.reason is not None and exc is not self.reason:
                raise self.reason from exc  # what the interrupt or a checkpoint broke off is the stop
            raise
        finally:
            _local.job = None


class _Thread(threading.local):
    job: _Job | None = None  # the job a heavy thread runs; None on every other thread


_local = _Thread()


def checkpoint() -> None:
    """On a heavy thread whose computation was stopped, raise why; anywhere else nothing."""
    if _local.job is not None and _local.job.reason is not None:
        raise _local.job.reason


def inline(work: Callable[[], T], estimate: int) -> T:
    """work() on a heavy thread (its request is admitted); on a request thread, HeavyNeeded."""
    if _local.job is None:
        raise HeavyNeeded(estimate)
    return work()


def before_waiting() -> None:
    """unitscope.cache's hook before a thread waits on another's computation: request threads move to the pool."""
    inline(lambda: None, 0)


class HeavyPool:
    """`workers` threads, a queue of `queue`, `memory` bytes and `timeout_s` seconds for heavy work."""

    def __init__(self, workers: int, queue: int, memory: int, timeout_s: float) -> None:
        self.workers = workers
        self.queue = queue
        self.memory = memory
        self.timeout_s = timeout_s
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="heavy")
        # Only the event loop's thread changes these: no lock.
        self.admitted = 0
        self.reserved = 0
        self._mean_s = 5.0  # seconds a computation takes, a running mean for Retry-After

    def _retry_after(self) -> int:
        return max(1, min(math.ceil(self._mean_s * (self.admitted + 1) / self.workers), math.ceil(self.timeout_s)))

    def _admit(self, estimate: int) -> None:
        if estimate > self.memory:
            raise Unavailable(f"this computation needs about {_size(estimate)} of memory; the server allows "
                              f"{_size(self.memory)} for computations (--heavy-memory): use stored parameters")
        if self.admitted >= self.workers + self.queue or self.reserved + estimate > self.memory:
            wait = self._retry_after()
            raise Busy(f"the server is busy with {self.admitted} other computation{'s' * (self.admitted != 1)} (at most "
                       f"{self.workers} at once, {self.queue} waiting); try again in {wait} s", retry_after=wait)

    async def run(self, work: Callable[[], T], *, estimate: int, request: Request,
                  interrupt: Callable[[], None] | None) -> T:
        """work() on a heavy thread, stopped when the client leaves or the time limit passes."""
        self._admit(estimate)
        self.admitted += 1
        self.reserved += estimate
        job = _Job(work, interrupt)
        t0 = time.monotonic()
        submitted = self._threads.submit(job.run)
        future = asyncio.wrap_future(submitted)
        try:
            # Wait for the thread to end, even after a stop: the request's cursor is closed only after this returns.
            while not future.done():
                await asyncio.wait({future}, timeout=POLL_S)
                if future.done() or job.reason is not None:
                    continue
                if time.monotonic() - t0 > self.timeout_s:
                    job.stop(Stopped(f"the computation took longer than {self.timeout_s:g} s (--heavy-timeout); "
                                     "use stored parameters or ask again later"))
                elif await request.is_disconnected():
                    job.stop(Stopped("the client left"))
                else:
                    continue
                submitted.cancel()  # still queued: it never starts; running: it stops at its next checkpoint
            if submitted.cancelled():
                assert job.reason is not None
                raise job.reason
            return future.result()
        finally:
            self.admitted -= 1
            self.reserved -= estimate
            elapsed = time.monotonic() - t0
            if job.reason is None:
                self._mean_s = 0.8 * self._mean_s + 0.2 * elapsed
            else:
                log.info("stopped %s after %.1f s: %s", request.url.path, elapsed, job.reason)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


async def answer(request: Request, respond: Callable[[], T],
                 interrupt: Callable[[], None] | None = None) -> T:
    """respond() on a request thread, or in the heavy pool when it reaches heavy work.

    interrupt: stops the request's DuckDB query in flight (its Reader's).
    """
    try:
        return await to_thread.run_sync(respond)  # the request threads (create_app sets their number)
    except HeavyNeeded as need:
        pool: HeavyPool = request.app.state.heavy
        return await pool.run(respond, estimate=need.estimate, request=request, interrupt=interrupt)
