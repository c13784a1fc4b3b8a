"""Typed dataclass configs: JSON beside each run, and CLI flags that mirror the fields.

One dataclass describes a command; `add_config_arguments` turns its fields into `--kebab-case`
flags (help text from the field's `help` metadata), `config_from_args` builds it back, and
`config_to_dict`/`config_from_dict` round-trip it through JSON with type checks, so a run's
`config.json` is the whole truth about how it was made.

A job that trains runs (the benchmark, the demo) carries a base `TrainConfig` as a `nested`
field instead of re-declaring its fields: the base's fields become the job's flags too, with
the job's own defaults, and the job fills in what differs per run with `dataclasses.replace`.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from galaxalign.errors import GalaxAlignError
from galaxalign.io import read_json

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def option(default, help: str, **extra):
    """A dataclass field with a default and the help text its CLI flag shows.

    `choices=` limits the values; `nargs=` takes a list (`list[X]` fields); `positional=True`
    makes the flag a positional argument.
    """
    return dataclasses.field(default=default, metadata={"help": help, **extra})


def required(help: str, **extra):
    """A dataclass field without a default: a required flag (or positional argument)."""
    return dataclasses.field(metadata={"help": help, **extra})


def nested(factory: Callable[[], Any], help: str, skip: tuple[str, ...] = ()):
    """A field holding another config (a job's base `TrainConfig`), its flags mirrored flat.

    `skip` names the nested fields the job sets itself per run; they get no flag.
    """
    return dataclasses.field(default_factory=factory, metadata={"help": help, "nested": True, "skip": skip})


def _is_nested(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("nested"))


def _nested_default(f: dataclasses.Field) -> Any:
    """A `nested` field's own instance, from the default_factory that `nested` always sets."""
    factory = f.default_factory
    assert callable(factory)
    return factory()


def _base_type(annotation) -> tuple[type, bool]:
    """(underlying type, optional?) for annotations like `int`, `str | None`, `Optional[float]`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls,
    skip: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    defaults: Any = None,
) -> None:
    """Add one flag per dataclass field; defaults come from the dataclass (or the `defaults` instance).

    Fields without a default become required flags, except those named in `optional`.
    A `nested` field adds the nested config's flags, defaulting to the field's own instance.
    """
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if _is_nested(f):
            add_config_arguments(parser, hints[f.name], skip=f.metadata["skip"], defaults=_nested_default(f))
            continue
        kind, _ = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:
            default = f.default if f.default is not dataclasses.MISSING else None
        is_required = (
            defaults is None
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in optional
        )
        if f.metadata.get("positional"):
            choices = f.metadata.get("choices")
            parser.add_argument(
                f.name,
                type=_item_type(hints[f.name]),
                nargs=f.metadata.get("nargs"),
                choices=choices,
                metavar=None if choices else f.metadata.get("metavar", f.name.upper()),
                help=help_text,
            )
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        if kind is bool:
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
            continue
        choices = f.metadata.get("choices")
        nargs = f.metadata.get("nargs")  # a list flag: `--inputs a.h5 b.h5`
        parser.add_argument(
            flag,
            dest=f.name,
            type=_item_type(hints[f.name]) if nargs else kind,
            nargs=nargs,
            default=default,
            required=is_required,
            choices=choices,
            metavar=f.metadata.get("metavar", f.name.upper()) if choices is None else None,
            help=f"{help_text} (default: {default})"
            if not is_required and f.metadata.get("show_default", True)
            else help_text,
        )


def _item_type(annotation) -> type:
    """The element type of `list[X]` (positional lists), else the type itself."""
    kind, _ = _base_type(annotation)
    args = typing.get_args(kind)
    return args[0] if typing.get_origin(kind) is list and args else kind


def config_from_args(cls: type[T], args: argparse.Namespace, **overrides) -> T:
    """The config whose flags `add_config_arguments` added; nested configs start from their default."""
    values = {}
    for f in dataclasses.fields(cls):
        if _is_nested(f):
            base = _nested_default(f)
            mirrored = {
                g.name: getattr(args, g.name)
                for g in dataclasses.fields(base)
                if g.name not in f.metadata["skip"] and hasattr(args, g.name)
            }
            values[f.name] = dataclasses.replace(base, **mirrored)
        elif hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
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
    for old, (new, renamed) in getattr(cls, "RENAMED", {}).items():  # a field renamed since the file was written
        if old in data and new not in data:
            data = {**data, new: renamed.get(data[old], data[old])}
            del data[old]
    unknown = sorted(set(data) - names)
    if unknown:
        raise GalaxAlignError(f"{source}: unknown field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        kind, optional = _base_type(hints[name])
        if value is None and optional:
            values[name] = None
            continue
        if dataclasses.is_dataclass(kind):
            values[name] = config_from_dict(kind, value, source=f"{source}: field {name}")
            continue
        if typing.get_origin(kind) is list:
            if not isinstance(value, list):
                raise GalaxAlignError(f"{source}: field {name}: expected a list, got {value!r}")
            values[name] = value
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
