"""Builders and helpers the test modules share: the hand-made DB and its brute-force expectations,
a real-worker DB, a live server, odd image files, a parser for the pages' HTML. The pytest fixtures over
them are in conftest.py.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import uvicorn
from PIL import Image

from app.config import LOOPBACK_HOSTS, Settings
from unitscope import schema
from worker.derived_ranks import write_ranks

REPO = Path(__file__).resolve().parent.parent
DOG, TENCH, GOLDFISH = "n02085620", "n01440764", "n01443537"

# The derived tables whose values the server computes when a DB lacks them; labels are stored only (a DB without
# them shows none until `python -m worker derive` adds them).
COMPUTED_WHEN_MISSING = tuple(t for t in schema.DERIVED_TABLES if t not in (schema.UNIT_LABELS, schema.UNIT_LABEL_TERMS))

# ---------------------------------------------------------------------------------------------
# The hand-made DB

# Run 1 (complete): six images; 0-2 are dogs (Chihuahua), 3-4 tench, 5 goldfish.
IMAGES = [
    (0, f"{DOG}/dog a.JPEG", DOG, 151, "Chihuahua"),
    (1, f"{DOG}/dog_b.JPEG", DOG, 151, "Chihuahua"),
    (2, f"{DOG}/dog_c.JPEG", DOG, 151, "Chihuahua"),
    (3, f"{TENCH}/tench_a.JPEG", TENCH, 0, "tench"),
    (4, f"{TENCH}/tench_b.JPEG", TENCH, 0, "tench"),
    (5, f"{GOLDFISH}/fish.JPEG", GOLDFISH, 1, "goldfish"),
]
CATEGORIES = {"dog": [DOG], "fish": [TENCH, GOLDFISH]}
# (act_mean, act_max, act_min) per image, for the three units of mixed4c, each built for one case:
MIXED4C = {
    # a dog unit: the largest max are dogs, the smallest min are not
    0: [(3.0, 10.0, -1.0), (-0.5, 8.0, -2.0), (0.1, 6.0, -3.0), (-2.0, 0.0, -9.0), (0.2, 2.0, -8.0), (1.0, 4.0, -7.0)],
    # max constant: SI undefined (NULL), and every max and min tied: ties broken by image id
    1: [(1.0, 5.0, 0.0), (2.0, 5.0, 0.0), (3.0, 5.0, 0.0), (4.0, 5.0, 0.0), (4.5, 5.0, 0.0), (2.5, 5.0, 0.0)],
    # every dog at the unit's minimum max: SI 0
    2: [(-2.0, 0.0, -5.0), (-3.0, 0.0, -6.0), (-1.0, 0.0, -4.0), (2.0, 3.0, 1.0), (3.0, 6.0, 1.0), (4.0, 9.0, 1.0)],
}
CONV1 = {  # two units, so /layers has more than one layer; no precomputed scores
    0: [(0.0, float(i), -float(i)) for i in range(6)],
    1: [(0.0, float(5 - i), -1.0) for i in range(6)],
}
LAYERS = {"conv1": CONV1, "mixed4c": MIXED4C}  # in depth order
PRECOMPUTED = ("mixed4c", "dog", schema.DEFAULT_SI_STAT)  # the one (layer, category, stat) with stored SI
# The k used when none is given: the study's 1000 needs 6 x 1000 images; a smaller run gets a sixth of its images.
HAND_K = len(IMAGES) // 6

# A URL of every page on the hand-made DB, with defaults and with parameters; /api + URL is its twin.
HAND_PAGES = [
    "/",
    "/layers",
    "/layers?k=2",
    "/layers/mixed4c",
    "/layers/mixed4c?k=2&si_stat=mean",
    "/layers/conv1?category=fish&threshold=0.5",
    "/layers/mixed4c/units/0",
    "/layers/mixed4c/units/2?k=2&n=3&near_stat=max",
    "/layers/mixed4c/units/0/classes",
    "/layers/mixed4c/units/2/classes?category=fish&stat=mean",
    "/layers/mixed4c/units/1/classes/n01440764?stat=min",
    "/claims",
    "/claims?k=2&layer=conv1",
    "/skipped",
    "/units",
    "/units?q=dog&sort=si&limit=2",
    "/categories?k=2",
    "/compare?a=1&b=1&layer=conv1&k=2",  # a compare page's own URL names both runs and the layer
]


def _photo(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), color).save(path, format="JPEG")


def make_images(root: Path) -> Path:
    """Real JPEGs for the images above, plus a secret outside the folder and a symlink escaping to it."""
    images = root / "images"
    for image_id, rel, *_ in IMAGES:
        if image_id != 5:
            _photo(images / rel, (40 * image_id, 200 - 30 * image_id, 90))
    secret = root / "secret.JPEG"
    _photo(secret, (255, 0, 0))
    (root / "secret.txt").write_text("the server must never send this")
    # Image 5 is a symlink out of the image folder: the server must refuse it.
    (images / IMAGES[5][1]).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, images / IMAGES[5][1])
    return images


def build_db(path: Path, images_root: Path, run_id: int = 1, with_running: bool = True) -> Path:
    """Write the hand-made DB through schema.DDL: run `run_id` complete, plus a run still 'running'."""
    con = duckdb.connect(str(path))
    for ddl in schema.DDL:
        con.execute(ddl)
    con.execute(f"INSERT INTO {schema.META} VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])
    runs = [(run_id, schema.RUN_COMPLETE, datetime(2024, 5, 1, 12, 30))]
    if with_running:
        runs.append((run_id + 1, schema.RUN_RUNNING, None))
    for rid, status, finished in runs:
        con.execute(
            f"INSERT INTO {schema.RUNS} VALUES (?, ?, 'h', 'bvlc-googlenet', '/weights', ?, '{{}}', ?, 7, 'cpu',"
            " 'float32', ?, ?)",
            [rid, status, "ab" * 32, str(images_root), datetime(2024, 5, 1, 12, 0), finished],
        )
        for position, (layer, units) in enumerate(LAYERS.items()):
            con.execute(f"INSERT INTO {schema.LAYERS_TABLE} VALUES (?, ?, ?, ?, ?)",
                        [rid, layer, position, len(units), f"module.{layer}"])
            for unit, values in units.items():
                con.execute(f"INSERT INTO {schema.UNITS} VALUES (?, ?, ?, 'conv')", [rid, layer, unit])
                for image_id, (mean, mx, mn) in enumerate(values):
                    con.execute(f"INSERT INTO {schema.RESPONSES} VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [rid, layer, unit, image_id, mean, mx, mn])
        for image_id, rel, wnid, index, name in IMAGES:
            con.execute(f"INSERT INTO {schema.IMAGES} VALUES (?, ?, ?, ?, ?, ?, 64, 48, 'RGB')",
                        [rid, image_id, rel, wnid, index, name])
        for category, wnids in CATEGORIES.items():
            for wnid in wnids:
                con.execute(f"INSERT INTO {schema.CATEGORIES} VALUES (?, ?, ?)", [rid, category, wnid])
        con.execute(f"INSERT INTO {schema.SKIPPED} VALUES (?, 6, 'n01440764/broken.JPEG', 'truncated JPEG')",
                    [rid])
    # SI as the worker publishes it, for one (layer, category, stat) only: the rest is computed on demand. With
    # mixed4c's ranks, made by the worker's code (in_top/in_bottom for k <= RANKED_K).
    layer, category, stat = PRECOMPUTED
    write_ranks(con, run_id, layer, schema.RANKED_K, [category])
    con.execute(f"DELETE FROM {schema.UNIT_SI} WHERE stat <> $stat", {"stat": stat})
    con.close()
    return path


def make_settings(db: Path, tmp: Path, **extra: object) -> Settings:
    """Settings for a test server: its own thumbnail cache; the image folders of the DB's runs allowed, as an
    operator allows them; TestClient's host name among the allowed hosts."""
    roots: tuple[Path, ...] = ()
    try:
        with duckdb.connect(str(db), read_only=True) as con:
            roots = tuple(Path(r[0]) for r in con.execute("SELECT DISTINCT images_root FROM runs").fetchall())
    except duckdb.Error:
        pass  # no DB, or not one: the test is about that
    extra = {"image_roots": roots, "allowed_hosts": (*LOOPBACK_HOSTS, "testserver"), **extra}
    return Settings(db=db, thumbnail_dir=tmp / "thumbs", **extra)


