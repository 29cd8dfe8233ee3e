"""`/categories`: every category of a run, layer by layer, to see whether the inhibition is a dog effect."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app import queries
from app.contexts import base_rate, resolve_k
from app.db import Reader
from app.params import CategoriesParams
from app.shares import LayerShares, layer_shares


class CategoryShares(BaseModel):
    """One category of the run and its layers' shares."""

    category: str
    n_category: int = Field(description="the run's images in the category")
    base_rate: float = Field(description="min(k, images) x the category's share")
    layers: list[LayerShares]


class CategoriesContext(BaseModel):
    """`/categories`: the run, the score parameters (category aside), and each of its categories."""

    run_id: int
    n_images: int
    k: int
    pos_stat: str
    neg_stat: str
    si_stat: str
    threshold: float
    categories: list[CategoryShares]


def categories(reader: Reader, p: CategoriesParams) -> CategoriesContext:
    """Each category of the run, scored with the same k, stats and threshold (p.category is not read)."""
    run = queries.require_run(reader, p.run)
    k = resolve_k(p, run.images)[0]
    shown = []
    for name, n_category in run.categories.items():
        shown.append(CategoryShares(
            category=name, n_category=n_category, base_rate=base_rate(k, run.images, n_category),
            layers=layer_shares(reader, run, p.model_copy(update={"category": name})),
        ))
    return CategoriesContext(
        run_id=run.run_id, n_images=run.images, k=k, pos_stat=p.pos_stat, neg_stat=p.neg_stat, si_stat=p.si_stat,
        threshold=p.threshold, categories=shown,
    )
