"""Unit maps without the network: which maps a run keeps, the second pass resuming, the float16 codec,
the crop geometry against both models' transforms, and the unit page's `map` field and overlay.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from fixtures import LAYERS, Page, make_settings
from hand_run import WNIDS, hand_stats, image, spec_for
from PIL import Image

from app.main import create_app
from unitscope import metrics_sql, schema
from unitscope.crop import network_crop
from unitscope.maps import SHOWN, decode, encode
from worker.map_store import Maps, shown_images
from worker.models.bvlc import CaffeTransform
from worker.models.tv_common import describe
from worker.models.tv_googlenet import PUBLISHED
from worker.store import WorkerStore

F16_RTOL = 2.0**-11  # float16 rounds to 11 significant bits


def _layer_values(con: duckdb.DuckDBPyConnection, layer: str, units: int) -> tuple[np.ndarray, np.ndarray]:
    """(image ids ascending, [images, units, 3 stats in schema.STATS order]) of a published layer."""
    cols = con.execute(f"SELECT image_id, unit, {', '.join(schema.STAT_COLUMN[s] for s in schema.STATS)} "
                       "FROM responses WHERE run_id = 1 AND layer = ? ORDER BY image_id, unit", [layer]).fetchnumpy()
    ids = np.unique(cols["image_id"])
    values = np.stack([cols[schema.STAT_COLUMN[s]] for s in schema.STATS], axis=1).reshape(len(ids), units, 3)
    return ids, values


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_shown_images_are_the_rankings_the_server_shows(hand_ro: dict[str, Path], n: int, monkeypatch) -> None:
    """shown_images, for a chunk of units at once, gives exactly ranking_sql's first n images of each unit."""
    monkeypatch.setattr(schema, "MAP_N", n)
    with duckdb.connect(str(hand_ro["db"]), read_only=True) as con:
        for layer, units in LAYERS.items():
            expected = set()
            for unit in units:
                for kind, stat in SHOWN:
                    rows = con.execute(metrics_sql.ranking_sql(kind, stat), {
                        "run_id": 1, "layer": layer, "unit": unit, "category": "dog", "n": n}).fetchall()
                    assert len(rows) == min(n, 6)
                    expected |= {(unit, r[0]) for r in rows}
            ids, values = _layer_values(con, layer, len(units))
            assert shown_images(values, ids) == expected, (layer, n)
            # The worker reads a layer a chunk of units at a time: the chunks' images are the layer's.
            assert shown_images(values[:, :1], ids) | shown_images(values[:, 1:], ids, first_unit=1) == expected


