"""What the server reads before a visitor asks: every layer's pages at the default parameters.

A layer's first request reads its stored tables (the /layers counts, the controls, the unit tables): 2.3 s for
12 layers at 286,000 images (bench/first_touch.py), and under load every client queues behind them, so a
30-s load run's p99 was set by its first seconds (docs/performance.md). Read once before serving, and again
in the background whenever the worker publishes a new file, nobody waits on them.
"""

from __future__ import annotations

import logging
import threading
import time

from app.config import Settings
from app.data.db import Database
from app.heavy import HeavyNeeded
from app.pages import layer as layer_page
from app.pages import layers as layers_page
from app.pages import unit as unit_page
from app.params import ScoreParams, UnitParams
from app.urls import Urls
from unitscope.data.runs import find_run
from unitscope.errors import NotFound, Unavailable

log = logging.getLogger("app.warm")


def warm(db: Database, settings: Settings, stop: threading.Event) -> None:
    """Build /layers, each layer's page and its first unit's page for the newest run, into the server's cache.

    What publication did not store (an older DB) would be computed in the heavy pool on request; here it is
    left for that request, as is everything when no DB can be opened yet. It gives up between pages once `stop` is
    set (the server stops) or a newer file is served (whose own reading ahead has started).
    """
    if stop.is_set():
        return
    start = time.perf_counter()
    scores, unit = ScoreParams(), UnitParams()
    try:
        with db.reader() as reader:
            run = find_run(reader, None)
            if run is None:
                return
            steps = [lambda: layers_page.build(reader, scores)]
            for layer, (units, _, _) in run.layers.items():
                steps.append(lambda layer=layer: layer_page.build(
                    reader, layer, scores, permutations=settings.null_permutations, seed=settings.null_seed))
                if units:
                    steps.append(lambda layer=layer: unit_page.build(reader, layer, 0, unit, Urls()))
            left = 0
            for step in steps:
                if stop.is_set() or not db.serves(reader.generation):
                    return
                try:
                    step()
                except (HeavyNeeded, NotFound):  # computed, or answered 404, on request as before
                    left += 1
    except Unavailable as exc:  # no file yet, or a damaged one: /healthz says which
        log.warning("stopped reading ahead: %s", exc)
        return
    except Exception:  # reading ahead only fills a cache: a failure here is the failing page's, not the server's
        log.exception("stopped reading ahead")
        return
    log.info("read %d layers ahead in %.1f s%s", len(run.layers), time.perf_counter() - start,
             f"; {left} pages need computing on request" if left else "")