def make_hand(root: Path) -> dict[str, Path]:
    """Paths of a new hand-made DB, its image folder and the secrets beside it, under root."""
    images = make_images(root)
    return {"db": build_db(root / "hand.duckdb", images), "images": images, "root": root}


def table_dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of a DB file, to compare before and after."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# What the hand-made DB must give, by brute force from the raw responses above

_STAT = {"mean": 0, "max": 1, "min": 2}


def _responses(layer: str, unit: int, stat: str) -> np.ndarray:
    # As stored: FLOAT columns, i.e. float32.
    return np.array(LAYERS[layer][unit], dtype=np.float32)[:, _STAT[stat]].astype(np.float64)


def in_category(category: str) -> np.ndarray:
    """Per image id: is it in the category."""
    return np.array([wnid in CATEGORIES[category] for _, _, wnid, _, _ in IMAGES])


def expected_si(layer: str, unit: int, category: str, stat: str) -> float | None:
    """A_N = min-max normalised over all images; SI = mean_C(A_N) / (mean_C(A_N) + mean_notC(A_N))."""
    a = _responses(layer, unit, stat)
    if a.max() == a.min():
        return None
    norm = (a - a.min()) / (a.max() - a.min())
    cat = in_category(category)
    c, rest = norm[cat].mean(), norm[~cat].mean()
    return float(c / (c + rest))


