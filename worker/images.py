"""The image folder: a deterministic file list, decoding to RGB, and bad files turned into skip reasons."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

if TYPE_CHECKING:
    from worker.settings import WorkerSettings

T = TypeVar("T")  # what a FileDataset yields per file

# Extensions are compared lower-cased, so `.JPEG` (ImageNet's own) and `.Png` count too.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)

# An RGB PIL image, or (--decode gpu: worker.device_decode) a uint8 3 x H x W RGB tensor -> CHW float32.
Transform = Callable[[Image.Image | torch.Tensor], torch.Tensor]


# What every error about an unusable images folder points at.
LAYOUT = "ImageFolder layout <root>/<wnid>/<image>"


class ImagesError(ValueError):
    """The images folder itself cannot be used (missing, not a folder, no images)."""


@dataclass(frozen=True)
class FileEntry:
    """One file of the run's list: its path relative to the root and the class folder it sits in."""

    path: str  # '/'-separated, relative to the images root
    wnid: str  # the top-level folder name (ImageFolder's class); '' for a file at the root
    problem: str | None = None  # why it cannot be decoded, when known while listing


def list_image_files(root: Path) -> list[FileEntry]:
    """Every image-like file under `root`, sorted by relative path; position in the list = file id.

    Directory symlinks are followed, except into a directory that is already being walked (a symlink
    loop), which is recorded as a problem entry instead. Files and folders that cannot be listed or
    named are recorded as problem entries too, so that nothing disappears silently.
    """
    if not root.exists():
        raise ImagesError(f"images folder not found: {root}")
    if not root.is_dir():
        raise ImagesError(f"images path is not a folder: {root}")
    entries: list[FileEntry] = []
    _walk(root, "", (_dir_key(root),), entries)
    entries.sort(key=lambda e: e.path)
    if not entries:
        raise ImagesError(f"no image files under {root} (expected {LAYOUT}, extensions "
                          f"{', '.join(sorted(IMAGE_EXTENSIONS))})")  # fmt: skip
    return entries


def require_usable(root: Path, files: list[FileEntry], listed: int | None = None) -> list[FileEntry]:
    """`files` (`listed` found before --limit chose them), unless the listing already shows that none can be used
    (e.g. all at the root): then an ImagesError saying why, before the network loads; files that fail to decode are
    only known later (WorkerStore.publish)."""
    problems = [listing_problem(entry) for entry in files]
    if any(problem is None for problem in problems):
        return files
    message = none_usable(root, Counter(problem for problem in problems if problem is not None))
    if listed is not None and listed > len(files):
        message += f" (--limit chose these {len(files)} of the {listed:,} files found)"
    raise ImagesError(message)


def none_usable(root: Path | str, reasons: Mapping[str, int]) -> str:
    """The one-line error for a run none of whose files can be used: their commonest skip reasons, with counts."""
    # "cannot decode: <PIL's detail>" and the like: the detail differs per file, the kind of problem does not.
    kinds = Counter[str]()
    for reason, count in reasons.items():
        kinds[reason.split(": ", 1)[0]] += count
    total = sum(kinds.values())
    common = sorted(kinds.items(), key=lambda item: (-item[1], item[0]))[:3]  # ties by name: the same line each time
    shown = ", ".join(f"{count} {kind}" for kind, count in common)
    others = total - sum(count for _, count in common)
    shown += f", {others} for other reasons" if others else ""
    return (f"none of the {total} image files under {root} can be used ({shown}); expected {LAYOUT}: a folder "
            "per class, each holding images")