def test_shown_images_keep_the_ranking_order_ties_by_image_id(hand_ro: dict[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # mixed4c unit 1: every max is 5.0, so the first 3 by max are images 0, 1, 2.
    monkeypatch.setattr(schema, "MAP_N", 3)
    monkeypatch.setattr("worker.map_store.SHOWN", (("positive", "max"),))
    with duckdb.connect(str(hand_ro["db"]), read_only=True) as con:
        ids, values = _layer_values(con, "mixed4c", len(LAYERS["mixed4c"]))
    assert {image_id for unit, image_id in shown_images(values, ids) if unit == 1} == {0, 1, 2}


def test_codec_is_float16_little_endian_row_major() -> None:
    values = np.array([[1.0, -2.5, 3.14159], [65504.0, 1e-3, 0.0]], dtype=np.float32)
    (blob,) = encode(values[None])
    assert len(blob) == values.size * 2
    assert blob[:4] == b"\x00\x3c\x00\xc1"  # 1.0 = 0x3c00, -2.5 = 0xc100, low byte first; row-major
    assert np.array_equal(decode(blob, 2, 3), values.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(decode(blob, 2, 3), values, rtol=F16_RTOL, atol=1e-6)


def _maps_for(stats: np.ndarray, image_id: int, units: list[int]) -> list[Maps]:
    # A 2 x 3 map whose max and min are the image's stored max and min, as a real map's are.
    values = np.array([[[mn, 0, mx], [0, 0, 0]] for _, mx, mn in stats[image_id, units]], dtype=np.float32)
    return [Maps("conv1", np.array(units), np.full(len(units), image_id), values)]


def test_second_pass_resumes_after_an_interruption_and_publishes_each_map_once(tmp_path: Path) -> None:
    """Maps stored before a kill are kept; a rerun computes only the rest; publication copies them."""
    db = tmp_path / "maps.duckdb"
    spec = spec_for(tuple(f"{w}/{i}.JPEG" for i, w in enumerate(WNIDS)))
    stats = hand_stats()
    with WorkerStore.open(db) as store:
        store.begin(spec)
        store.write_batch([image(i, w) for i, w in enumerate(WNIDS)], [], {"conv1": stats})
        todo = store.maps_todo()
        # 5 images, MAP_N = 16 per ranking: every (unit, image) of the two units is shown.
        assert todo == {i: {"conv1": [0, 1]} for i in range(5)}
        store.write_maps(_maps_for(stats, 0, [0, 1]) + _maps_for(stats, 3, [0, 1]))
    # Killed here: the working file keeps what was committed. The same command runs again.
    with WorkerStore.open(db) as store:
        assert store.begin(spec).resumed
        todo = store.maps_todo()
        assert todo == {i: {"conv1": [0, 1]} for i in (1, 2, 4)}
        for image_id, layers in todo.items():
            store.write_maps(_maps_for(stats, image_id, layers["conv1"]))
        assert store.maps_todo() == {}
        store.publish(ranked_k=5)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT run_id, layer, unit, image_id, height, width, values_f16 FROM unit_maps ORDER BY unit, image_id"
        ).fetchall()
    assert [(r[2], r[3]) for r in rows] == [(u, i) for u in (0, 1) for i in range(5)]
    for run_id, layer, unit, image_id, h, w, blob in rows:
        assert (run_id, layer, h, w) == (1, "conv1", 2, 3)
        values = decode(blob, h, w)
        assert values.max() == pytest.approx(stats[image_id, unit, 1], rel=F16_RTOL)
        assert values.min() == pytest.approx(stats[image_id, unit, 2], rel=F16_RTOL)


def _coordinate_image(width: int, height: int) -> Image.Image:
    """Every pixel distinct enough to show a one-pixel shift: x in red, y in green, both in blue."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 7) % 256, (y * 5) % 256, (x * 3 + y * 11) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


@pytest.mark.parametrize("size", [(267, 256), (500, 375), (333, 500), (301, 257), (256, 256), (640, 427)])
@pytest.mark.parametrize("convention", ["caffe", "torchvision"])
def test_network_crop_is_the_crop_the_transform_takes(size: tuple[int, int], convention: str) -> None:
    """Resize and crop by network_crop's box, compare with the model's own transform, pixel for pixel."""
    if convention == "caffe":
        transform = CaffeTransform()
        description = transform.describe()
    else:
        transform = PUBLISHED.transforms()
        description = describe(transform, PUBLISHED, transform_input=True)
    photo = _coordinate_image(*size)
    box = network_crop(json.dumps(description), *size)
    assert box is not None
    resized_w, resized_h = round(224 / box.width), round(224 / box.height)
    left, top = round(box.left * resized_w), round(box.top * resized_h)
    expected = photo.resize((resized_w, resized_h), Image.Resampling.BILINEAR).crop(
        (left, top, left + 224, top + 224))
    expected = torch.from_numpy(np.array(expected, dtype=np.float32))  # 224 x 224 x RGB, 0..255
    x = transform(photo)  # 3 x 224 x 224
    if convention == "caffe":
        seen = (x.permute(1, 2, 0) + torch.tensor(description["mean_bgr"])).flip(-1)
    else:
        seen = (x.permute(1, 2, 0) * torch.tensor(description["std"]) + torch.tensor(description["mean"])) * 255
    torch.testing.assert_close(seen, expected, atol=1e-3, rtol=0)


def test_network_crop_is_none_without_a_crop_description() -> None:
    assert network_crop("{}", 100, 80) is None
    assert network_crop("not json", 100, 80) is None
    assert network_crop(json.dumps({"resize_short_side": 256, "center_crop": "x"}), 100, 80) is None


def test_unit_twin_gives_stored_maps_and_the_page_overlays_them(hand: dict[str, Path], tmp_path: Path) -> None:
    """`map` is the stored map ({shape, values}, row-major) where stored, null elsewhere; the page draws it."""
    values = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5  # -5.5 .. 5.5: both signs
    with duckdb.connect(str(hand["db"])) as con:
        con.execute("UPDATE runs SET preprocessing = ?", [json.dumps(CaffeTransform().describe())])
        con.execute("INSERT INTO unit_maps VALUES (1, 'mixed4c', 0, 0, 3, 4, ?)", encode(values[None]))
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as client:
        body = client.get("/api/layers/mixed4c/units/0?n=3").json()
        page = client.get("/layers/mixed4c/units/0?n=3").text
        bare = client.get("/api/layers/mixed4c/units/1?n=3").json()
    (first,) = [e for e in body["positive"] if e["image"] == 0]
    # peak and trough: the cells of the largest (5.5, the last) and smallest (-5.5, the first) value.
    assert first["map"] == {"shape": [3, 4], "values": values.ravel().tolist(), "peak": [2, 3], "trough": [0, 0]}
    others = [e for kind in ("positive", "near_zero", "negative") for e in body[kind] if e["image"] != 0]
    assert others and all(e["map"] is None for e in others)
    assert body["map_scale"] == 5.5
    # Each row has its own scale: the largest |value| of the row's maps (image 0 is in the positive row only).
    shown = {kind: [e["image"] for e in body[kind]] for kind in ("positive", "near_zero", "negative")}
    assert body["map_scales"] == {kind: 5.5 if 0 in ids else None for kind, ids in shown.items()}
    box = network_crop(json.dumps(CaffeTransform().describe()), 64, 48)  # the hand images are 64 x 48
    assert first["crop"] == pytest.approx(box.__dict__)
    # The page: one canvas per stored map, with its values, over the cropped thumbnail, and the toggle.
    parsed = Page(page)
    controls = parsed.one("div", cls="map-controls")
    assert controls.by_id("show-maps").get("type") == "checkbox"
    rows = parsed.find_all("section", cls="ranking")
    assert [r.get("data-map-scale") for r in rows] == [
        "5.5" if body["map_scales"][kind] else None for kind in ("positive", "near_zero", "negative")]
    for row in rows:  # a row's canvases sit inside the row that carries their scale
        assert all(row.get("data-map-scale") == "5.5" for _ in row.find_all("canvas", cls="unit-map"))
    canvases = parsed.find_all("canvas", cls="unit-map")
    assert len(canvases) == sum(e["image"] == 0 for kind in ("positive", "near_zero", "negative") for e in body[kind])
    assert all((c.get("width"), c.get("height")) == ("4", "3") for c in canvases)
    assert all(json.loads(str(c.get("data-map"))) == values.ravel().tolist() for c in canvases)
    assert all("cropped" in (img.get("class") or "") for img in parsed.images)
    # A unit without stored maps: no map, no scale, no canvas or toggle.
    assert bare["map_scale"] is None and all(e["map"] is None for e in bare["positive"])


def test_an_image_in_both_rows_shows_where_its_map_peaks_and_dips(hand: dict[str, Path], tmp_path: Path) -> None:
    """Unit 1 of mixed4c shows images 0-2 in both its positive and negative rows (tests/test_overlap.py); with a
    stored map, image 0's card rings the map's largest and smallest cells, in both rows."""
    values = np.zeros((2, 5), dtype=np.float32)
    values[1, 4], values[0, 2] = 7.0, -3.0  # peak at row 1, column 4; trough at row 0, column 2
    with duckdb.connect(str(hand["db"])) as con:
        con.execute("UPDATE runs SET preprocessing = ?", [json.dumps(CaffeTransform().describe())])
        con.execute("INSERT INTO unit_maps VALUES (1, 'mixed4c', 1, 0, 2, 5, ?)", encode(values[None]))
    with TestClient(create_app(make_settings(hand["db"], tmp_path))) as client:
        body = client.get("/api/layers/mixed4c/units/1?n=3&k=2").json()
        page = Page(client.get("/layers/mixed4c/units/1?n=3&k=2").text)
    for kind in ("positive", "negative"):
        (entry,) = [e for e in body[kind] if e["image"] == 0]
        assert entry["in_both"] and (entry["map"]["peak"], entry["map"]["trough"]) == ([1, 4], [0, 2])
    peaks, troughs = page.find_all("span", cls="peak"), page.find_all("span", cls="trough")
    assert len(peaks) == len(troughs) == 2  # image 0 in each of the two rows
    assert all(p.get("style") == "left: 90.0%; top: 75.0%" for p in peaks)  # cell centre (4.5 / 5, 1.5 / 2)
    assert all(t.get("style") == "left: 50.0%; top: 25.0%" for t in troughs)



def test_the_todo_read_in_split_chunks_is_the_todo_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """maps_todo a unit at a time (the staged file split by chunk, as at a million images) finds the same maps."""
    from worker import map_store, staged_arrays

    files = tuple(f"{w}/{i}.JPEG" for i, w in enumerate(WNIDS * 8))
    stats = np.random.default_rng(4).normal(size=(len(files), 6, 3)).astype(np.float32)
    steps: list[int] = []
    real = staged_arrays.StagedArrays.chunks
    monkeypatch.setattr(staged_arrays.StagedArrays, "chunks",
                        lambda self, layer, units, index, step: steps.append(step) or real(self, layer, units, index, step))
    with WorkerStore.open(tmp_path / "maps.duckdb") as store:
        store.begin(spec_for(files, units=6))
        store.write_batch([image(i, f.split("/")[0]) for i, f in enumerate(files)], [], {"conv1": stats})
        whole = store.maps_todo()
        monkeypatch.setattr(map_store, "_CHUNK_BYTES", len(files) * 3 * 4)  # one unit a chunk: six chunks
        monkeypatch.setattr(staged_arrays, "SPLIT_FROM", 3)
        split = store.maps_todo()
    assert steps[0] >= 6 and steps[1] == 1  # the whole layer in one chunk, then six
    assert split == whole and sum(len(units) for layers in whole.values() for units in layers.values()) > 6
