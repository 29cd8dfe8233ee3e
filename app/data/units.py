"""What the unit and classes pages read beyond the scores and rankings: a unit's histogram, its stored
maps, its class profile, and the run's skipped files."""

from __future__ import annotations

from collections.abc import Sequence

from unitscope import claim_rules, schema, unit_summary
from unitscope.claim_rules import ClassRow
from unitscope.data import unit_tables
from unitscope.data.images import category_wnids, image_index
from unitscope.data.runs import Run, table_names
from unitscope.data.scores import category_labels, unit_column
from unitscope.data.source import Source, stored_or_computed


def histograms(source: Source, run: Run, layer: str, unit: int, stats: Sequence[str],
               category: str) -> dict[str, unit_summary.Histogram | None]:
    """A unit's responses on each of `stats` in HIST_BINS equal bins over its range, category vs rest; None without
    any.

    The stored bins when publication wrote them (the layer's, read once: unitscope.data.unit_tables), else binned here
    from the unit's responses (unit_summary.bin_counts, publication's function), so the page carries counts, not one
    value per image.
    """
    def computed(stat: str) -> unit_summary.Histogram | None:
        if not run.images:
            return None
        is_cat = category_labels(source, run, category)[1]
        return unit_summary.bin_counts(unit_column(source, run, layer, stat, unit), [is_cat]).histogram(0, 0)

    return {stat: stored_or_computed(lambda stat=stat: unit_tables.histogram(source, run, layer, category, unit, stat),
                                     lambda stat=stat: computed(stat))[0] for stat in stats}


def unit_maps(source: Source, run: Run, layer: str, unit: int,
              image_ids: list[int]) -> dict[int, tuple[int, int, bytes]]:
    """A unit's stored maps for these images: image id -> (height, width, float16 bytes)."""
    rows = source.rows(
        f"""SELECT image_id, height, width, values_f16 FROM {schema.UNIT_MAPS}
            WHERE run_id = $run_id AND layer = $layer AND unit = $unit AND list_contains($ids, image_id)""",
        {"run_id": run.run_id, "layer": layer, "unit": unit, "ids": image_ids},
    )
    return {image_id: (height, width, bytes(blob)) for image_id, height, width, blob in rows}


Profile = tuple[list[ClassRow], dict[str, str]]  # rows mean descending, each WNID's class name


def class_profile(source: Source, run: Run, layer: str, unit: int, stat: str, category: str) -> Profile:
    """The unit's class profile, mean descending, and each WNID's class name.

    The stored profile when publication wrote it (category-free: the category's classes are marked
    here, from the run's cached category members), else computed from the unit's responses.
    Cached, so the class page and the unit pages that share its stat and category reuse it;
    callers must not change what it returns.
    """
    def read() -> Profile:
        index = image_index(source, run.run_id)
        stored = unit_tables.class_rows(source, run, layer, stat).unit(unit)
        rows, _ = stored_or_computed(
            lambda: [(index.wnids[code], index.names[code], n, mean, median) for code, n, mean, median in zip(
                *(stored[name].tolist() for name in ("code", "n", "mean", "median")))] or None,
            lambda: _computed_profile(source, run, layer, unit, stat),
        )
        members = category_wnids(source, run.run_id, category)
        # Mean descending, ties to the smaller WNID, so that the order never depends on the scan.
        rows = sorted(rows, key=lambda row: (-row[3], row[0]))
        return ([ClassRow(wnid, n, float(mean), float(median), wnid in members, n < claim_rules.FEW_IMAGES)
                 for wnid, _, n, mean, median in rows],
                {wnid: name for wnid, name, *_ in rows})

    return source.cached((run.run_id, "class_profile", layer, unit, stat, category), read)


def _computed_profile(source: Source, run: Run, layer: str, unit: int,
                      stat: str) -> list[tuple[str, str, int, float, float]]:
    """(wnid, class_name, n, mean, median) of every class, from the unit's responses (publication's function)."""
    if not run.images:
        return []
    index = image_index(source, run.run_id)
    profile = unit_summary.class_profiles(unit_column(source, run, layer, stat, unit), index.code[index.code >= 0],
                                          len(index.wnids))
    return [(index.wnids[code], index.names[code], n, mean, median) for code, n, mean, median in profile.rows(0)]


def skipped(source: Source, run: Run) -> list[tuple[int, str, str]]:
    """The run's skipped files: (file_id, path, reason)."""
    if schema.SKIPPED not in table_names(source):
        return []
    return source.rows(
        f"SELECT file_id, path, reason FROM {schema.SKIPPED} WHERE run_id = $run_id ORDER BY file_id",
        {"run_id": run.run_id},
    )
