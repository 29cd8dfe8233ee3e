"""A unit's label as the pages and their JSON show it (unitscope.labels; stored by publication)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from unitscope.data.labels import UnitLabel
from unitscope.labels import Term


class LabelTerm(BaseModel):
    """A class or WordNet synset that excites or inhibits the unit."""

    name: str
    wnid: str
    kind: str = Field(description="'class' (an ImageNet class) or 'synset' (a WordNet node above two or more)")
    images: int = Field(description="the run's images of it")
    auroc: float = Field(description="excites: P(its image's response on max > another image's); inhibits: "
                         "P(its image's response on min < another image's)")
    q: float = Field(description="Benjamini-Hochberg q of the one-sided Mann-Whitney test, across the unit's "
                     "classes and synsets on that side")


class UnitLabelModel(BaseModel):
    """What most excites and inhibits the unit (terms with q < 0.05, by AUROC, at most 3 a side)."""

    label: str = Field(description="e.g. '+ golden retriever (0.93) · − wolf (0.81)', or that it prefers nothing")
    excites: list[LabelTerm]
    inhibits: list[LabelTerm]


def _term(term: Term) -> LabelTerm:
    return LabelTerm(name=term.name, wnid=term.wnid, kind=term.kind, images=term.images, auroc=term.auroc, q=term.q)


def label_model(found: UnitLabel | None) -> UnitLabelModel | None:
    """The page model of a stored label; None for a DB without labels."""
    if found is None:
        return None
    return UnitLabelModel(label=found.label, excites=[_term(t) for t in found.excites],
                          inhibits=[_term(t) for t in found.inhibits])
