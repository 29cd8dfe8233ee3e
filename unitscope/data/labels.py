"""Units' labels as publication stored them (unit_labels, unit_label_terms; unitscope.labels), and the search over
them that `/api/units` and the Python API share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from unitscope import schema
from unitscope.data.runs import require_layer, require_run, runs, table_names
from unitscope.data.source import Source
from unitscope.errors import NotFound
from unitscope.labels import SIDES, Term

SortKey = Literal["auroc", "si", "d_prime", "q"]
SORTS: tuple[SortKey, ...] = ("auroc", "si", "d_prime", "q")


@dataclass(frozen=True)
class UnitLabel:
    """A unit's label and the terms behind it, by side."""

    label: str
    excites: tuple[Term, ...]
    inhibits: tuple[Term, ...]


def has_labels(source: Source) -> bool:
    """Whether the DB holds labels (schema 6 on)."""
    return schema.UNIT_LABELS in table_names(source)


UnitKey = tuple[int, str, int]  # run_id, layer, unit


def _terms(source: Source, where: str, params: dict[str, object]) -> dict[UnitKey, dict[str, list[Term]]]:
    out: dict[UnitKey, dict[str, list[Term]]] = {}
    for run_id, layer, unit, side, *term in source.rows(
            f"""SELECT run_id, layer, unit, side, wnid, name, kind, images, auroc, q FROM {schema.UNIT_LABEL_TERMS}
                WHERE {where} ORDER BY run_id, layer, unit, side, rank""", params):
        out.setdefault((run_id, layer, unit), {s: [] for s in SIDES})[side].append(Term(*term))
    return out


def _label(text: str, terms: dict[UnitKey, dict[str, list[Term]]], key: UnitKey) -> UnitLabel:
    found = terms.get(key, {})
    return UnitLabel(text, *(tuple(found.get(side, ())) for side in SIDES))


def layer_labels(source: Source, run_id: int, layer: str) -> dict[int, UnitLabel]:
    """Every labelled unit of a layer by unit; empty for a DB without labels."""
    if not has_labels(source):
        return {}
    q = {"run_id": run_id, "layer": layer}

    def read() -> dict[int, UnitLabel]:
        terms = _terms(source, "run_id = $run_id AND layer = $layer", q)
        rows = source.rows(f"SELECT unit, label FROM {schema.UNIT_LABELS} WHERE run_id = $run_id AND layer = $layer", q)
        return {unit: _label(label, terms, (run_id, layer, unit)) for unit, label in rows}

    return source.cached((run_id, layer, "labels"), read)


@dataclass(frozen=True)
class Hit:
    """A unit found by a search: its label and terms, the study's SI, and the AUROC and q of its best matching term."""

    run_id: int
    layer: str
    unit: int
    label: UnitLabel
    si: float | None  # SI for the default category (dog) on DEFAULT_SI_STAT, as the layer page shows it
    d_prime: float | None  # d' for that category and stat (unit_measures)
    auroc: float | None  # the best AUROC among its terms that match (every term when no text is given)
    q: float | None  # that term's q


def require_scope(source: Source, run_id: int | None, layer: str | None) -> None:
    """NotFound unless the run is a complete run and the layer is one of its layers (of any complete run without a
    run): a filter that names nothing is a mistake to report, not an empty search."""
    if run_id is not None:
        run = require_run(source, run_id)
        if layer is not None:
            require_layer(run, layer)
    elif layer is not None:
        known = list(dict.fromkeys(name for run in runs(source) for name in run.layers))
        if layer not in known:
            raise NotFound(f"unknown layer {layer!r}; the runs have {', '.join(known) or 'no layers'}")


