"""The worker's one settings object: CLI flags, else UNITSCOPE_* environment variables, else defaults.

Each field is named once: `python -m worker run` builds its flags from these fields (unitscope.flags).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, create_model, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from unitscope import claim_rules, schema
from unitscope.flags import Flag, user_cache
from worker.model_names import MODEL_NAMES

# `--weights random`: the architecture's own random init under `--seed`, the untrained control.
RANDOM_WEIGHTS = "random"



class WorkerSettings(BaseSettings):
    """Everything a run needs to know, before anything is loaded."""

    # Empty variables count as unset, as `UNITSCOPE_X= cmd` means "no value" in a shell.
    model_config = SettingsConfigDict(env_prefix="UNITSCOPE_", env_ignore_empty=True, frozen=True)

    images: Path | None = Field(None, description="ImageFolder root, <root>/<wnid>/<image> (default: download "
                                "Imagewoof + Imagenette into the cache)")  # fmt: skip
    db: Path = Field(Path("unitscope.duckdb"), description="the DuckDB file: `run` publishes to it, the other jobs "
                     "read it (default unitscope.duckdb)")
    model: Literal[("auto", *MODEL_NAMES)] = Field(  # type: ignore[valid-type]
        "auto", description="default auto: for a Caffe weights folder squeezenet1_1 if its deploy.prototxt names "
        "SqueezeNet, else bvlc-googlenet; googlenet otherwise"
    )
    weights: str | None = Field(None, description="a Caffe weights folder (bvlc-googlenet, squeezenet1_1), a "
                                "torchvision .pth state dict, or 'random' (untrained, see --seed) (default: "
                                "torchvision's published weights of the model)")  # fmt: skip
    seed: int | None = Field(None, ge=0, description="seed of the random init of --weights random (default 0)")
    # Empty: all of the model's layers (the model decides which those are).
    layers: Annotated[tuple[str, ...], NoDecode, Flag(nargs="+", metavar="LAYER")] = Field(
        (), description="layers to record (default: all layers of the model)"
    )
    # Categories beside the built-ins (worker.categories.BUILTIN_SYNSETS), which every run records.
    categories: Annotated[tuple[str, ...], NoDecode, Flag(name="--category", metavar="NAME=WNID|FILE",
                                                          repeatable=True)] = Field(
        (), description="add a category: every ImageNet-1k class under a WordNet synset (bird=n01503061) or "
        "a WNID list file (NAME=FILE); repeatable; built in: dog, bird, feline, reptile, vehicle, musical-instrument"
    )
    bases: int = Field(2, ge=0, le=16, description="seeded random orthonormal bases of a layer's channels whose "
                       "directions are recorded beside the units, for the random-basis control (default 2; 0: none)")
    basis_layers: Annotated[tuple[str, ...], NoDecode, Flag(nargs="+", metavar="LAYER")] = Field(
        (), description="layers whose random bases are recorded (default: the claims page's default layer, the "
        "deepest at <= 2/3 of the network's depth, e.g. mixed4c; 'all': every layer recorded, about 1.9x the "
        "CPU time of the forward pass for GoogLeNet's 12)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="default auto: cuda when torch sees a GPU")
    decode: Literal["pil", "gpu"] = Field("pil", description="pil: PIL decodes and resizes in the loader "
                                          "processes (exact, default); gpu: torchvision.io.decode_jpeg and the "
                                          "resize on the run's device (faster on a GPU; slightly different "
                                          "numbers, see docs/deployment.md)")  # fmt: skip
    batch_size: int | None = Field(None, ge=1, description="default 16 on a CPU, 256 on a GPU")
    limit: int | None = Field(None, ge=1, description="use at most N files, spread evenly over the sorted list")
    workers: int | None = Field(None, ge=0, description="decoding processes (default min(2, CPUs))")
    cache: Path = Field(default_factory=user_cache, description="download cache (default ~/.cache/unitscope)")
    memory_limit: str | None = Field(None, description="DuckDB memory limit for writing, e.g. 6GB; past it sorts "
                                     "spill to disk (default DuckDB's, 80% of RAM)")  # fmt: skip
    dist_timeout: float = Field(1800, gt=0, description="under torchrun: seconds a rank waits for the others "
                                "(rank 0's start, the slowest rank's share) before the run fails "
                                "(default 1800)")  # fmt: skip
    restart: bool = Field(False, description="discard an unfinished run of this DB; recompute even if an "
                          "identical run is published")  # fmt: skip
    debug: bool = Field(False, description="show tracebacks")

    @field_validator("layers", "basis_layers", mode="before")
    @classmethod
    def _split_layers(cls, value: object) -> object:
        """Names separated by spaces or commas, alike in UNITSCOPE_LAYERS and in each --layers value (a,b or a, b)."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            return value
        names = tuple(name for item in items
                      for name in (item.replace(",", " ").split() if isinstance(item, str) else [item]))
        if not names and any(isinstance(item, str) and item.strip() for item in items):
            raise ValueError(f"no layer name in {' '.join(map(str, items))!r}")  # "," is not "every layer"
        return names

    @field_validator("seed")
    @classmethod
    def _seed_needs_random_weights(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("weights") != RANDOM_WEIGHTS:
            raise ValueError(f"a seed only applies to --weights {RANDOM_WEIGHTS}")
        return value

    @field_validator("categories", mode="before")
    @classmethod
    def _split_categories(cls, value: object) -> object:
        """UNITSCOPE_CATEGORIES: NAME=WNID or NAME=FILE pairs separated by whitespace."""
        return tuple(value.split()) if isinstance(value, str) else value

    def batch_size_for(self, device_type: str) -> int:
        """The batch size to use: the one set, else what measured fastest on that kind of device.

        On a 2-core CPU, batches of 16 ran mixed4c 1.1-1.2x faster than 64 (bench/worker_throughput.py:
        the activations of a small batch stay in cache); a GPU wants large batches.
        """
        if self.batch_size is not None:
            return self.batch_size
        return 256 if device_type == "cuda" else 16

    def init_seed(self) -> int | None:
        """The seed of the random init for --weights random (default 0); None for real weights."""
        if self.weights != RANDOM_WEIGHTS:
            return None
        return 0 if self.seed is None else self.seed

    def resolved_basis_layers(self, layers: Sequence[str], network: Sequence[str] | None = None) -> tuple[str, ...]:
        """The layers (of those run, in depth order) whose random bases are recorded; none without bases. network: the
        model's layers, by which the default (the claims' layer) is placed when only some are run."""
        if not self.bases:
            return ()
        if not self.basis_layers:
            return (claim_rules.default_layer(list(layers), network)[0],)
        if self.basis_layers == ("all",):
            return tuple(layers)
        unknown = [name for name in self.basis_layers if name not in layers]
        if unknown:
            raise ValueError(f"--basis-layers {' '.join(unknown)}: not among the layers run ({', '.join(layers)})")
        return tuple(name for name in layers if name in self.basis_layers)

    def resolved_model(self) -> str:
        """The model to run: `auto` picks, for a Caffe weights folder, squeezenet1_1 when its deploy.prototxt names
        SqueezeNet and bvlc-googlenet otherwise; googlenet for anything else."""
        if self.model != "auto":
            return self.model
        folder = Path(self.weights).expanduser() if self.weights is not None else None
        if folder is None or not folder.is_dir():
            return "googlenet"
        return "squeezenet1_1" if _caffe_net_name(folder) == "SqueezeNet" else "bvlc-googlenet"


def _caffe_net_name(folder: Path) -> str | None:
    """The `name:` a Caffe folder's deploy.prototxt gives its network (its first line), if it has one."""
    try:
        with (folder / "deploy.prototxt").open(encoding="utf-8", errors="replace") as prototxt:
            found = re.match(r'\s*name:\s*"([^"]*)"', prototxt.readline())
    except OSError:
        return None
    return found[1] if found else None


class _DeriveBase(BaseSettings):
    model_config = WorkerSettings.model_config


# `python -m worker derive` needs only these of a run's settings; the fields are WorkerSettings' own.
DeriveSettings = create_model(
    "DeriveSettings", __base__=_DeriveBase, __doc__="What `python -m worker derive` needs: the DB and how to write it.",
    **{name: (f.annotation, f) for name, f in WorkerSettings.model_fields.items() if name in ("db", "memory_limit", "debug")},
)  # type: ignore[call-overload]


class _ExportBase(_DeriveBase):
    out: Path = Field(description="folder to write the Parquet files to (must not exist yet)")


# `python -m worker export`: the DB, and where its tables go.
ExportSettings = create_model(
    "ExportSettings", __base__=_ExportBase, __doc__="What `python -m worker export` needs: the DB and a new folder.",
    **{name: (f.annotation, f) for name, f in WorkerSettings.model_fields.items() if name in ("db", "debug")},
)  # type: ignore[call-overload]


class InterventionSettings(BaseSettings):
    """What both interventions (python -m worker visualize, ablate) need: a published run, a layer, its units."""

    model_config = WorkerSettings.model_config

    db: Path = WorkerSettings.model_fields["db"]
    run: int | None = Field(None, ge=1, description="the run to use (default: the latest complete run of --db)")
    layer: str | None = Field(None, description="layer (default: the claims page's, the deepest at <= 2/3 of the "
                              "network's depth, e.g. mixed4c)")  # fmt: skip
    category: str = Field(schema.DEFAULT_CATEGORY, description="category whose selective units are used "
                          "(default dog)")  # fmt: skip
    si_stat: Literal["mean", "max", "min"] = Field(schema.DEFAULT_SI_STAT, description="stat of the SI that "
                                                   "selects them (default max, the pages' default)")  # fmt: skip
    threshold: float = Field(claim_rules.FIGURE_SI, ge=0.0, le=1.0, description="SI at or above which a unit is "
                             "selective (default 0.7, the pages' default)")  # fmt: skip
    seed: int = Field(0, ge=0, description="seed of the random draws (control units, images) (default 0)")
    weights: str | None = Field(None, description="the run's weights where they are now, if they have moved "
                                "(default: where the run read them; checked against its sha256)")  # fmt: skip
    device: Literal["auto", "cpu", "cuda"] = WorkerSettings.model_fields["device"]
    batch_size: int | None = Field(None, ge=1, description="images per batch (default 16 on a CPU, 256 on a GPU)")
    memory_limit: str | None = WorkerSettings.model_fields["memory_limit"]
    debug: bool = WorkerSettings.model_fields["debug"]

    def batch_size_for(self, device_type: str) -> int:
        """The batch size to use: the one set, else WorkerSettings' default for the device."""
        return self.batch_size or (256 if device_type == "cuda" else 16)


class VisualizeSettings(InterventionSettings):
    """`python -m worker visualize`: feature visualisation of a layer's units (worker.feature_vis)."""

    units: str = Field("selective", description="selective: the layer's selective units and as many others drawn "
                       "at random (seeded) as the control; all: every unit; or a list, e.g. 447,505 "
                       "(default selective)")  # fmt: skip
    steps: int = Field(512, ge=1, le=100_000, description="optimisation steps (default 512, Lucid's)")
    size: int = Field(128, ge=32, le=1024, description="image side in pixels (default 128, Lucid's)")
    per_direction: int = Field(2, ge=1, le=16, description="images per unit and direction, kept apart by the "
                               "diversity term (default 2)")  # fmt: skip


class AblateSettings(InterventionSettings):
    """`python -m worker ablate`: the network's accuracy with groups of a layer's units silenced (worker.ablate)."""

    groups: int = Field(20, ge=0, le=1000, description="random groups as large as the selective one: the control "
                        "(default 20)")  # fmt: skip
    units: str | None = Field(None, description="also ablate each of these units alone: all, selective, or a list "
                              "such as 447,505 (default: none on a CPU, all on a GPU)")  # fmt: skip
    limit: int | None = WorkerSettings.model_fields["limit"]
    workers: int | None = WorkerSettings.model_fields["workers"]


def parse_units(spec: str, units: int) -> list[int] | None:
    """A --units value: None for 'selective', every unit for 'all', else the listed units, checked."""
    if spec == "selective":
        return None
    if spec == "all":
        return list(range(units))
    try:
        listed = sorted({int(part) for part in spec.replace(" ", ",").split(",") if part})
    except ValueError:
        raise ValueError(f"--units {spec!r}: use selective, all, or unit numbers such as 447,505") from None
    bad = [u for u in listed if not 0 <= u < units]
    if bad or not listed:
        raise ValueError(f"--units {spec!r}: the layer has units 0 to {units - 1}")
    return listed
