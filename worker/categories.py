"""Categories (named WNID lists) and the ImageNet-1k class table, read from the shipped data files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The data files ship inside the package (pyproject: package-data worker/categories/*.txt).
DATA_DIR = Path(__file__).resolve().parent / "categories"
IMAGENET_CLASSES_FILE = DATA_DIR / "imagenet1k.txt"
BUILTIN_FILES: dict[str, Path] = {"dog": DATA_DIR / "dog.txt"}

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
    """Parse a `--category NAME=FILE` argument and load its file."""
    name, sep, file = arg.partition("=")
    if not sep or not name or not file:
        raise CategoryError(f"--category expects NAME=FILE, got {arg!r}")
    path = Path(file).expanduser()
    return Category(check_name(name), read_wnid_file(path), str(path))


def builtin_category(name: str) -> Category:
    """A category shipped with the worker (currently only `dog`)."""
    try:
        path = BUILTIN_FILES[name]
    except KeyError:
        raise CategoryError(f"no built-in category {name!r}; built-in: {', '.join(BUILTIN_FILES)}") from None
    return Category(name, read_wnid_file(path), f"built-in:{path.name}")


def load_categories(args: list[str] | tuple[str, ...] = ()) -> list[Category]:
    """The built-in categories plus each `NAME=FILE`; a `--category dog=FILE` replaces the built-in dog."""
    categories = {name: builtin_category(name) for name in BUILTIN_FILES}
    given: set[str] = set()
    for arg in args:
        category = parse_category_arg(arg)
        if category.name in given:
            raise CategoryError(f"category {category.name!r} given twice")
        given.add(category.name)
        categories[category.name] = category
    return [categories[name] for name in sorted(categories)]


def load_imagenet_classes(path: Path = IMAGENET_CLASSES_FILE) -> dict[str, ImageNetClass]:
    """The ImageNet-1k classes by WNID; line i of the file (`<wnid> <names>`) is class index i."""
    classes: dict[str, ImageNetClass] = {}
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        wnid, _, name = line.strip().partition(" ")
        classes[wnid] = ImageNetClass(index, wnid, name.strip())
    return classes
