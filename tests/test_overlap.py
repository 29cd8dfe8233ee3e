"""The same images on both sides: a unit page marks an image that is among both its strongest positives and its
strongest negatives, and warns when its bottom k is largely its top k (hand-made DB, tests/fixtures.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from fixtures import Page


def test_an_image_in_both_rows_is_marked_and_a_large_overlap_warned(client: TestClient) -> None:
    # Unit 1 of mixed4c: max 5 and min 0 for every image, ties to the smaller id, so with k = 2 its top 2 and
    # bottom 2 are both images {0, 1}: overlap 2 of 2, no image left in the bottom only. With n = 3 both rows
    # show images 0, 1, 2, each of them in both rows.
    url = "/layers/mixed4c/units/1?k=2&n=3"
    body = client.get("/api" + url).json()
    assert (body["overlap"], body["in_bottom_only"]) == (2, 0)
    assert [(e["image"], e["in_both"]) for e in body["positive"]] == [(0, True), (1, True), (2, True)]
    assert [(e["image"], e["in_both"]) for e in body["negative"]] == [(0, True), (1, True), (2, True)]
    assert not any(e["in_both"] for e in body["near_zero"])  # only the two rows are compared
    (warning,) = body["warnings"]
    assert warning.startswith("2 of this unit's bottom 2 images (100%) are also among its top 2")
    page = Page(client.get(url).text)
    (shown,) = page.find_all("p", cls="warning")
    assert shown.text == f"⚠ {warning}"
    both = page.find_all("figure", cls="in-both")
    assert len(both) == 6 and all(card.one("span", cls="both").text == "both rows" for card in both)


def test_a_unit_whose_two_rows_differ_has_no_mark_and_no_warning(client: TestClient) -> None:
    # Unit 0 of mixed4c: top by max {0, 1, 2} (10, 8, 6), bottom by min {3, 4, 5} (-9, -8, -7): nothing shared.
    url = "/layers/mixed4c/units/0?k=2&n=3"
    body = client.get("/api" + url).json()
    assert (body["overlap"], body["in_bottom_only"], body["warnings"]) == (0, 0, [])
    assert not any(e["in_both"] for kind in ("positive", "negative") for e in body[kind])
    assert Page(client.get(url).text).find_all("figure", cls="in-both") == []