def ranked(layer: str, unit: int, stat: str, order: str) -> list[int]:
    """Every image id, sorted by `stat`: 'top' largest first, 'bottom' smallest, 'near_zero' smallest |.|.

    Ties go to the smaller image id.
    """
    a = _responses(layer, unit, stat)
    key = {"top": lambda i: (-a[i], i), "bottom": lambda i: (a[i], i), "near_zero": lambda i: (abs(a[i]), i)}[order]
    return sorted(range(len(a)), key=key)


def expected_scores(
    layer: str, category: str = "dog", k: int = schema.DEFAULT_K, pos_stat: str = schema.DEFAULT_POS_STAT,
    neg_stat: str = schema.DEFAULT_NEG_STAT, si_stat: str = schema.DEFAULT_SI_STAT,
) -> list[tuple[int, float | None, int, int]]:
    """(unit, si, in_top, in_bottom) of every unit of a layer: category images among its k first of each side."""
    cat = in_category(category)
    return [
        (unit, expected_si(layer, unit, category, si_stat),
         int(cat[ranked(layer, unit, pos_stat, "top")[:k]].sum()),
         int(cat[ranked(layer, unit, neg_stat, "bottom")[:k]].sum()))
        for unit in LAYERS[layer]
    ]


def expected_exclusive(
    layer: str, category: str = "dog", k: int = schema.DEFAULT_K, pos_stat: str = schema.DEFAULT_POS_STAT,
    neg_stat: str = schema.DEFAULT_NEG_STAT,
) -> list[tuple[int, int, int]]:
    """(unit, overlap, in_bottom_only): images in both its k first of each side, and category images of its
    bottom k that are not in its top k."""
    cat = in_category(category)
    rows = []
    for unit in LAYERS[layer]:
        top, bottom = set(ranked(layer, unit, pos_stat, "top")[:k]), set(ranked(layer, unit, neg_stat, "bottom")[:k])
        rows.append((unit, len(top & bottom), int(sum(cat[i] for i in bottom - top))))
    return rows


def expected_base_rate(category: str, k: int) -> float:
    """min(k, N) x the category's share of the N images."""
    cat = in_category(category)
    return min(k, len(cat)) * cat.sum() / len(cat)


# ---------------------------------------------------------------------------------------------
# A DB written by the real worker on a small spread of the shared sample

REAL_LIMIT = 160


