"""The server's one settings object: CLI flags, else UNITSCOPE_* environment variables, else defaults.

Each field is named once: `python -m app` builds its flags from these fields (unitscope.flags).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import ByteSize, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from unitscope import schema
from unitscope.flags import Flag, add_flags, from_flags, user_cache

LOOPBACK = "127.0.0.1"
# The names a browser on this machine reaches a loopback server by; any other Host header is refused, so that a
# web page cannot reach the server through DNS rebinding.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _default_image_roots() -> tuple[Path, ...]:
    """The worker's image folder (UNITSCOPE_IMAGES, as the worker reads it) and its download cache."""
    given = os.environ.get("UNITSCOPE_IMAGES")
    return (*((Path(given),) if given else ()), user_cache())


def _half_of_memory() -> int:
    """Half of this machine's physical memory, in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def _default_thumbnail_dir() -> Path:
    """Thumbnails go to the user's cache folder: the DB's folder may be a read-only volume."""
    return user_cache() / "thumbnails"


class Settings(BaseSettings):
    """Everything the server can be configured with; `create_app(settings)` takes one of these."""

    model_config = SettingsConfigDict(env_prefix="UNITSCOPE_", env_ignore_empty=True, frozen=True)

    db: Path = Field(Path("unitscope.duckdb"), description="DuckDB file written by `python -m worker run` "
                     "(default unitscope.duckdb)")  # fmt: skip
    # Loopback unless asked: the dashboard has no authentication.
    host: str = Field(LOOPBACK, description=f"bind address (default {LOOPBACK}; use 0.0.0.0 only to expose it "
                      "on purpose: no auth)")  # fmt: skip
    port: int = Field(8000, ge=1, le=65535, description="bind port (default 8000)")
    thumbnail_dir: Path = Field(default_factory=_default_thumbnail_dir, description="where thumbnails are "
                                "cached (default ~/.cache/unitscope/thumbnails)")  # fmt: skip
    # Two settings, not two spellings of one. When the DB was written on another machine or in a container,
    # runs.images_root may not exist here: images_root names where the files are instead (a relocation, chosen by the
    # operator, so image_roots does not apply to it).
    images_root: Annotated[Path | None, Flag(metavar="DIR")] = Field(None, description="serve every run's images "
        "from DIR instead of the folder the DB records, when the files moved (e.g. a DB made in a container); "
        "--image-roots does not apply to it (default: none, the recorded folder)")  # fmt: skip
    # A DB is data, not configuration: it names the folder its images are in, and the server serves files only
    # when that folder is under one of these (or images_root replaces it).
    image_roots: Annotated[tuple[Path, ...], NoDecode, Flag(nargs="+", metavar="DIR")] = Field(
        default_factory=_default_image_roots, description="the folders a run's recorded image folder must be under "
        "for its images to be served: an allow-list, it moves nothing (default: $UNITSCOPE_IMAGES and the "
        "worker's download cache, ~/.cache/unitscope)")
    allowed_hosts: Annotated[tuple[str, ...], NoDecode, Flag(nargs="+", metavar="HOST")] = Field(
        LOOPBACK_HOSTS, description="Host header names the server answers (default: 127.0.0.1 localhost ::1; "
        "add the name others use when serving beyond loopback)")
    memory_limit: str = Field("1GB", description="DuckDB memory limit (default 1GB)")
    db_threads: int = Field(2, ge=1, le=256, description="DuckDB threads (default 2)")
    result_cache_size: int = Field(1024, ge=1, description="computed results kept in memory (layer scores, nulls, "
                                   "class profiles; ~30 KB each; default 1024)")  # fmt: skip
    # The layer page's label-permutation null (app.data.layer_tests); at least 1,000.
    null_permutations: int = Field(schema.NULL_PERMUTATIONS, ge=1000, le=100_000, description="label permutations of a layer's "
                                   "null, at least 1000 (default 1000)")  # fmt: skip
    lazy: bool = Field(False, description="serve at once and read each layer's stored tables on its first request "
                       "(default: read them before serving, and again when the worker publishes; app.warm)")
    request_threads: int = Field(4, ge=1, le=256, description="requests served at once; more wait their turn "
                                 "(default 4)")  # fmt: skip
    # Computations of parameters publication did not store (app.heavy): their own pool, so that pages that read
    # stored results never wait behind them.
    heavy_workers: int = Field(1, ge=1, le=64, description="computations over a whole layer run at once, for "
                               "parameters publication did not store (default 1)")  # fmt: skip
    heavy_queue: int = Field(8, ge=0, le=1024, description="more wait in a queue this long; past it the server "
                             "answers 503 with Retry-After (default 8)")  # fmt: skip
    heavy_timeout: float = Field(120.0, gt=0, le=86_400, description="seconds such a computation may take, its "
                                 "wait included, before it is stopped and answered 503 (default 120)")  # fmt: skip
    heavy_memory: ByteSize = Field(default_factory=_half_of_memory, description="memory the computations may "
                                   "hold together, by an estimate made before each; one that needs more is refused "
                                   "(e.g. 4GB; default half of this machine's memory)")  # fmt: skip
    null_seed: int = Field(schema.NULL_SEED, ge=0, description="seed of those permutations (default 0)")

    @field_validator("image_roots", "allowed_hosts", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(value.replace(",", " ").split()) if isinstance(value, str) else value

    def serves_images_from(self, folder: Path) -> bool:
        """Whether image files under `folder` (a run's images_root) may be served."""
        real = folder.resolve()
        return any(real.is_relative_to(root.resolve()) for root in self.image_roots)


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    """`python -m app --db FILE [--host H] [--port P] ...`: flags win over UNITSCOPE_* variables.

    Raises unitscope.flags.SettingsError, naming the flag or variable, for a bad value.
    """
    parser = argparse.ArgumentParser(prog="python -m app", description="unitscope dashboard server")
    add_flags(parser, Settings)
    return from_flags(Settings, parser.parse_args(argv))
