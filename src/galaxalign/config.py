"""Typed dataclass configs: JSON beside each run, and CLI flags that mirror the fields.

One dataclass describes a job; `add_config_arguments` turns its fields into `--kebab-case`
flags (help text from the field's `help` metadata), `config_from_args` builds it back, and
`config_to_dict`/`config_from_dict` round-trip it through JSON with type checks, so a run's
`config.json` is the whole truth about how it was made.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from galaxalign.errors import GalaxAlignError
from galaxalign.io import read_json

T = TypeVar("T")


def option(default, help: str, **extra):
    """A dataclass field with a default and the help text its CLI flag shows."""
    return dataclasses.field(default=default, metadata={"help": help, **extra})


def _base_type(annotation) -> tuple[type, bool]:
    """(underlying type, optional?) for annotations like `int`, `str | None`, `Optional[float]`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def add_config_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> None:
    """Add one flag per dataclass field; defaults come from the dataclass itself.

    Fields without a default become required flags, except those named in `optional`.
    """
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, _ = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in optional
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        choices = f.metadata.get("choices")
        parser.add_argument(
            flag,
            dest=f.name,
            type=kind,
            default=default,
            required=required,
            choices=choices,
            metavar=f.name.upper() if choices is None else None,
            help=f"{help_text} (default: {default})" if not required else help_text,
        )


def config_from_args(cls: type[T], args: argparse.Namespace, **overrides) -> T:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)


def config_to_dict(config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(cls: type[T], data: dict[str, Any], source: str = "<config>") -> T:
    """Rebuild a config, rejecting unknown fields and wrong types with a message naming both."""
    if not isinstance(data, dict):
        raise GalaxAlignError(f"{source}: expected a JSON object")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise GalaxAlignError(f"{source}: unknown field(s) {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        kind, optional = _base_type(hints[name])
        if value is None and optional:
            values[name] = None
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise GalaxAlignError(f"{source}: field {name}: expected {kind.__name__}, got {value!r}")
        values[name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise GalaxAlignError(f"{source}: {exc}") from None


def load_config(cls: type[T], path: str | Path) -> T:
    return config_from_dict(cls, read_json(path, "JSON config"), source=str(path))