def _dir_key(path: Path | str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _walk(directory: Path, rel: str, ancestors: tuple[tuple[int, int], ...], out: list[FileEntry]) -> None:
    try:
        with os.scandir(directory) as it:
            children = list(it)
    except OSError as exc:
        out.append(FileEntry(rel or ".", _wnid_of(rel), f"cannot list folder: {exc.strerror or exc}"))
        return
    for child in children:
        child_rel = f"{rel}/{child.name}" if rel else child.name
        try:
            child_rel.encode("utf-8")
        except UnicodeEncodeError:
            # The DB stores text; a name that is not UTF-8 cannot be stored or served back.
            shown = os.fsencode(child_rel).decode("utf-8", "replace")
            out.append(FileEntry(shown, _wnid_of(shown), "file name is not valid UTF-8"))
            continue
        try:
            is_dir = child.is_dir(follow_symlinks=True)
        except OSError:  # e.g. ELOOP for a link to itself; judged below as a file
            is_dir = False
        if is_dir:
            try:
                key = _dir_key(child.path)
            except OSError as exc:
                out.append(FileEntry(child_rel, _wnid_of(child_rel), f"cannot open folder: {exc.strerror}"))
                continue
            if key in ancestors:
                out.append(
                    FileEntry(child_rel, _wnid_of(child_rel), "symlink loop: links back to a folder it is inside")
                )
                continue
            _walk(Path(child.path), child_rel, (*ancestors, key), out)
            continue
        if os.path.splitext(child.name)[1].lower() not in IMAGE_EXTENSIONS:
            continue
        out.append(FileEntry(child_rel, _wnid_of(child_rel), _file_problem(child)))


def _wnid_of(rel: str) -> str:
    head, sep, _ = rel.partition("/")
    return head if sep else ""


def _file_problem(entry: os.DirEntry[str]) -> str | None:
    """A reason known from the directory entry alone, or None when the file looks decodable."""
    try:
        st = entry.stat(follow_symlinks=True)
    except OSError as exc:
        return _os_reason(exc)
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def _os_reason(exc: OSError) -> str:
    """A short skip reason for an error raised while opening or reading a file."""
    if exc.errno == errno.ENOENT:
        return "file not found (broken link, or it vanished after the folder was listed)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    return f"cannot read file: {exc.strerror or exc}"


def spread_subset(entries: Sequence[T], limit: int | None) -> list[T]:
    """At most `limit` entries spread evenly over the sorted list (every k-th), so every part of the
    folder (dogs and non-dogs alike) is represented; the whole list when `limit` is None or larger."""
    n = len(entries)
    if limit is None or limit >= n:
        return list(entries)
    return [entries[(i * n) // limit] for i in range(limit)]


def listing_problem(entry: FileEntry) -> str | None:
    """Why a listed file cannot be used, where the listing alone knows: its own problem, or that it sits at the root,
    in no class folder (ImageFolder would drop it silently); None for a file to decode."""
    return entry.problem or ("not inside a class folder" if not entry.wnid else None)


class SkipImage(Exception):
    """Raised inside decoding with the reason an image is skipped."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (grayscale, CMYK, palette, alpha, 16-bit and float alike)."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # PIL's own convert() clips these to 0..255; 16-bit data uses the full 0..65535 range.
        values = np.asarray(image, dtype=np.float64)
        if image.mode != "F":
            values = values / 257.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # avoids PIL's warning; alpha is dropped below as in convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def read_checked(path: Path) -> bytes:
    """The bytes of a regular, non-empty file, or raise SkipImage with the reason it cannot be read."""
    _check_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SkipImage(_os_reason(exc)) from None


def _check_file(path: Path) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SkipImage(_os_reason(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise SkipImage("not a regular file")
    if st.st_size == 0:
        raise SkipImage("empty file (0 bytes)")


@contextlib.contextmanager
def pil_skip_reasons() -> Iterator[None]:
    """Turn what PIL raises for a bad file (and its bomb warning) into SkipImage with a short reason."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; treat both levels as a bomb.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SkipImage(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise SkipImage("not an image (unrecognised format)") from None
    except OSError as exc:
        if exc.errno is not None:
            raise SkipImage(_os_reason(exc)) from None
        raise SkipImage(_decode_reason(exc)) from None
    except (ValueError, SyntaxError, EOFError, MemoryError, struct.error) as exc:
        # PIL plugins raise these for corrupt headers and streams.
        raise SkipImage(_decode_reason(exc)) from None


def decode(path: Path) -> tuple[Image.Image, int, int, str]:
    """Open `path` as an RGB image: (image, width, height, original mode), or raise SkipImage."""
    _check_file(path)
    with pil_skip_reasons(), Image.open(path) as image:
        width, height, mode = image.width, image.height, image.mode
        image.load()
        rgb = to_rgb(image)
    return rgb, width, height, mode


def _decode_reason(exc: BaseException) -> str:
    message = str(exc) or type(exc).__name__
    if "truncat" in message.lower():
        return f"truncated image: {message}"
    return f"cannot decode: {message}"


@dataclass
class Decoded:
    """One file after decoding: pixels and original size/mode, or the reason it was skipped."""

    file_id: int
    pixels: torch.Tensor | None = None
    width: int = 0
    height: int = 0
    mode: str = ""
    reason: str | None = None


class FileDataset(Dataset[T]):
    """Files of an images root by position, each with its id, for a loader's processes."""

    def __init__(self, root: Path, files: Sequence[tuple[int, str]], transform: Transform) -> None:
        self.root = root
        self.files = list(files)  # (file id, relative path)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)


class ImageDataset(FileDataset[Decoded]):
    """Decodes and transforms files by position; never raises for a bad file."""

    def __getitem__(self, index: int) -> Decoded:
        return decode_file(self.root, *self.files[index], self.transform)


def decode_file(root: Path, file_id: int, rel: str, transform: Transform) -> Decoded:
    """One file through PIL and `transform`: its pixels, or the reason it is skipped (never raises)."""
    try:
        rgb, width, height, mode = decode(root / rel)
    except SkipImage as exc:
        return Decoded(file_id, reason=str(exc))
    try:
        pixels = transform(rgb)
    except Exception as exc:  # a transform failing on one odd image must not stop the run
        return Decoded(file_id, reason=f"transform failed: {type(exc).__name__}: {exc}")
    return Decoded(file_id, pixels, width, height, mode)


@dataclass
class Batch:
    """A collated batch: the decoded images stacked, plus the files that were skipped."""

    pixels: torch.Tensor | None  # N x 3 x H x W, or None when every file of the batch was bad
    good: list[Decoded] = field(default_factory=list)  # pixels stripped; same order as `pixels`
    bad: list[Decoded] = field(default_factory=list)

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) so host-to-GPU copies can run asynchronously."""
        if self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        return self


def collate(items: list[Decoded]) -> Batch:
    """Separate decoded images from skipped files and stack the good ones."""
    good = [item for item in items if item.reason is None]
    bad = [item for item in items if item.reason is not None]
    pixels = torch.stack([item.pixels for item in good]) if good else None
    for item in good:
        item.pixels = None  # the stacked tensor holds them; don't ship them twice
    return Batch(pixels, good, bad)


def default_workers() -> int:
    """Decoding processes: two overlap decoding with compute without starving it on small machines."""
    return min(2, os.cpu_count() or 1)


def make_loader(dataset: ImageDataset, *, batch_size: int, workers: int, pin_memory: bool) -> DataLoader[Batch]:
    """A DataLoader that decodes in `workers` processes while the network runs on the previous batch."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,  # file order = image id order, which keeps batches resumable
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None,
    )


def build_loader(
    root: Path, decodable: list[tuple[int, str]], transform: Any, settings: WorkerSettings, device_type: str
) -> Any:
    """The decoding loader of a run: no more worker processes than batches, pinned memory on a GPU;
    with --decode gpu the processes only read files and the device decodes (worker.device_decode)."""
    workers = settings.workers if settings.workers is not None else default_workers()
    batch_size = settings.batch_size_for(device_type)
    workers = min(workers, max(1, len(decodable) // batch_size)) if workers else 0
    if settings.decode == "gpu":
        # Imported only when asked for: its nvjpeg path.
        from worker.device_decode import make_device_loader

        return make_device_loader(root, decodable, transform, batch_size=batch_size, workers=workers,
                                  device=torch.device(device_type))  # fmt: skip
    return make_loader(
        ImageDataset(root, decodable, transform), batch_size=batch_size, workers=workers,
        pin_memory=device_type == "cuda",
    )
