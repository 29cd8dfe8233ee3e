"""unit_labels and unit_label_terms of one published layer: what most excites and inhibits each unit (unitscope.labels)."""

from __future__ import annotations

import duckdb

from unitscope import schema
from unitscope.data.images import image_index
from unitscope.data.runs import require_layer, require_run
from unitscope.data.scores import layer_chunks
from unitscope.data.source import ConnectionSource
from unitscope.labels import SIDES, Candidates, Term, label_terms, label_text
from worker.categories import hypernyms, synset_names
from worker.derived_layer import in_blocks


def write_unit_labels(con: duckdb.DuckDBPyConnection, run_id: int, layer: str) -> None:
    """Label every unit of one published layer of run_id on the default positive and negative stats."""
    source = ConnectionSource(con, database=None)
    run = require_run(source, run_id)
    units = require_layer(run, layer)[0]
    index = image_index(source, run_id)
    codes = index.code[index.code >= 0]  # each image's class, in image id order: layer_chunks' rows
    class_names = dict(zip(index.wnids, (n.split(",")[0].strip() for n in index.names), strict=True))
    candidates = Candidates.build(index.wnids, {**synset_names(), **class_names}, hypernyms())
    terms: dict[str, list[list[Term]]] = {side: [] for side in SIDES}
    # A chunk of units at a time on both stats (the same chunks), so that memory holds two chunks, not the layer.
    for (first, positive), (_, negative) in zip(layer_chunks(source, run, layer, schema.DEFAULT_POS_STAT),
                                                layer_chunks(source, run, layer, schema.DEFAULT_NEG_STAT), strict=True):
        for found in in_blocks(lambda _, pos, neg: label_terms(pos, neg, codes, candidates), first, positive, negative):
            for side in SIDES:
                terms[side].extend(found[side])
    labels = [label_text(terms["excites"][u], terms["inhibits"][u]) for u in range(units)]
    con.execute(f"INSERT INTO {schema.UNIT_LABELS} SELECT $run_id, $layer, unnest($unit), unnest($label)",
                {"run_id": run_id, "layer": layer, "unit": list(range(units)), "label": labels})
    rows = [(unit, side, rank, *term) for side, by_unit in terms.items() for unit, found in enumerate(by_unit)
            for rank, term in enumerate(found, start=1)]
    if rows:
        names = ("unit", "side", "rank", *Term._fields)
        columns = dict(zip(names, (list(c) for c in zip(*rows, strict=True)), strict=True))
        con.execute(f"INSERT INTO {schema.UNIT_LABEL_TERMS} SELECT $run_id, $layer, "
                    + ", ".join(f"unnest(${name})" for name in names), {"run_id": run_id, "layer": layer, **columns})