def search(source: Source, text: str | None, *, run_id: int | None = None, layer: str | None = None,
           side: str | None = None, max_q: float = 0.05, sort: SortKey = "auroc", limit: int = 50,
           offset: int = 0) -> tuple[int, list[Hit]]:
    """(total, one page of hits): units with a term (a class or synset, by name or WNID, any case) or a label that
    contains `text`, among terms with q ≤ max_q; sorted by `sort` (largest first; q smallest first), then run,
    layer and unit. NotFound for a run or a layer that no complete run has, as every other view."""
    require_scope(source, run_id, layer)
    if not has_labels(source):
        return 0, []
    order = {"auroc": "auroc DESC NULLS LAST", "si": "si DESC NULLS LAST", "d_prime": "d_prime DESC NULLS LAST",
             "q": "q ASC NULLS LAST"}[sort]
    params: dict[str, object] = {
        "pattern": None if not text else "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%")
        .replace("_", "\\_") + "%",
        "run_id": run_id, "layer": layer, "side": side, "max_q": max_q, "limit": limit, "offset": offset,
        "category": schema.DEFAULT_CATEGORY, "stat": schema.DEFAULT_SI_STAT,
    }
    scored = f"""WITH scope AS (
                SELECT * FROM {schema.UNIT_LABEL_TERMS}
                WHERE ($run_id IS NULL OR run_id = $run_id) AND ($layer IS NULL OR layer = $layer)
                  AND ($side IS NULL OR side = $side) AND q <= $max_q
            ), matched AS (
                SELECT run_id, layer, unit, arg_max(auroc, auroc) AS auroc, arg_max(q, auroc) AS q FROM scope
                WHERE $pattern IS NULL OR lower(name) LIKE $pattern ESCAPE '\\' OR lower(wnid) LIKE $pattern ESCAPE '\\'
                GROUP BY ALL
                UNION ALL  -- units with no term, found by their label ('prefers no class'): a label made of terms
                           -- is found by its terms alone, so that side and max_q hold for it
                SELECT l.run_id, l.layer, l.unit, NULL, NULL FROM {schema.UNIT_LABELS} l
                WHERE $pattern IS NOT NULL AND $side IS NULL AND lower(l.label) LIKE $pattern ESCAPE '\\'
                  AND ($run_id IS NULL OR l.run_id = $run_id) AND ($layer IS NULL OR l.layer = $layer)
                  AND NOT EXISTS (SELECT 1 FROM {schema.UNIT_LABEL_TERMS} t
                                  WHERE t.run_id = l.run_id AND t.layer = l.layer AND t.unit = l.unit)
            ), scored AS (
                SELECT m.*, s.si, me.d_prime FROM matched m
                LEFT JOIN {schema.UNIT_SI} s ON s.run_id = m.run_id AND s.layer = m.layer AND s.unit = m.unit
                    AND s.category = $category AND s.stat = $stat
                LEFT JOIN {schema.UNIT_MEASURES} me ON me.run_id = m.run_id AND me.layer = m.layer
                    AND me.unit = m.unit AND me.category = $category AND me.stat = $stat
            )"""
    rows = source.rows(f"""{scored} SELECT run_id, layer, unit, auroc, q, si, d_prime, count(*) OVER () AS total
                           FROM scored ORDER BY {order}, run_id DESC, layer, unit LIMIT $limit OFFSET $offset""",
                       params)
    if not rows:
        # A page past the last hit still says how many there are (its links lead back to them).
        total = source.rows(f"{scored} SELECT count(*) FROM scored",
                            {k: v for k, v in params.items() if k not in ("limit", "offset")})[0][0] if offset else 0
        return int(total), []
    keys = [(r[0], r[1], r[2]) for r in rows]
    where = " OR ".join(f"(run_id = $r{i} AND layer = $l{i} AND unit = $u{i})" for i in range(len(keys)))
    key_params = {f"{c}{i}": v for i, key in enumerate(keys) for c, v in zip("rlu", key, strict=True)}
    terms = _terms(source, where, key_params)
    labels = dict(((r, ly, u), text) for r, ly, u, text in source.rows(
        f"SELECT run_id, layer, unit, label FROM {schema.UNIT_LABELS} WHERE {where}", key_params))
    hits = [Hit(run_id=r, layer=ly, unit=u, label=_label(labels[(r, ly, u)], terms, (r, ly, u)), si=si, d_prime=d,
                auroc=a, q=q) for r, ly, u, a, q, si, d, _ in rows]
    return int(rows[0][-1]), hits
