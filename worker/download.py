"""The default images for a user who names no folder: Imagewoof and Imagenette, fetched once and cached."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from worker.categories import WNID_RE

# fast.ai's bucket for both releases (github.com/fastai/imagenette). A setting, so that a mirror,
# or a test's loopback server, can stand in for it.
OFFICIAL_BASE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/"
OFFLINE_HINT = (
    "Without internet access, point unitscope at a local ImageFolder laid out by WNID: "
    "set UNITSCOPE_IMAGES=DIR or pass --images DIR."
)
CHUNK = 1 << 20


class DownloadError(OSError):
    """The default images could not be fetched or unpacked; the message says why and what to do."""


@dataclass(frozen=True)
class Archive:
    """One published .tgz holding `<top>/<split>/<wnid>/<image>`, and the bytes it must be."""

    name: str
    url: str
    size: int | None = None  # bytes; None where nobody published it
    sha256: str | None = None  # hex; None where nobody published it (the digest is then only recorded)
    splits: tuple[str, ...] = ("val",)


def default_archives(base_url: str = OFFICIAL_BASE_URL) -> tuple[Archive, ...]:
    """The official Imagewoof and Imagenette 160 px releases (Dec 2019 70/30 split), val split only."""
    base = base_url.rstrip("/") + "/"
    # Sizes and sha256 as pinned by tensorflow/datasets' checksum files and FastAI.jl for these URLs.
    # val only: 3,929 + 3,925 images, a few minutes on a 2-core CPU; train would add 18,494 more.
    return (
        Archive(
            "imagewoof2-160",
            base + "imagewoof2-160.tgz",
            size=92_560_471,
            sha256="663c22f69c2802d85e2a67103c017e047096702ffddf9149a14011b7002539bf",
        ),
        Archive(
            "imagenette2-160",
            base + "imagenette2-160.tgz",
            size=99_003_388,
            sha256="64d0c4859f35a461889e0147755a999a48b49bf38a7e0f9bd27003f10db02fe5",
        ),
    )


def ensure_default_images(
    cache_dir: Path,
    *,
    sources: Sequence[Archive] = default_archives(),
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Return an ImageFolder root (one folder per WNID) of `sources`, downloading it on first use."""
    if not sources:
        raise ValueError("sources is empty: name at least one archive")
    target = cache_dir / f"default-images-{_cache_key(sources)}"
    images = target / "images"
    # The folder only ever appears whole, by one rename at the end of a build, so its presence means done.
    if images.is_dir():
        return images
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        if images.is_dir():  # another process built it while this one waited for the lock
            return images
        _build(target, sources, progress=progress, timeout=timeout)
    return images


