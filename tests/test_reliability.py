"""Split-half SI reliability (even against odd image ids) and the correlations behind it, on the hand-made DB."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures import LAYERS, Page, in_category
from scipy import stats

from unitscope import stats as correlation

_STAT = {"mean": 0, "max": 1, "min": 2}


def half_si(layer: str, unit: int, stat: str, parity: int) -> float | None:
    """SI over the images whose id has this parity, min-max normalised over those images alone."""
    a = np.array(LAYERS[layer][unit], dtype=np.float32)[:, _STAT[stat]].astype(np.float64)
    keep = np.arange(len(a)) % 2 == parity
    a, cat = a[keep], in_category("dog")[keep]
    if a.max() == a.min():
        return None
    norm = (a - a.min()) / (a.max() - a.min())
    c, rest = norm[cat].mean(), norm[~cat].mean()
    return float(c / (c + rest))


def test_spearman_and_pearson_by_hand():
    # No ties: rho = 1 - 6 sum(d^2) / (n (n^2 - 1)); ranks of y are 1 3 2 4 5, so sum(d^2) = 2.
    assert correlation.spearman([1, 2, 3, 4, 5], [10, 30, 20, 40, 50]) == pytest.approx(1 - 6 * 2 / (5 * 24))
    # Ties share their mean rank: x ranks 1, 2.5, 2.5, 4 and y 1..4, so rho is the Pearson r of those ranks.
    assert correlation.spearman([3.0, 7.0, 7.0, 9.0], [1, 2, 3, 4]) == pytest.approx(
        float(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]))
    x, y = [0.1, 0.5, 0.2, 0.9, 0.4, 0.4], [0.2, 0.6, 0.6, 0.8, 0.1, 0.3]
    assert correlation.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert correlation.pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic)
    # A missing side drops the pair; under three pairs, or a constant side, there is no correlation.
    assert correlation.spearman([1, None, 2, 3], [1, 5, 2, 4]) == pytest.approx(1.0)
    assert correlation.spearman([1, 2], [2, 1]) is None
    assert correlation.pearson([1, 2, 3], [4, 4, 4]) is None


@pytest.mark.parametrize("stat", ["mean", "max", "min"])
def test_split_half_si_per_unit_and_per_layer_match_brute_force(client, stat):
    body = client.get(f"/api/layers/mixed4c?si_stat={stat}").json()
    for u in body["units"]:
        # Unit 0 on max, by hand: even ids 0, 2, 4 have max 10, 6, 2 (dogs 0 and 2): A_N 1, .5, 0,
        # SI = .75 / (.75 + 0) = 1; odd ids 1, 3, 5 have 8, 0, 4 (dog 1): A_N 1, 0, .5, SI = 1 / 1.25 = .8.
        for key, parity in (("si_half_a", 0), ("si_half_b", 1)):
            expected = half_si("mixed4c", u["unit"], stat, parity)
            assert u[key] == (None if expected is None else pytest.approx(expected)), (u["unit"], key)
    if stat == "max":
        unit0 = body["units"][0]
        assert (unit0["si_half_a"], unit0["si_half_b"]) == (pytest.approx(1.0), pytest.approx(0.8))
    pairs = [(u["si_half_a"], u["si_half_b"]) for u in body["units"]
             if u["si_half_a"] is not None and u["si_half_b"] is not None]
    half = body["split_half"]
    assert (half["stat"], half["images_a"], half["images_b"], half["units"]) == (stat, 3, 3, len(pairs))
    if len(pairs) >= 3:
        a, b = zip(*pairs)
        assert half["spearman"] == pytest.approx(stats.spearmanr(a, b).statistic)
        assert half["pearson"] == pytest.approx(stats.pearsonr(a, b).statistic)
    else:  # max: unit 1 never varies, so two units only
        assert half["spearman"] is None and half["pearson"] is None


def test_the_unit_json_and_the_pages_show_the_halves(client):
    layer = client.get("/api/layers/mixed4c?si_stat=mean").json()
    for u in layer["units"]:
        unit = client.get(f"/api/layers/mixed4c/units/{u['unit']}?si_stat=mean").json()
        assert (unit["si_half_a"], unit["si_half_b"]) == (u["si_half_a"], u["si_half_b"])
    summary = Page(client.get("/layers/mixed4c?si_stat=mean").text).by_id("split-half")
    half = layer["split_half"]
    assert f"Spearman {half['spearman']:.3f}, Pearson {half['pearson']:.3f}" in summary.text
    assert [x.text for x in summary.find_all("b")] == [f"{half['spearman']:.3f}", f"{half['pearson']:.3f}"]
    a, b = layer["units"][0]["si_half_a"], layer["units"][0]["si_half_b"]
    unit = Page(client.get("/layers/mixed4c/units/0?si_stat=mean").text)
    (chip,) = [c for c in unit.find_all("span", cls="chip") if c.text.startswith("SI halves")]
    assert chip.text == f"SI halves {a:.3f} / {b:.3f}"
    assert [x.text for x in chip.find_all("b")] == [f"{a:.3f}", f"{b:.3f}"]
