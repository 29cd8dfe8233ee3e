"""A layer's other selectivity measures (d′, CSI, Baek's criterion) and tuning shapes per unit, and how the measures
agree with the study's SI (unitscope.selectivity).

Publication stores them for every category and stat (unit_measures, through measures_of); the layer page
and the Python API read them through unit_measures(), which computes them for a DB without them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from unitscope import claim_rules, schema, selectivity, stats
from unitscope.data.images import category_wnids, image_index
from unitscope.data.runs import Run, require_category, require_layer, table_names
from unitscope.data.scores import category_labels, layer_matrix, whole_layer
from unitscope.data.source import Source, stored_or_computed

TUNING = ("sparseness", "kurtosis", "half_peak_share", "sparseness_pre", "kurtosis_pre", "half_peak_share_pre")


@dataclass(frozen=True)
class Measures:
    """Per unit, in unit order, on one stat; NaN where undefined."""

    d_prime: np.ndarray
    csi: np.ndarray
    csi_wnid: list[str | None]  # the preferred class of the CSI; None when the CSI is undefined
    csi_in_category: np.ndarray  # bool: the preferred class is one of the category's
    beats_every_class: np.ndarray  # 1.0, 0.0, or NaN when the category or every other class is too small
    tuning: Mapping[str, np.ndarray]  # TUNING's statistics

    @classmethod
    def joined(cls, parts: Sequence[Measures]) -> Measures:
        """The measures of consecutive chunks of units, as one."""
        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])
        return cls(d_prime=cat("d_prime"), csi=cat("csi"), csi_wnid=[w for p in parts for w in p.csi_wnid],
                   csi_in_category=cat("csi_in_category"), beats_every_class=cat("beats_every_class"),
                   tuning={name: np.concatenate([p.tuning[name] for p in parts]) for name in TUNING})


def measures_of(values: np.ndarray, categories: Sequence[tuple[np.ndarray, Collection[str]]], classes: np.ndarray,
                wnids: Sequence[str], beats: np.ndarray | None = None) -> list[Measures]:
    """Every unit's measures for each category, from the layer's (images, units) responses on one stat, each
    category's (labels, WNIDs), and each image's class code into `wnids`. What does not depend on the category
    (the tuning shape, the CSI, each unit's sort for Baek's tests) is computed once for all; beats: Baek's criterion
    (selectivity.beats_every_class), when the caller has it (publication sorts once for it and the AUROC)."""
    label_sets = [labels for labels, _ in categories]
    index_csi, preferred = selectivity.csi(values, classes)
    tuning = selectivity.tuning_shape(values)
    if beats is None:
        beats = selectivity.beats_every_class(values, label_sets, classes)
    d_prime = selectivity.d_primes(values, label_sets)
    return [Measures(
        d_prime=d_prime[row],
        csi=index_csi,
        csi_wnid=[wnids[c] if c >= 0 else None for c in preferred.tolist()],
        csi_in_category=np.isin(preferred, [i for i, w in enumerate(wnids) if w in members]),
        beats_every_class=beats[row],
        tuning=tuning,
    ) for row, (labels, members) in enumerate(categories)]


def unit_measures(source: Source, run: Run, layer: str, category: str, stat: str) -> Measures:
    """Every unit's measures for the category on `stat`: stored by publication (unit_measures), else computed from
    the layer's responses; cached per (run, layer, category, stat)."""
    units = require_layer(run, layer)[0]
    require_category(run, category)
    schema.stat_column(stat)

    def stored() -> Measures | None:
        if schema.UNIT_MEASURES not in table_names(source):
            return None
        cols = source.arrays(
            f"""SELECT {", ".join(f"coalesce({c}, 'NaN'::DOUBLE) AS {c}" for c in ("d_prime", "csi", *TUNING))},
                       csi_wnid, coalesce(beats_every_class::DOUBLE, 'NaN'::DOUBLE) AS beats
                FROM {schema.UNIT_MEASURES}
                WHERE run_id = $run_id AND layer = $layer AND category = $category AND stat = $stat ORDER BY unit""",
            {"run_id": run.run_id, "layer": layer, "category": category, "stat": stat})
        if cols["d_prime"].size != units:
            return None
        wnid = [None if w is None else str(w) for w in cols["csi_wnid"].tolist()]
        members = category_wnids(source, run.run_id, category)
        return Measures(d_prime=cols["d_prime"], csi=cols["csi"], csi_wnid=wnid,
                        csi_in_category=np.array([w in members for w in wnid], dtype=bool),
                        beats_every_class=cols["beats"], tuning={name: cols[name] for name in TUNING})

    def compute() -> Measures:
        image_ids, labels = category_labels(source, run, category)
        index = image_index(source, run.run_id)
        return measures_of(layer_matrix(source, run, layer, stat), [(labels, category_wnids(
            source, run.run_id, category))], index.code[image_ids], index.wnids)[0]

    return source.cached((run.run_id, layer, category, stat, "measures"),
                         lambda: stored_or_computed(stored, lambda: whole_layer(source, run, layer, compute))[0])


@dataclass(frozen=True)
class Agreement:
    """How many units each measure calls selective, and how well the continuous measures rank units alike."""

    names: tuple[str, ...]  # si, auroc, d_prime, csi, beats_every_class
    rules: tuple[str, ...]
    selective: tuple[int, ...]  # units each measure calls selective
    both_with_si: tuple[int, ...]  # of those, units SI calls selective too
    spearman: tuple[tuple[float | None, ...], ...]  # rho between measures over units where both are defined;
    # None for beats_every_class (a yes/no is not ranked) and where fewer than MIN_PAIRS units


def agreement(si: np.ndarray, auroc: np.ndarray, measures: Measures, threshold: float) -> Agreement:
    """The measures side by side on one layer: SI >= threshold against the field's cut-offs (unitscope.claim_rules)."""
    continuous = {"si": si, "auroc": auroc, "d_prime": measures.d_prime, "csi": measures.csi}
    with np.errstate(invalid="ignore"):
        calls = {
            "si": si >= threshold,
            "auroc": auroc >= claim_rules.AUROC_SELECTIVE,
            "d_prime": measures.d_prime >= claim_rules.D_PRIME_SELECTIVE,
            "csi": (measures.csi >= claim_rules.CSI_SELECTIVE) & measures.csi_in_category,
            "beats_every_class": measures.beats_every_class == 1.0,
        }
    rules = (f"SI ≥ {threshold:g}", f"AUROC ≥ {claim_rules.AUROC_SELECTIVE:.3f}",
             f"d′ ≥ {claim_rules.D_PRIME_SELECTIVE:g}",
             f"CSI ≥ {claim_rules.CSI_SELECTIVE:.3g} with a category class preferred",
             f"beats every other class (rank-sum p < {claim_rules.BAEK_ALPHA:g})")
    names = tuple(calls)

    def rho(a: str, b: str) -> float | None:
        if a not in continuous or b not in continuous:
            return None
        x, y = (np.where(np.isnan(continuous[n]), None, continuous[n]).tolist() for n in (a, b))
        return stats.spearman(x, y)

    return Agreement(
        names=names, rules=rules, selective=tuple(int(calls[n].sum()) for n in names),
        both_with_si=tuple(int((calls[n] & calls["si"]).sum()) for n in names),
        spearman=tuple(tuple(rho(a, b) for b in names) for a in names),
    )
