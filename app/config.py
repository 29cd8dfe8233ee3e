"""The server's one settings object: environment variables UNITSCOPE_*, overridden by CLI flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def _default_thumbnail_dir() -> Path:
    """Thumbnails go to the user's cache folder: the DB's folder may be a read-only volume."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unitscope" / "thumbnails"


class Settings(BaseModel):
    """Everything the server can be configured with; `create_app(settings)` takes one of these."""

    model_config = ConfigDict(frozen=True)

    db: Path = Field(Path("unitscope.duckdb"), description="the worker's DuckDB file (UNITSCOPE_DB)")
    # Loopback unless asked: the dashboard has no authentication.
    host: str = Field(LOOPBACK, description="bind address (UNITSCOPE_HOST)")
    port: int = Field(8000, ge=1, le=65535, description="bind port (UNITSCOPE_PORT)")
    thumbnail_dir: Path = Field(default_factory=_default_thumbnail_dir, description="UNITSCOPE_THUMBNAIL_DIR")
    # When the DB was written on another machine or in a container, runs.images_root may not
    # exist here; this folder then replaces it.
    images_root: Path | None = Field(None, description="UNITSCOPE_IMAGES_ROOT")
    memory_limit: str = Field("1GB", description="DuckDB memory_limit (UNITSCOPE_MEMORY_LIMIT)")
    db_threads: int = Field(2, ge=1, le=256, description="DuckDB threads (UNITSCOPE_DB_THREADS)")
    score_cache_size: int = Field(128, ge=1, description="layer score sets kept in memory (~30 KB each)")
    unit_cache_size: int = Field(1024, ge=1, description="unit pages kept in memory (~10 KB each)")
    templates_dir: Path = REPO / "templates"
    static_dir: Path = REPO / "static"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from UNITSCOPE_* variables, then explicit overrides (e.g. CLI flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = f"UNITSCOPE_{name.upper()}"
            if environ.get(key):
                values[name] = environ[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """`python -m app --db FILE [--host H] [--port P]`: flags win over UNITSCOPE_* variables."""
    parser = argparse.ArgumentParser(prog="python -m app", description="unitscope dashboard server")
    parser.add_argument("--db", type=Path, help="DuckDB file written by `python -m worker run`")
    parser.add_argument(
        "--host",
        help=f"bind address (default {LOOPBACK}; use 0.0.0.0 only to expose it on purpose: no auth)",
    )
    parser.add_argument("--port", type=int, help="bind port (default 8000)")
    parser.add_argument("--thumbnail-dir", type=Path, help="where thumbnails are cached")
    parser.add_argument("--images-root", type=Path, help="image folder, if not the run's images_root")
    parser.add_argument("--memory-limit", help="DuckDB memory limit (default 1GB)")
    args = parser.parse_args(argv)
    return Settings.from_env(environ, **vars(args))
