"""What the claims page says about each claim: the claim, its test and control, its verdict and its robustness."""

from __future__ import annotations

from pydantic import BaseModel, Field

from unitscope.claim_rules import Verdict


class Cell(BaseModel):
    """A claim's verdict under one specification of the grid (k as asked)."""

    pos_stat: str
    neg_stat: str
    si_stat: str
    threshold: float
    verdict: Verdict
    url: str = Field(description="/claims with this specification")


class Robustness(BaseModel):
    """Whether a claim's verdict survives every reasonable specification (unitscope.claim_rules' grid)."""

    robust: bool = Field(description="every cell's verdict equals the verdict asked for")
    cells: list[Cell]


class Claim(BaseModel):
    """One claim of the study, its test on this DB, the control it is read against, and the verdict."""

    id: str
    claim: str
    test: str
    value: int | float | None = Field(description="the test's number on this DB (a count is an integer)")
    study_value: float | None = Field(None, description="the study's own number where the test departs from it "
                                      "(negative: the share counted with the images shared with the top k)")
    control: str = Field(description="what the value is compared with, and that comparison's numbers")
    verdict: Verdict
    reason: str = Field(description="why this verdict")
    evidence_url: str
    robustness: Robustness | None = Field(None, description="the verdict under each specification of the grid")