def _cache_key(sources: Sequence[Archive]) -> str:
    """A digest of what the cache holds: each archive's content (or URL, where unpinned) and splits."""
    identity = [(a.name, a.sha256 or a.url, a.splits) for a in sources]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`, so two workers never build the same cache at once."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(target: Path, sources: Sequence[Archive], *, progress: bool, timeout: float) -> None:
    """Download and unpack every archive into a scratch folder, then rename it to `target` in one step."""
    for stale in target.parent.glob(f".{target.name}.*"):  # left by a process killed mid-build
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():  # a folder without images/ was not made by us: start over
        shutil.rmtree(target)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        images = work / "images"
        images.mkdir()
        records = []
        for archive in sources:
            tgz = work / f"{archive.name}.tgz"
            sha256, size = _download(archive, tgz, progress=progress, timeout=timeout)
            counts = _extract(archive, tgz, images, progress=progress)
            tgz.unlink()  # the unpacked images are the cache; keeping the archive would double the disk use
            records.append({**asdict(archive), "sha256": sha256, "size": size, "images": counts})
        manifest = {"created": datetime.now(UTC).isoformat(), "archives": records}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _download(archive: Archive, dest: Path, *, progress: bool, timeout: float) -> tuple[str, int]:
    """Fetch `archive` to `dest` through a temporary file and verify it; return its sha256 and size."""
    part = dest.with_name(dest.name + ".part")
    try:
        sha256, received, announced = _fetch(archive, part, progress=progress, timeout=timeout)
        _verify(archive, received=received, announced=announced, sha256=sha256)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return sha256, received


def _fetch(
    archive: Archive, out_path: Path, *, progress: bool, timeout: float
) -> tuple[str, int, int | None]:
    """Stream `archive.url` into `out_path`; return the sha256, the bytes received and those announced."""
    digest = hashlib.sha256()
    received = 0
    request = urllib.request.Request(archive.url, headers={"User-Agent": "unitscope"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, out_path.open("wb") as out:
            announced = response.length  # Content-Length, or None when the server does not say
            total = announced if announced is not None else archive.size
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=archive.name,
                disable=not progress,
            ) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        raise DownloadError(
            f"{archive.url} answered HTTP {error.code} {error.reason}. {OFFLINE_HINT}"
        ) from error
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as error:
        reason = getattr(error, "reason", None) or error  # URLError wraps the socket error
        raise DownloadError(f"could not download {archive.url}: {reason}. {OFFLINE_HINT}") from error
    return digest.hexdigest(), received, announced


def _verify(archive: Archive, *, received: int, announced: int | None, sha256: str) -> None:
    """Refuse a download whose size or digest is not what the server announced or the release published."""
    for expected, source in ((announced, "the server announced"), (archive.size, "the release has")):
        if expected is not None and received != expected:
            raise DownloadError(
                f"{archive.url}: received {received:,} bytes but {source} {expected:,}; the download was cut "
                f"short or the file changed. Nothing was cached; run again to retry. {OFFLINE_HINT}"
            )
    if archive.sha256 is not None and sha256 != archive.sha256:
        raise DownloadError(
            f"{archive.url}: sha256 {sha256} does not match the published {archive.sha256}; the file is "
            f"corrupt or was altered. Nothing was cached. {OFFLINE_HINT}"
        )


def _extract(archive: Archive, tgz: Path, images: Path, *, progress: bool) -> dict[str, int]:
    """Copy the images of the chosen splits into `images/<wnid>/`; return the count per WNID."""
    counts: dict[str, int] = {}
    try:
        with (
            gzip.open(tgz) as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
            tqdm(unit="img", desc=f"unpacking {archive.name}", disable=not progress) as bar,
        ):
            for member in tar:
                # The data filter refuses members that would land outside the folder (`..`), links
                # pointing out of it and device files, and makes absolute names relative. Every member
                # is checked, taken or not: an archive holding one such entry is hostile.
                member = tarfile.data_filter(member, str(images))
                wnid = _wnid_of(member, archive.splits)
                if wnid is None:
                    continue
                dest = images / wnid / PurePosixPath(member.name).name
                dest.parent.mkdir(exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has data
                try:
                    with source, dest.open("xb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                except FileExistsError as error:
                    raise DownloadError(
                        f"{archive.name}: {member.name} has the same WNID and file name as an image already "
                        "taken from another archive or split; the sources overlap."
                    ) from error
                counts[wnid] = counts.get(wnid, 0) + 1
                bar.update()
            # tar stops at its end marker; reading gzip to its end makes it check the CRC of everything.
            while stream.read(CHUNK):
                pass
    except tarfile.FilterError as error:
        raise DownloadError(f"{archive.url}: refused, it holds an unsafe member: {error}") from error
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DownloadError(
            f"{archive.url}: the archive is corrupt ({error}). Nothing was cached."
        ) from error
    if not counts:
        splits = ", ".join(archive.splits)
        raise DownloadError(f"{archive.url}: no images under <top>/{{{splits}}}/<wnid>/ in the archive")
    return dict(sorted(counts.items()))


def _wnid_of(member: tarfile.TarInfo, splits: Sequence[str]) -> str | None:
    """The WNID of an image member at `<top>/<split>/<wnid>/<file>` in a chosen split, else None."""
    parts = PurePosixPath(member.name).parts
    if not member.isfile() or len(parts) != 4 or parts[1] not in splits or parts[3].startswith("."):
        return None
    return parts[2] if WNID_RE.fullmatch(parts[2]) else None
