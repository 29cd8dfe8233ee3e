"""Command-line flags made from a pydantic-settings model, so that each setting is named once.

A field `batch_size` of a model with `env_prefix="UNITSCOPE_"` is the flag `--batch-size` and the
variable `UNITSCOPE_BATCH_SIZE`; its description is the flag's help. The flag wins over the variable.
Shared by the worker's and the server's command lines, so it imports nothing heavy (like schema.py).
"""

from __future__ import annotations

import argparse
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


def user_cache() -> Path:
    """The user's unitscope cache folder ($XDG_CACHE_HOME/unitscope, else ~/.cache/unitscope): the worker's
    downloads, the server's thumbnails, and so one of the server's default image roots."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unitscope"


class SettingsError(ValueError):
    """A setting with a value that cannot be used; the message names the flag or the variable."""


@dataclass(frozen=True)
class Flag:
    """How a field is spelled on the command line when not as `--field-name VALUE` (Annotated metadata)."""

    name: str | None = None  # e.g. "--category" for the field `categories`
    metavar: str | None = None
    nargs: str | None = None  # "+" for `--layers A B`
    repeatable: bool = False  # `--category X --category Y`


def flag_name(name: str, field: FieldInfo) -> str:
    """The command-line spelling of a field."""
    spec = _flag_spec(field)
    return spec.name or "--" + name.replace("_", "-")


def _env_name(model: type[BaseSettings], name: str) -> str:
    """The environment variable of a field."""
    return f"{model.model_config.get('env_prefix', '')}{name}".upper()


def add_flags(parser: argparse.ArgumentParser, model: type[BaseSettings]) -> None:
    """Add one flag per field of `model`, in field order; each help ends with its variable's name."""
    for name, field in model.model_fields.items():
        spec = _flag_spec(field)
        # argparse formats help with %: a literal one in a description must be doubled.
        help_text = f"{(field.description or '').replace('%', '%%')} [{_env_name(model, name)}]".strip()
        options: dict[str, Any] = {"dest": name, "help": help_text, "default": None}
        if field.annotation is bool:
            options["action"] = "store_true"
        else:
            # Values reach the model as text, so pydantic is the one place that checks and converts them.
            options["metavar"] = spec.metavar
            options["nargs"] = spec.nargs
            options["action"] = "append" if spec.repeatable else "store"
            if typing.get_origin(field.annotation) is Literal:
                options["choices"] = typing.get_args(field.annotation)
        parser.add_argument(flag_name(name, field), **options)


def from_flags(model: type[S], args: argparse.Namespace) -> S:
    """The settings: flags given in `args`, else UNITSCOPE_* variables, else defaults.

    A bad value raises SettingsError with one line naming where it came from, flag or variable.
    """
    given = {name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None}
    try:
        return model(**given)
    except ValidationError as exc:
        raise SettingsError(_describe(model, exc, given)) from None


def _describe(model: type[BaseSettings], exc: ValidationError, given: dict[str, Any]) -> str:
    """One line for a validation error, naming each bad value's flag (if given) or variable."""
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0])  # every check is on one field
        flag = flag_name(name, model.model_fields[name])
        if error["type"] == "missing":  # neither given: name both ways to give it
            problems.append(f"{flag} (or {_env_name(model, name)}) is required")
            continue
        source = flag if name in given else _env_name(model, name)
        message = error["msg"][:1].lower() + error["msg"][1:]
        problems.append(f"{source}: {message}, got {error['input']!r}")
    return "; ".join(problems)


def _flag_spec(field: FieldInfo) -> Flag:
    return next((item for item in field.metadata if isinstance(item, Flag)), Flag())
