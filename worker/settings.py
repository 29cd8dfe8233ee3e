"""The worker's one settings object: UNITSCOPE_* environment variables, overridden by CLI flags."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_CHOICES = ("auto", "bvlc-googlenet", "googlenet")
DEVICE_CHOICES = ("auto", "cpu", "cuda")


class SettingsError(ValueError):
    """A setting with a value the worker cannot use; the message names the variable or flag."""


def _default_cache(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unitscope"


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a run needs to know, before anything is loaded."""

    images: Path | None = None  # ImageFolder root; None: download and cache the default subset
    db: Path = Path("unitscope.duckdb")
    model: str = "auto"  # auto: bvlc-googlenet for a weights folder, else googlenet
    weights: str | None = None  # BVLC folder or googlenet .pth; None: googlenet's published weights
    device: str = "auto"
    batch_size: int | None = None  # None: 16 on a CPU, 256 on a GPU (see batch_size_for)
    workers: int | None = None  # decoding processes; None: min(2, cpus)
    cache: Path = Path("~/.cache/unitscope")  # downloads (default images)
    layers: tuple[str, ...] = ()  # empty: every layer of the model
    categories: tuple[str, ...] = ()  # extra NAME=FILE categories beside the built-in dog
    limit: int | None = None  # use at most this many files, spread evenly over the sorted list
    restart: bool = False  # discard an unfinished run in the working file
    memory_limit: str | None = None  # DuckDB's memory_limit for the writes, e.g. "6GB"; None: DuckDB's 80% of RAM
    debug: bool = False  # show tracebacks for errors

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """Settings from UNITSCOPE_* variables; unset ones keep their defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"cache": _default_cache(env)}
        if env.get("UNITSCOPE_IMAGES"):
            values["images"] = Path(env["UNITSCOPE_IMAGES"])
        if env.get("UNITSCOPE_DB"):
            values["db"] = Path(env["UNITSCOPE_DB"])
        if env.get("UNITSCOPE_MODEL"):
            values["model"] = env["UNITSCOPE_MODEL"]
        if env.get("UNITSCOPE_WEIGHTS"):
            values["weights"] = env["UNITSCOPE_WEIGHTS"]
        if env.get("UNITSCOPE_DEVICE"):
            values["device"] = env["UNITSCOPE_DEVICE"]
        if env.get("UNITSCOPE_MEMORY_LIMIT"):
            values["memory_limit"] = env["UNITSCOPE_MEMORY_LIMIT"]
        if env.get("UNITSCOPE_CACHE"):
            values["cache"] = Path(env["UNITSCOPE_CACHE"])
        for key, name in (("batch_size", "UNITSCOPE_BATCH_SIZE"), ("workers", "UNITSCOPE_WORKERS"),
                          ("limit", "UNITSCOPE_LIMIT")):  # fmt: skip
            if env.get(name):
                values[key] = _parse_int(env[name], name)
        if env.get("UNITSCOPE_LAYERS"):
            values["layers"] = tuple(env["UNITSCOPE_LAYERS"].replace(",", " ").split())
        if env.get("UNITSCOPE_CATEGORIES"):
            # Several NAME=FILE pairs separated by whitespace.
            values["categories"] = tuple(env["UNITSCOPE_CATEGORIES"].split())
        if env.get("UNITSCOPE_DEBUG"):
            values["debug"] = env["UNITSCOPE_DEBUG"] not in ("0", "false", "no")
        return cls(**values).validated()

    def batch_size_for(self, device_type: str) -> int:
        """The batch size to use: the one set, else what measured fastest on that kind of device.

        On a 2-core CPU, batches of 16 ran mixed4c 1.1-1.2x faster than 64 (bench/worker_throughput.py:
        the activations of a small batch stay in cache); a GPU wants large batches.
        """
        if self.batch_size is not None:
            return self.batch_size
        return 256 if device_type == "cuda" else 16

    def override(self, **flags: Any) -> WorkerSettings:
        """A copy with every flag that was given (not None) replacing the current value."""
        given = {key: value for key, value in flags.items() if value is not None}
        return dataclasses.replace(self, **given).validated()

    def validated(self) -> WorkerSettings:
        """Check value ranges and choices; return self."""
        if self.model not in MODEL_CHOICES:
            raise SettingsError(f"unknown model {self.model!r}; choose one of {', '.join(MODEL_CHOICES)}")
        if self.device not in DEVICE_CHOICES:
            raise SettingsError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICE_CHOICES)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise SettingsError(f"batch size must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise SettingsError(f"workers must be 0 or more, got {self.workers}")
        if self.limit is not None and self.limit < 1:
            raise SettingsError(f"limit must be at least 1, got {self.limit}")
        return self

    def resolved_model(self) -> str:
        """The model to run: `auto` picks bvlc-googlenet for a weights folder, googlenet otherwise."""
        if self.model != "auto":
            return self.model
        if self.weights is not None and Path(self.weights).expanduser().is_dir():
            return "bvlc-googlenet"
        return "googlenet"


def _parse_int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {text!r}") from None
