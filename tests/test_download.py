"""The default-image download against real archives served over loopback: layout, caching, bad downloads."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from worker.download import (
    OFFICIAL_BASE_URL,
    Archive,
    DownloadError,
    default_archives,
    ensure_default_images,
)

# Real photographs from scikit-image, filed under real ImageNet WNIDs.
PHOTOS = {
    "chelsea": skdata.chelsea,
    "coffee": skdata.coffee,
    "astronaut": skdata.astronaut,
    "rocket": skdata.rocket,
}


def jpeg(photo: str, quality: int = 85) -> bytes:
    """A real photograph encoded as JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(PHOTOS[photo]()).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def tgz(files: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """A gzip'd tar of `files` (name -> bytes) and `links` (name -> (link type, target)), with folders."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        folders = sorted({str(Path(name).parent) for name in files} - {"."})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(payload), 0o644
            tar.addfile(info, io.BytesIO(payload))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buffer.getvalue()


# A small Imagewoof-like release (two dog breeds) and an Imagenette-like one (one non-dog class),
# laid out as fast.ai ships them: <top>/{train,val}/<wnid>/<file>, plus a CSV at the top.
WOOF_FILES = {
    "woof/val/n02086240/ILSVRC2012_val_00000907.JPEG": jpeg("chelsea"),
    "woof/val/n02086240/n02086240_1059.JPEG": jpeg("coffee"),
    "woof/val/n02111889/ILSVRC2012_val_00001234.JPEG": jpeg("astronaut"),
    "woof/train/n02086240/n02086240_7.JPEG": jpeg("rocket"),
    "woof/noisy_imagewoof.csv": b"path,noisy_labels_0\n",
}
NETTE_FILES = {
    "nette/val/n03888257/ILSVRC2012_val_00004000.JPEG": jpeg("rocket", quality=70),
    "nette/train/n03888257/n03888257_1.JPEG": jpeg("astronaut", quality=70),
}


@dataclass
class Loopback:
    """A threaded HTTP server on 127.0.0.1 that serves `files` and counts the requests it answers."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    truncate: set[str] = field(default_factory=set)  # announce the full length, send half, hang up
    base_url: str = ""

    def archive(
        self, name: str, payload: bytes, *, pin: bool = True, splits: tuple[str, ...] = ("val",)
    ) -> Archive:
        """Publish `payload` as /<name>.tgz and describe it, pinned to its size and sha256 unless told not."""
        self.files[f"/{name}.tgz"] = payload
        size, sha256 = (len(payload), hashlib.sha256(payload).hexdigest()) if pin else (None, None)
        return Archive(name, f"{self.base_url}{name}.tgz", size=size, sha256=sha256, splits=splits)


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[Loopback]:
    """Serve archives from 127.0.0.1 on an ephemeral port for the duration of one test."""
    for proxy in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # a proxy would carry loopback requests off the machine
    state = Loopback()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            payload = state.files.get(self.path)
            if payload is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            cut = len(payload) // 2 if self.path in state.truncate else len(payload)
            self.wfile.write(payload[:cut])
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def cache_entries(cache: Path) -> list[str]:
    """Everything in the cache folder but its lock file."""
    return sorted(p.name for p in cache.iterdir() if p.name != ".lock") if cache.exists() else []


def test_merges_the_val_splits_into_one_imagefolder_by_wnid(loopback: Loopback, tmp_path: Path) -> None:
    sources = [loopback.archive("woof", tgz(WOOF_FILES)), loopback.archive("nette", tgz(NETTE_FILES))]
    root = ensure_default_images(tmp_path / "cache", sources=sources, progress=False)

    found = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    expected = {
        f"{Path(name).parts[2]}/{Path(name).name}": payload
        for name, payload in {**WOOF_FILES, **NETTE_FILES}.items()
        if "/val/" in name
    }
    assert found == expected  # val images only, byte for byte; no train images, no CSV
    assert sorted(p.name for p in root.iterdir()) == ["n02086240", "n02111889", "n03888257"]
    with Image.open(root / "n02111889" / "ILSVRC2012_val_00001234.JPEG") as image:
        assert np.asarray(image).shape == skdata.astronaut().shape

    manifest = json.loads((root.parent / "manifest.json").read_text())
    assert [a["name"] for a in manifest["archives"]] == ["woof", "nette"]
    assert manifest["archives"][0]["images"] == {"n02086240": 2, "n02111889": 1}
    assert manifest["archives"][1]["sha256"] == hashlib.sha256(loopback.files["/nette.tgz"]).hexdigest()
    assert cache_entries(tmp_path / "cache") == [root.parent.name]  # no archive or scratch folder left


def test_train_split_is_taken_when_asked(loopback: Loopback, tmp_path: Path) -> None:
    sources = [loopback.archive("woof", tgz(WOOF_FILES), splits=("train", "val"))]
    root = ensure_default_images(tmp_path / "cache", sources=sources, progress=False)
    assert sorted(p.name for p in (root / "n02086240").iterdir()) == [
        "ILSVRC2012_val_00000907.JPEG",
        "n02086240_1059.JPEG",
        "n02086240_7.JPEG",
    ]


def test_second_call_uses_the_cache_without_a_request(loopback: Loopback, tmp_path: Path) -> None:
    sources = [loopback.archive("woof", tgz(WOOF_FILES)), loopback.archive("nette", tgz(NETTE_FILES))]
    first = ensure_default_images(tmp_path / "cache", sources=sources, progress=False)
    assert sorted(loopback.requests) == ["/nette.tgz", "/woof.tgz"]

    second = ensure_default_images(tmp_path / "cache", sources=sources, progress=False)
    assert second == first
    assert len(loopback.requests) == 2

    # Another set of archives is another cache entry, not a stale hit.
    other = [loopback.archive("nette", tgz(NETTE_FILES))]
    third = ensure_default_images(tmp_path / "cache", sources=other, progress=False)
    assert third != first and len(loopback.requests) == 3


def test_truncated_download_is_refused_and_leaves_no_cache(loopback: Loopback, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    sources = [
        loopback.archive("woof", tgz(WOOF_FILES), pin=False),
        loopback.archive("nette", tgz(NETTE_FILES), pin=False),
    ]
    loopback.truncate.add("/nette.tgz")
    with pytest.raises(DownloadError, match="cut short") as error:
        ensure_default_images(cache, sources=sources, progress=False)
    assert "UNITSCOPE_IMAGES" in str(error.value)
    assert cache_entries(cache) == []  # the first archive, already unpacked, went with the scratch folder

    loopback.truncate.clear()  # the network recovers: the same call now completes
    root = ensure_default_images(cache, sources=sources, progress=False)
    assert (root / "n03888257" / "ILSVRC2012_val_00004000.JPEG").is_file()


def test_download_not_matching_the_published_sha256_is_refused(loopback: Loopback, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    archive = loopback.archive("woof", tgz(WOOF_FILES))
    payload = bytearray(loopback.files["/woof.tgz"])
    payload[len(payload) // 2] ^= 0xFF  # same length, one byte flipped
    loopback.files["/woof.tgz"] = bytes(payload)
    with pytest.raises(DownloadError, match="does not match the published"):
        ensure_default_images(cache, sources=[archive], progress=False)
    assert cache_entries(cache) == []


def test_corrupt_archive_without_a_published_digest_is_refused(loopback: Loopback, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    good = loopback.archive("nette", tgz(NETTE_FILES), pin=False)
    payload = bytearray(tgz(WOOF_FILES))
    payload[len(payload) // 2 : len(payload) // 2 + 64] = bytes(64)  # gzip's CRC or inflate must catch it
    bad = loopback.archive("woof", bytes(payload), pin=False)
    with pytest.raises(DownloadError, match="the archive is corrupt"):
        ensure_default_images(cache, sources=[good, bad], progress=False)
    assert cache_entries(cache) == []


@pytest.mark.parametrize(
    "payload",
    [
        tgz({**WOOF_FILES, "woof/val/n02086240/../../../../escaped.JPEG": b"x"}),
        tgz(WOOF_FILES, {"woof/val/n02086240/abs.JPEG": (tarfile.SYMTYPE, "/etc/passwd")}),
        tgz(WOOF_FILES, {"woof/val/n02086240/up.JPEG": (tarfile.SYMTYPE, "../../../../../etc/passwd")}),
        tgz(WOOF_FILES, {"woof/val/n02086240/hard.JPEG": (tarfile.LNKTYPE, "../escaped.JPEG")}),
    ],
    ids=["dot-dot", "symlink-absolute", "symlink-up", "hardlink-up"],
)
def test_archive_with_an_escaping_member_is_refused(
    loopback: Loopback, tmp_path: Path, payload: bytes
) -> None:
    cache = tmp_path / "deep" / "cache"
    archive = loopback.archive("woof", payload)
    with pytest.raises(DownloadError, match="unsafe member"):
        ensure_default_images(cache, sources=[archive], progress=False)
    assert cache_entries(cache) == []
    assert not list(tmp_path.rglob("escaped.JPEG"))


def test_absolute_member_names_stay_inside_the_cache(loopback: Loopback, tmp_path: Path) -> None:
    outside = tmp_path / "outside.JPEG"
    archive = loopback.archive("woof", tgz({**WOOF_FILES, str(outside): jpeg("coffee")}))
    root = ensure_default_images(tmp_path / "cache", sources=[archive], progress=False)
    assert not outside.exists()  # the data filter made the name relative; the layout check then ignored it
    assert sorted(p.name for p in root.iterdir()) == ["n02086240", "n02111889"]


def test_unreachable_server_tells_how_to_work_offline(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sources = default_archives(f"http://127.0.0.1:{port}/mirror")
    with pytest.raises(DownloadError) as error:
        ensure_default_images(tmp_path / "cache", sources=sources, progress=False, timeout=5)
    message = str(error.value)
    assert f"http://127.0.0.1:{port}/mirror/imagewoof2-160.tgz" in message
    assert "UNITSCOPE_IMAGES" in message and "--images" in message
    assert cache_entries(tmp_path / "cache") == []


def test_missing_file_names_the_http_status(loopback: Loopback, tmp_path: Path) -> None:
    sources = default_archives(loopback.base_url)  # the official names, which this server does not have
    with pytest.raises(DownloadError, match="HTTP 404"):
        ensure_default_images(tmp_path / "cache", sources=sources, progress=False)
    assert loopback.requests == ["/imagewoof2-160.tgz"]


def test_official_sources_are_the_pinned_fastai_releases() -> None:
    woof, nette = default_archives()
    assert (woof.url, nette.url) == (
        OFFICIAL_BASE_URL + "imagewoof2-160.tgz",
        OFFICIAL_BASE_URL + "imagenette2-160.tgz",
    )
    assert all(len(a.sha256 or "") == 64 and a.size and a.splits == ("val",) for a in (woof, nette))
