"""Typed settings from YAML: a small loader that fills frozen dataclasses and
names the file and key path of whatever is wrong.

A dataclass field may carry metadata:
  {"regex": True}            the string must compile as a regular expression
  {"check": fn}              fn(value) returns an error message or None
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration mistake: names the file, key path and what was wrong."""

    def __init__(self, source: str, key: str, message: str) -> None:
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.key = key
        self.message = message


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (tuple, list):
        return "list"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(source, key, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message is the clearest
            return _convert(value, options[0], source, key)
        for arg in options:
            try:
                return _convert(value, arg, source, key)
            except ConfigError:
                continue
        raise ConfigError(source, key, f"expected {_type_name(tp)}, got {_describe(value)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(source, key, f"expected a mapping, got {_describe(value)}")
        return load_dataclass(tp, value, source, key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, key, f"expected a list, got {_describe(value)}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(source, key, f"expected a mapping, got {_describe(value)}")
        _, vtp = get_args(tp) or (Any, Any)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(source, key, f"keys must be strings, got {k!r}")
            out[k] = _convert(v, vtp, source, f"{key}.{k}")
        return out
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, f"expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, f"expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, key, f"expected a string, got {_describe(value)}")
        return value
    raise ConfigError(source, key, f"unsupported setting type {tp!r}")


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {value!r}"


def load_dataclass(cls: type[T], data: Mapping[str, Any], source: str, prefix: str = "") -> T:
    """Build dataclass cls from a mapping; unknown keys and wrong types raise
    ConfigError naming source and the dotted key path."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        path = f"{prefix}.{key}" if prefix else key
        f = fields.get(key)
        if f is None:
            known = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(source, path, f"unknown key (known keys here: {known})")
        converted = _convert(value, hints[key], source, path)
        if f.metadata.get("regex") and isinstance(converted, str):
            try:
                re.compile(converted)
            except re.error as e:
                raise ConfigError(source, path, f"invalid regular expression {converted!r}: {e}") from None
        check: Callable[[Any], str | None] | None = f.metadata.get("check")
        if check is not None:
            problem = check(converted)
            if problem:
                raise ConfigError(source, path, problem)
        kwargs[key] = converted
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(source, prefix or "(top level)", str(e)) from None


def check_listen(value: Any) -> str | None:
    """A listen address: ':9100', '0.0.0.0:9100', '127.0.0.1:9100', '[::]:9100'."""
    if not isinstance(value, str) or ":" not in value:
        return f"listen address must look like HOST:PORT or :PORT, got {value!r}"
    port_text = value.rsplit(":", 1)[1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        return f"port must be a number from 0 to 65535, got {port_text!r}"
    return None


def check_positive(value: Any) -> str | None:
    if value is None or (value > 0 and math.isfinite(value)):
        return None
    return f"must be a finite number greater than 0, got {value!r}"


def check_non_negative(value: Any) -> str | None:
    if value is None or (value >= 0 and math.isfinite(value)):
        return None
    return f"must be a finite number, 0 or more, got {value!r}"
