"""unit_labels and unit_label_terms of one published layer: what most excites and inhibits each unit (unitscope.labels).

Publication finds them in the layer controls' pass (worker.derived_layer), on the blocks it has sorted for its own
rank statistics: a side's stat is sorted once for both. write_unit_labels does the same on a pass of its own, for a
DB published before labels (worker.derived.ADDED).
"""

from __future__ import annotations

import duckdb
import numpy as np

from unitscope import schema
from unitscope.data.images import image_index
from unitscope.data.runs import require_run
from unitscope.data.scores import layer_chunks
from unitscope.data.source import ConnectionSource, Source
from unitscope.labels import SIDES, Candidates, Term, label_text, side_terms
from unitscope.stats import SortedRuns
from worker.blocks import in_blocks
from worker.categories import hypernyms, synset_names

SIDE_STATS = {"excites": schema.DEFAULT_POS_STAT, "inhibits": schema.DEFAULT_NEG_STAT}


class LayerLabels:
    """A layer's label terms, found a block of units at a time on each side's stat (in unit order), then written."""

    def __init__(self, source: Source, run_id: int) -> None:
        index = image_index(source, run_id)
        self.codes = index.code[index.code >= 0]  # each image's class, in image id order: layer_chunks' rows
        class_names = dict(zip(index.wnids, (n.split(",")[0].strip() for n in index.names), strict=True))
        self.candidates = Candidates.build(index.wnids, {**synset_names(), **class_names}, hypernyms())
        self.terms: dict[str, list[list[Term]]] = {side: [] for side in SIDES}

    def find(self, stat: str, values: np.ndarray, runs: SortedRuns | None = None) -> dict[str, list[list[Term]]]:
        """The terms of each side on `stat` for a block of units (images, u); keeps nothing, so threads may call it."""
        return {side: side_terms(values, self.codes, self.candidates, side, runs)
                for side, side_stat in SIDE_STATS.items() if side_stat == stat}

    def add(self, found: dict[str, list[list[Term]]]) -> None:
        """A block's terms (find), after those of the units before it."""
        for side, units in found.items():
            self.terms[side].extend(units)

    def write(self, con: duckdb.DuckDBPyConnection, run_id: int, layer: str) -> None:
        """unit_labels and unit_label_terms of every unit added."""
        units = len(self.terms["excites"])
        labels = [label_text(self.terms["excites"][u], self.terms["inhibits"][u]) for u in range(units)]
        con.execute(f"INSERT INTO {schema.UNIT_LABELS} SELECT $run_id, $layer, unnest($unit), unnest($label)",
                    {"run_id": run_id, "layer": layer, "unit": list(range(units)), "label": labels})
        rows = [(unit, side, rank, *term) for side, by_unit in self.terms.items() for unit, found in enumerate(by_unit)
                for rank, term in enumerate(found, start=1)]
        if rows:
            names = ("unit", "side", "rank", *Term._fields)
            columns = dict(zip(names, (list(c) for c in zip(*rows, strict=True)), strict=True))
            con.execute(f"INSERT INTO {schema.UNIT_LABEL_TERMS} SELECT $run_id, $layer, "
                        + ", ".join(f"unnest(${name})" for name in names), {"run_id": run_id, "layer": layer, **columns})


def write_unit_labels(con: duckdb.DuckDBPyConnection, run_id: int, layer: str) -> None:
    """Label every unit of one published layer of run_id on a pass of its own (a derived.Writer)."""
    source = ConnectionSource(con, database=None)
    run = require_run(source, run_id)
    labels = LayerLabels(source, run_id)
    for stat in dict.fromkeys(SIDE_STATS.values()):
        for first, values in layer_chunks(source, run, layer, stat):
            for found in in_blocks(lambda _, block, stat=stat: labels.find(stat, block), first, values):
                labels.add(found)
    labels.write(con, run_id, layer)
