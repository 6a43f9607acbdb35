"""Typed settings from YAML: a small loader that fills frozen dataclasses and
names the file and key path of whatever is wrong.

A dataclass field may carry metadata:
  {"regex": True}            the string must compile as a regular expression
  {"check": fn}              fn(value) returns an error message or None
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import reprlib
import socket
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


# Parts of an error message, in characters: together well under 1 KB, whatever
# the file holds (a key of a megabyte, a value grown by YAML aliases).
_MAX_SOURCE = 200
_MAX_KEY = 160
_MAX_MESSAGE = 600


def one_line(text: str, limit: int, keep_end: bool = False) -> str:
    """text on one line (control and other unprintable characters escaped) and
    at most about limit characters, cut in the middle of what is left out."""
    cut = len(text) > limit
    if cut:
        text = text[-limit:] if keep_end else text[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    if cut:
        return "..." + text[-limit:] if keep_end else text[:limit] + "..."
    return text


_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlevel = 2
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 4


def shown(value: Any) -> str:
    """A value as an error message quotes it: repr, bounded in size and depth
    (never the whole of what aliases may have multiplied)."""
    return one_line(_repr.repr(value), 100)


class ConfigError(Exception):
    """A configuration mistake: names the file, key path and what was wrong,
    on one line of bounded length."""

    def __init__(self, source: str, key: str, message: str) -> None:
        source = one_line(source, _MAX_SOURCE, keep_end=True)  # the file name is at the end
        key = one_line(key, _MAX_KEY)
        message = one_line(message, _MAX_MESSAGE)
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


def _convert(value: Any, tp: Any, source: str, key: str, base: Any = None) -> Any:
    """value as type tp; base is what a section (a dataclass) given in part
    starts from (see section_default)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(source, key, f"must be one of {', '.join(map(repr, allowed))}, got {shown(value)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message is the clearest
            return _convert(value, options[0], source, key, base)
        for arg in options:
            try:
                return _convert(value, arg, source, key, base)
            except ConfigError:
                continue
        raise ConfigError(source, key, f"expected {_type_name(tp)}, got {_describe(value)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(source, key, f"expected a mapping, got {_describe(value)}")
        return load_dataclass(tp, value, source, key, base if isinstance(base, tp) else None)
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
                raise ConfigError(source, key, f"keys must be strings, got {shown(k)}")
            out[k] = _convert(v, vtp, source, f"{key}.{k}")
        return out
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, f"expected an integer, got {_describe(value)}")
        _check_magnitude(value, source, key)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, f"expected a number, got {_describe(value)}")
        _check_magnitude(value, source, key)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, key, f"expected a string, got {_describe(value)}")
        if "\0" in value:  # no path, name or pattern holds one; os calls raise on it
            raise ConfigError(source, key, "must not contain a NUL character")
        return value
    raise ConfigError(source, key, f"unsupported setting type {tp!r}")


# Whatever a field's own check says, no number setting is used beyond these:
# integers fit 64 bits and floats are finite (NaN and inf make every
# comparison and every timeout call misbehave).
_MAX_INT = 2**63 - 1


def _check_magnitude(value: int | float, source: str, key: str) -> None:
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise ConfigError(source, key, f"number out of range: {shown(value)}")
    elif not math.isfinite(value):
        raise ConfigError(source, key, f"must be a finite number, got {value!r}")


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {shown(value)}"


def section_default(f: dataclasses.Field[Any], base: Any = None) -> Any:
    """The merge rule, for every section of every settings file: a key left
    out keeps its default, and the default of a key inside a section is that
    section's own default, not its class's. `exporters: {gpu: {min_interval:
    2}}` keeps the gpu exporter's `listen: ":9400"` (ExportersConfig.gpu's
    default), not ExporterConfig's ":9100". base is the enclosing section's
    default, when it has one."""
    if base is not None:
        return getattr(base, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def load_dataclass(cls: type[T], data: Mapping[str, Any], source: str, prefix: str = "", base: T | None = None) -> T:
    """Build dataclass cls from a mapping, over base (else the class
    defaults): keys left out keep base's values (section_default). Unknown
    keys and wrong types raise ConfigError naming source and the dotted key
    path."""
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
        converted = _convert(value, hints[key], source, path, section_default(f, base))
        if f.metadata.get("regex") and isinstance(converted, str):
            try:
                re.compile(converted)
            except re.error as e:
                raise ConfigError(source, path, f"invalid regular expression {shown(converted)}: {e}") from None
        check: Callable[[Any], str | None] | None = f.metadata.get("check")
        if check is not None:
            problem = check(converted)
            if problem:
                raise ConfigError(source, path, problem)
        kwargs[key] = converted
    try:
        if base is not None:
            return dataclasses.replace(base, **kwargs)  # type: ignore[type-var]
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(source, prefix or "(top level)", str(e)) from None


def split_listen(value: str) -> tuple[str, int]:
    """HOST:PORT as Go's net.Listen takes it: ':9100', '0.0.0.0:9100',
    'localhost:9100', '[::1]:9100' (IPv6 in brackets). ValueError says why not."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise ValueError(f"listen address must look like HOST:PORT or :PORT, got {shown(value)}")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {shown(port_text)}")
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else None
        try:
            if inner is None:
                raise ValueError
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise ValueError(f"not an IPv6 address in brackets: {shown(host)}") from None
        return inner, int(port_text)
    if ":" in host:
        raise ValueError(f"an IPv6 address must be in brackets, as [::1]:9100, got {shown(value)}")
    return host, int(port_text)


def check_listen(value: Any) -> str | None:
    """A listen address that parses and whose host resolves (names are looked
    up now, so that a typo fails the config check rather than the bind)."""
    if not isinstance(value, str):
        return f"listen address must look like HOST:PORT or :PORT, got {shown(value)}"
    try:
        host, port = split_listen(value)
    except ValueError as e:
        return str(e)
    if host:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (OSError, UnicodeError) as e:
            return f"cannot resolve host {shown(host)}: {getattr(e, 'strerror', None) or e}"
    return None


def check_range(low: float, high: float, *, low_open: bool = False, unit: str = "") -> Callable[[Any], str | None]:
    """A check that a number lies in [low, high] (or (low, high] with low_open):
    every timeout, interval and size has an upper bound that the code can use."""
    suffix = f" ({unit})" if unit else ""

    def check(value: Any) -> str | None:
        if value is None:
            return None
        above = value > low if low_open else value >= low
        if above and value <= high and math.isfinite(value):
            return None
        limits = f"more than {low:g} and at most {high:g}" if low_open else f"from {low:g} to {high:g}"
        return f"must be {limits}{suffix}, got {shown(value)}"

    return check


# Bounds shared by the settings: long enough for any sane use, short enough
# that time arithmetic and the threading timeouts never overflow.
MAX_TIMEOUT = 600.0  # one call, command or collection: ten minutes
MAX_INTERVAL = 86_400.0  # between two runs of something: a day


def check_timeout(value: Any) -> str | None:
    return check_range(0, MAX_TIMEOUT, low_open=True, unit="seconds")(value)


def check_interval(value: Any) -> str | None:
    return check_range(0, MAX_INTERVAL, low_open=True, unit="seconds")(value)
