"""Categories (named WNID sets) and the ImageNet-1k class table, read from the shipped data files.

A category is given as a WordNet synset (every ImageNet-1k class under it, through the is-a pairs
of imagenet1k_isa.tsv) or as a list file of WNIDs. Every run records every built-in category.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

# The data files ship inside the package (pyproject: package-data worker/categories/*.txt, *.tsv).
DATA_DIR = Path(__file__).resolve().parent
IMAGENET_CLASSES_FILE = DATA_DIR / "imagenet1k.txt"
ISA_FILE = DATA_DIR / "imagenet1k_isa.tsv"
SYNSETS_FILE = DATA_DIR / "imagenet1k_synsets.tsv"
# name -> WordNet synset; docs/method.md's table gives each one's ImageNet-1k classes.
BUILTIN_SYNSETS: dict[str, str] = {
    "dog": "n02084071",  # dog, domestic dog: 118 classes (= dog.txt, indices 151-268)
    "bird": "n01503061",  # 59
    "feline": "n02120997",  # feline, felid: 13 (5 domestic cats, 8 wild ones)
    "reptile": "n01661091",  # reptile, reptilian: 36
    "vehicle": "n04524313",  # 67
    "musical-instrument": "n03800933",  # musical instrument, instrument: 26
}

NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
WNID_RE = re.compile(r"n\d{8}")


class CategoryError(ValueError):
    """A category name or file that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Category:
    """A named set of WNIDs; an image belongs to it when its folder name is one of them."""

    name: str
    wnids: tuple[str, ...]  # sorted, unique
    source: str  # the file it came from


@dataclass(frozen=True)
class ImageNetClass:
    """One ImageNet-1k class: its index (0-999), WNID and human-readable names."""

    index: int
    wnid: str
    name: str


def read_wnid_file(path: Path) -> tuple[str, ...]:
    """WNIDs of a category file: the first token of each line; '#' starts a comment, blank lines skip."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CategoryError(f"category file not found: {path}") from None
    except IsADirectoryError:
        raise CategoryError(f"category file is a directory: {path}") from None
    except UnicodeDecodeError:
        raise CategoryError(f"category file is not UTF-8 text: {path}") from None
    except OSError as exc:
        raise CategoryError(f"cannot read category file {path}: {exc.strerror or exc}") from None
    wnids: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        token = content.split()[0]
        if not WNID_RE.fullmatch(token):
            raise CategoryError(f"{path}:{lineno}: {token!r} is not a WNID (expected 'n' and 8 digits, e.g. n02085620)")
        wnids.add(token)
    if not wnids:
        raise CategoryError(f"category file {path} lists no WNIDs")
    return tuple(sorted(wnids))


def check_name(name: str) -> str:
    """Return `name` if it is a valid category name (it appears in URLs), else raise."""
    if not NAME_RE.fullmatch(name):
        raise CategoryError(f"invalid category name {name!r}: use letters, digits, '_' and '-' only")
    return name


def parse_category_arg(arg: str) -> Category:
    """Parse a `--category` argument: NAME=WNID (a synset), NAME=FILE (a WNID list) or NAME (a built-in).

    A value that is a WNID is a synset; to read a file of that name, give it as ./nXXXXXXXX.
    """
    name, sep, value = arg.partition("=")
    if not sep:
        return builtin_category(check_name(name))
    if not name or not value:
        raise CategoryError(f"--category expects NAME=WNID, NAME=FILE or a built-in NAME, got {arg!r}")
    if WNID_RE.fullmatch(value):
        return Category(check_name(name), classes_under(value), f"synset:{value}")
    path = Path(value).expanduser()
    return Category(check_name(name), read_wnid_file(path), str(path))


def builtin_category(name: str) -> Category:
    """A category shipped with the worker, by name: every ImageNet-1k class under its synset."""
    try:
        synset = BUILTIN_SYNSETS[name]
    except KeyError:
        raise CategoryError(f"no built-in category {name!r}; built-in: {', '.join(BUILTIN_SYNSETS)}") from None
    return Category(name, classes_under(synset), f"built-in:{synset}")


def load_categories(args: list[str] | tuple[str, ...] = ()) -> list[Category]:
    """Every built-in category plus each `--category`; one given under a built-in's name replaces it."""
    categories = {name: builtin_category(name) for name in BUILTIN_SYNSETS}
    given: set[str] = set()
    for arg in args:
        category = parse_category_arg(arg)
        if category.name in given:
            raise CategoryError(f"category {category.name!r} given twice")
        given.add(category.name)
        categories[category.name] = category
    return [categories[name] for name in sorted(categories)]


@functools.cache
def _hyponyms(path: Path = ISA_FILE) -> dict[str, frozenset[str]]:
    """parent -> children, from the is-a pairs file (`parent<TAB>child` lines, '#' comments)."""
    children: dict[str, set[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            parent, child = line.split("\t")
            children.setdefault(parent, set()).add(child)
    return {parent: frozenset(kids) for parent, kids in children.items()}


@functools.cache
def hypernyms(path: Path = ISA_FILE) -> dict[str, tuple[str, ...]]:
    """child -> its parents (WordNet hypernyms), from the is-a pairs file."""
    parents: dict[str, list[str]] = {}
    for parent, children in _hyponyms(path).items():
        for child in children:
            parents.setdefault(child, []).append(parent)
    return {child: tuple(sorted(found)) for child, found in parents.items()}


@functools.cache
def synset_names(path: Path = SYNSETS_FILE) -> dict[str, str]:
    """WNID -> the synset's first WordNet lemma, for every synset of the is-a file (`wnid<TAB>name` lines)."""
    return dict(line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines()
                if line and not line.startswith("#"))


def classes_under(synset: str) -> tuple[str, ...]:
    """The ImageNet-1k classes at or below a WordNet synset (sorted), or CategoryError if there are none."""
    if not WNID_RE.fullmatch(synset):
        raise CategoryError(f"{synset!r} is not a WNID (expected 'n' and 8 digits, e.g. n01503061)")
    children, classes = _hyponyms(), load_imagenet_classes()
    found: set[str] = set()
    todo = [synset]
    while todo:
        wnid = todo.pop()
        if wnid not in found:
            found.add(wnid)
            todo.extend(children.get(wnid, ()))
    below = tuple(sorted(found & classes.keys()))
    if not below:
        raise CategoryError(f"synset {synset} has no ImageNet-1k class under it (see {ISA_FILE.name})")
    return below


def load_imagenet_classes(path: Path = IMAGENET_CLASSES_FILE) -> dict[str, ImageNetClass]:
    """The ImageNet-1k classes by WNID; line i of the file (`<wnid> <names>`) is class index i."""
    classes: dict[str, ImageNetClass] = {}
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        wnid, _, name = line.strip().partition(" ")
        classes[wnid] = ImageNetClass(index, wnid, name.strip())
    return classes
