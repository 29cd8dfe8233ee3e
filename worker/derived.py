"""What publication derives from a layer's published responses beyond SI and ranks, for the stored parameters.

The server's pages would otherwise compute these on their first request (minutes at the study's
286,000 images); each writer stores them once, and the server reads them when a request's
parameters are the stored ones, computing only for others. A writer reads the same connection's
published tables (responses, images, categories, unit_si, unit_ranks) of one run and layer and
inserts into its tables in schema.DERIVED_TABLES.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from worker.derived_basis import write_basis_si
from worker.derived_labels import write_unit_labels
from worker.derived_layer import write_layer_controls
from worker.derived_unit import write_unit_pages

Writer = Callable[[duckdb.DuckDBPyConnection, int, str], None]

# The layer controls write the labels too, on the blocks they sort (worker.derived_labels).
WRITERS: tuple[Writer, ...] = (write_layer_controls, write_unit_pages, write_basis_si)
# The writers each schema version added, from the version whose derived tables are as today's on: an upgrade from
# there keeps the tables it has and runs only the later writers (worker.publish.rederive).
CURRENT_SINCE = 5
ADDED: dict[int, tuple[Writer, ...]] = {6: (write_unit_labels,)}


def writers_after(version: int) -> tuple[Writer, ...]:
    """The writers added after `version` (at least CURRENT_SINCE)."""
    return tuple(w for v, added in sorted(ADDED.items()) if v > version for w in added)


def write_layer(con: duckdb.DuckDBPyConnection, run_id: int, layer: str, writers: tuple[Writer, ...] = WRITERS,
                step: Callable[[str, bool], None] | None = None) -> None:
    """Run the writers (every one by default) for one published layer of run_id; `step(name, done)` is told as
    each starts and ends (publication's progress bar)."""
    for write in writers:
        if step:
            step(write.__name__.removeprefix("write_").replace("_", " "), False)
        write(con, run_id, layer)
        if step:
            step(write.__name__, True)