def build_real_db(base: Path, images: Path, weights: Path) -> Path:
    """Run `python -m worker run` once per test session (reused by every module that asks)."""
    db = base / "real-worker" / "real.duckdb"
    if db.exists():
        return db
    db.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "worker", "run", "--images", str(images), "--db", str(db),
           "--model", "bvlc-googlenet", "--weights", str(weights), "--limit", str(REAL_LIMIT),
           "--device", "cpu", "--cache", str(db.parent / "cache")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if done.returncode not in (0, 3):  # 3: completed with skipped files
        raise RuntimeError(f"worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return db


@contextmanager
def serve(app: object) -> Iterator[str]:
    """Run the app under a real uvicorn server on 127.0.0.1 and a free port, in a thread."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


# ---------------------------------------------------------------------------------------------
# Odd image files


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares width x height RGB pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Parsed HTML: pages are tested by their structure, never by substring

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Element:
    """One element of a parsed page: its tag, attributes (entities decoded) and children."""

    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Element | None = None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element | str] = []

    def __repr__(self) -> str:
        return f"<{self.tag} {self.attrs}>{self.text[:80]!r}"

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    @property
    def text(self) -> str:
        """The text inside, whitespace collapsed as a browser shows it (scripts and styles left out)."""
        return " ".join("".join(self._strings()).split())

    def _strings(self) -> Iterator[str]:
        for child in self.children:
            if isinstance(child, str):
                yield child
            elif child.tag not in ("script", "style"):
                yield from child._strings()

    def iter(self) -> Iterator[Element]:
        """Every element below this one, in document order."""
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.iter()

    def find_all(self, tag: str | None = None, *, id: str | None = None, cls: str | None = None,
                 **attrs: str | bool) -> list[Element]:
        """The elements below that match: tag, id, one of their classes, and attributes (`data_map` names
        data-map; True: present at all)."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        if id is not None:
            wanted["id"] = id
        return [e for e in self.iter()
                if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)
                and all((name in e.attrs) if value is True else e.attrs.get(name) == value
                        for name, value in wanted.items())]

    def one(self, tag: str | None = None, **kwargs: str | bool) -> Element:
        """The single element that matches; anything else fails the test."""
        found = self.find_all(tag, **kwargs)  # type: ignore[arg-type]
        assert len(found) == 1, f"{len(found)} elements match {tag} {kwargs}: {found[:5]}"
        return found[0]

    def by_id(self, id: str) -> Element:
        return self.one(id=id)

    def hrefs(self) -> list[str]:
        return [str(a.get("href")) for a in self.find_all("a")]


class Page(HTMLParser):
    """A parsed page: a tree of `Element`s (`root`, `find_all`, `one`, `by_id`) and, at hand, the parts the
    tests look at most: links, images, each table's rows of cell texts (by the table's id, else `table<i>`),
    the embedded JSON figures (by their script id), the title and the h1."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []
        self.images: list[dict[str, str | None]] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.figures: dict[str, dict] = {}
        self.root = Element("#document", {})
        self._open: list[Element] = [self.root]
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._script: str | None = None
        self._text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        element = Element(tag, a, self._open[-1])
        self._open[-1].children.append(element)
        if tag not in _VOID:
            self._open.append(element)
        if tag == "a":
            self.links.append(a)
        elif tag == "img":
            self.images.append(a)
        elif tag == "table":
            self._table = a.get("id") or f"table{len(self.rows)}"
            self.rows[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "script" and a.get("type") == "application/json":
            self._script, self._text = a.get("id"), []

    def handle_endtag(self, tag: str) -> None:
        open_tags = [e.tag for e in self._open]
        if tag not in _VOID and tag in open_tags[1:]:  # close it and whatever was left open inside it
            del self._open[len(open_tags) - 1 - open_tags[::-1].index(tag):]
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.rows[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "script" and self._script:
            self.figures[self._script] = json.loads("".join(self._text))
            self._script = None

    def handle_data(self, data: str) -> None:
        self._open[-1].children.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._script:
            self._text.append(data)

    def hrefs(self) -> list[str]:
        return [str(a.get("href")) for a in self.links]

    def find_all(self, tag: str | None = None, **kwargs: str | bool) -> list[Element]:
        return self.root.find_all(tag, **kwargs)

    def one(self, tag: str | None = None, **kwargs: str | bool) -> Element:
        return self.root.one(tag, **kwargs)

    def by_id(self, id: str) -> Element:
        return self.root.by_id(id)

    @property
    def title(self) -> str:
        return self.one("title").text

    @property
    def h1(self) -> str:
        return self.one("h1").text


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: no PYTHONPATH (which may point at the checkout), no UNITSCOPE_* variables."""
    keep = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("UNITSCOPE_")}
    return {**keep, **extra}
