"""Frozen dataclasses to and from JSON-ready values: the one codec events and commands share.

Decoding is strict about types (an `int` field refuses a string or a bool) because commands
arrive over HTTP from other programs, and lenient about extra keys, because a newer writer may
add fields with defaults without breaking older readers (docs/EVENTS.md, versioning rule).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from engine.errors import EngineError

T = TypeVar("T")


class WireError(EngineError):
    """A JSON document does not describe a known event or command of this version."""


def to_plain(value: Any) -> Any:
    """Dataclasses to dicts, enums to their values, tuples to lists; other values unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def from_plain(cls: type[T], data: Any) -> T:
    """Build `cls` from a `to_plain` dict; unknown keys are ignored, missing ones default."""
    if not isinstance(data, Mapping):
        raise WireError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.init and f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{cls.__name__}.{f.name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise WireError(f"{cls.__name__}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _convert_union(typing.get_args(hint), value, where)
    if origin is tuple:
        return _convert_tuple(typing.get_args(hint), value, where)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise WireError(f"{where}: expected an object")
        _, item = typing.get_args(hint)
        return {str(k): _convert(item, v, where) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_plain(hint, value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise WireError(f"{where}: unknown value {value!r}") from None
    return _convert_scalar(hint, value, where)


def _convert_union(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise WireError(f"{where}: must not be null")
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(arg, value, where)
        except WireError as exc:
            errors.append(str(exc))
    raise WireError("; ".join(errors))


def _convert_tuple(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise WireError(f"{where}: expected a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], item, where) for item in value)
    if len(args) != len(value):
        raise WireError(f"{where}: expected {len(args)} items")
    return tuple(_convert(a, item, where) for a, item in zip(args, value, strict=True))


def _convert_scalar(hint: Any, value: Any, where: str) -> Any:
    # bool is an int in Python; JSON true must not become 1 and 1 must not become true.
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:
        raise WireError(f"{where}: unsupported field type {hint!r}")
    if not ok:
        raise WireError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    return value
