"""Labels for every unit: the ImageNet classes and WordNet synsets that most excite and most inhibit it.

For each unit and each candidate (a class present in the run, or a synset of the is-a hierarchy that
covers at least two of the run's classes), the AUROC of the candidate's images against all the other
images of the run:
- excites: on the positive stat (max by default), P(a candidate image's response > another image's);
- inhibits: on the negative stat (min), P(a candidate image's response < another image's).
Its p is the one-sided Mann–Whitney test (the normal approximation of U with a continuity correction and
no tie correction, as unitscope.selectivity), and q the Benjamini–Hochberg q-value across every candidate
of that unit and side. A unit's terms are its candidates with q < LABEL_Q, at most LABEL_TERMS a side, ranked by
the lower end of the AUROC's 95% interval (Hanley & McNeil 1982's standard error): a class of 4 images needs
a larger AUROC to come first than one of 150, whose AUROC is known better. The one-line label names the
first of each side with its AUROC, e.g. `+ golden retriever (0.93) · − wolf (0.81)`, or says that nothing
passes.

Cost: each unit's responses are ranked once per side (unitscope.stats.column_runs, in chunks of units); a
class's rank sum is a segment sum over the images sorted by class, a synset's the sum of its classes'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import special

from unitscope.stats import SortedRuns, bh_qvalues, column_runs

LABEL_Q = 0.05  # a term must pass this BH q-value
LABEL_TERMS = 3  # terms kept per unit and side
SIDES = ("excites", "inhibits")
NOTHING = "prefers no class or synset (q ≥ 0.05 for all)"


class Term(NamedTuple):
    """One class or synset that excites or inhibits a unit."""

    wnid: str
    name: str
    kind: str  # 'class' | 'synset'
    images: int
    auroc: float
    q: float


@dataclass(frozen=True)
class Candidates:
    """What a run's images can be labelled with: its classes and the synsets above two or more of them."""

    wnids: tuple[str, ...]  # classes first, in code order, then synsets
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    members: np.ndarray  # (candidates, classes) 0/1: the classes each candidate covers

    @classmethod
    def build(cls, class_wnids: Sequence[str], names: Mapping[str, str],
              parents: Mapping[str, Sequence[str]]) -> Candidates:
        """class_wnids: the run's classes in code order; names: WNID -> name; parents: WNID -> its hypernyms."""
        covered: dict[str, set[int]] = {}
        for code, wnid in enumerate(class_wnids):
            todo, seen = list(parents.get(wnid, ())), set()
            while todo:
                synset = todo.pop()
                if synset not in seen:
                    seen.add(synset)
                    covered.setdefault(synset, set()).add(code)
                    todo.extend(parents.get(synset, ()))
        synsets = sorted(s for s, codes in covered.items() if len(codes) >= 2 and s not in class_wnids)
        members = np.zeros((len(class_wnids) + len(synsets), len(class_wnids)), dtype=np.float64)
        members[np.arange(len(class_wnids)), np.arange(len(class_wnids))] = 1.0
        for row, synset in enumerate(synsets, start=len(class_wnids)):
            members[row, sorted(covered[synset])] = 1.0
        wnids = (*class_wnids, *synsets)
        return cls(wnids=wnids, names=tuple(names.get(w, w) for w in wnids),
                   kinds=("class",) * len(class_wnids) + ("synset",) * len(synsets), members=members)


def _auroc_and_p(values: np.ndarray, codes: np.ndarray, candidates: Candidates, lower: bool,
                 runs: SortedRuns | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(auroc, p, images) per candidate and unit (K, u), (K, u), (K,): a candidate's images above the rest
    (below, when lower). runs: stats.sorted_runs(values), when the caller has them."""
    n, u = values.shape
    n_classes = candidates.members.shape[1]
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    present = np.flatnonzero(counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)[present]
    n_c = candidates.members @ counts  # images of each candidate
    auroc = np.full((len(n_c), u), np.nan)
    p = np.full((len(n_c), u), np.nan)
    live = (n_c > 0) & (n_c < n)
    k1, k2 = n_c[live, None], (n - n_c)[live, None]
    for columns, _, part_runs in column_runs(values, runs):
        ranks = part_runs.ranks()
        if lower:  # the ranks of -values, exactly: average ranks are half-integers
            ranks = n + 1 - ranks
        class_sums = np.zeros((n_classes, ranks.shape[1]))
        class_sums[present] = np.add.reduceat(ranks[order], starts, axis=0)
        u_stat = (candidates.members[live] @ class_sums) - k1 * (k1 + 1) / 2  # pairs the candidate wins
        auroc[live, columns] = u_stat / (k1 * k2)
        mean, sd = k1 * k2 / 2, np.sqrt(k1 * k2 * (n + 1) / 12)
        p[live, columns] = special.ndtr(-(u_stat - mean - 0.5) / sd)
    return auroc, p, n_c


def side_terms(values: npt.ArrayLike, codes: npt.ArrayLike, candidates: Candidates, side: str,
               runs: SortedRuns | None = None) -> list[list[Term]]:
    """Per unit (in column order), the terms of one side that pass LABEL_Q, by AUROC's lower bound (then q), at most
    LABEL_TERMS.

    values: (n images, u units) responses on the side's stat; codes: (n,) each image's class code (a row of
    candidates.members' columns); runs: stats.sorted_runs(values), when the caller has them (publication sorts a
    block once for this and the layer controls).
    """
    codes = np.asarray(codes, dtype=np.int64)
    auroc, p, images = _auroc_and_p(np.asarray(values), codes, candidates, side == "inhibits", runs)
    qs = bh_qvalues(p)  # each unit's candidates a family
    units: list[list[Term]] = []
    for unit in range(auroc.shape[1]):
        q = qs[:, unit]
        passing = np.flatnonzero(q < LABEL_Q)  # NaN (untested) never passes
        low = auroc_lower_bound(auroc[passing, unit], images[passing], len(codes) - images[passing])
        best = [passing[i] for i in sorted(range(len(passing)), key=lambda i: (-low[i], q[passing[i]],
                                                                             candidates.wnids[passing[i]]))]
        units.append([Term(candidates.wnids[k], candidates.names[k], candidates.kinds[k], int(images[k]),
                           float(auroc[k, unit]), float(q[k])) for k in best[:LABEL_TERMS]])
    return units


def label_terms(positive: npt.ArrayLike, negative: npt.ArrayLike, codes: npt.ArrayLike,
                candidates: Candidates) -> dict[str, list[list[Term]]]:
    """side_terms of both sides: excites on the positive stat's (n, u) responses, inhibits on the negative's."""
    return {side: side_terms(values, codes, candidates, side) for side, values in zip(SIDES, (positive, negative))}


def auroc_lower_bound(auroc: np.ndarray, n1: np.ndarray, n2: np.ndarray, z: float = 1.96) -> np.ndarray:
    """AUROC - z * its standard error by Hanley & McNeil (1982), for n1 positives against n2 others."""
    a = np.asarray(auroc, dtype=np.float64)
    q1, q2 = a / (2 - a), 2 * a**2 / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a**2) + (n2 - 1) * (q2 - a**2)) / (n1 * n2)
    return a - z * np.sqrt(np.maximum(var, 0.0))


def label_text(excites: Sequence[Term], inhibits: Sequence[Term]) -> str:
    """The one-line label: the first term of each side with its AUROC, or NOTHING."""
    parts = [f"{sign} {terms[0].name} ({terms[0].auroc:.2f})"
             for sign, terms in (("+", excites), ("−", inhibits)) if terms]
    return " · ".join(parts) if parts else NOTHING
