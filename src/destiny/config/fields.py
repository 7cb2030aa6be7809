"""How one JSON key maps to one dataclass field: its spelling, aliases, the layer kinds that
accept it, its documentation, and the function that checks and converts its value.

``key(...)`` builds a ``dataclasses.field`` carrying that in its metadata, so the schema in
``schema.py`` is the one source of truth for the loader, the writer and the JSON reference.
Value parsers take ``(value, at)``, where ``at`` is a ``Place`` (file, JSON path, layer) used
in error messages, and return the Python value or raise ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from destiny.config.enums import LayerKind
from destiny.errors import ConfigError, ConfigWarning

ALL_KINDS = frozenset(LayerKind)
INPUT = frozenset({LayerKind.INPUT})
HIDDEN = frozenset({LayerKind.HIDDEN})
OUTPUT = frozenset({LayerKind.OUTPUT})
TARGET = frozenset({LayerKind.TARGET})


@dataclass(frozen=True)
class Place:
    """Where a value sits: the file, the JSON path (``Layers[1].N``) and the layer's name."""

    source: str
    path: str = ""
    layer: str | None = None

    def child(self, key: str | int) -> "Place":
        if isinstance(key, int):
            return Place(self.source, f"{self.path}[{key}]", self.layer)
        return Place(self.source, f"{self.path}.{key}" if self.path else key, self.layer)

    def in_layer(self, name: str) -> "Place":
        return Place(self.source, self.path, name)

    def __str__(self) -> str:
        where = self.path or "(top level)"
        if self.layer is not None:
            where += f" (layer '{self.layer}')"
        return f"{self.source}: {where}"

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self}: {message}")

    def warn(self, message: str) -> None:
        warnings.warn(f"{self}: {message}", ConfigWarning, stacklevel=4)


def describe(value: Any) -> str:
    """A short rendering of a JSON value for 'got ...' in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, (dict, list)) or hasattr(value, "pairs"):
        return "an object" if not isinstance(value, list) else "a list"
    return repr(value)


# ---------------------------------------------------------------------------------------------
# Value parsers


def boolean(value: Any, at: Place) -> bool:
    if not isinstance(value, bool):
        raise at.error(f"must be true or false; got {describe(value)}")
    return value


def string(value: Any, at: Place) -> str:
    if not isinstance(value, str):
        raise at.error(f"must be a string; got {describe(value)}")
    return _storable(value, at)


def name(value: Any, at: Place) -> str:
    if not isinstance(value, str) or not value.strip():
        raise at.error(f"must be a non-empty string; got {describe(value)}")
    return _storable(value, at)


def _storable(text: str, at: Place) -> str:
    """``text`` if a network file can hold it: its names are NetCDF text attributes, which end
    at a NUL and are UTF-8 (a lone surrogate, which JSON's \\uD800 escapes can make, is not)."""
    if "\x00" in text:
        raise at.error(f"{describe(text)} holds a NUL character (\\u0000), which a network file cannot store "
                       "(its text ends there); remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise at.error(f"{describe(text)} holds the lone surrogate \\u{ord(text[exc.start]):04X}, which is not "
                       "UTF-8 text and cannot be stored in a network file; remove it or write the whole "
                       "character (a surrogate pair)") from None
    return text


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> Callable[[Any, Place], float]:
    """A finite number within [lo, hi] (ends open where asked)."""

    def parse(value: Any, at: Place) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise at.error(f"must be a finite number{_range_text(lo, hi, lo_open, hi_open)}; "
                           f"got {describe(value)}")
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            raise at.error(f"must be a number{_range_text(lo, hi, lo_open, hi_open)}; got {value!r}")
        return float(value)

    return parse


def _range_text(lo, hi, lo_open, hi_open) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return ""


def positive_int(value: Any, at: Place) -> int:
    if not _is_int(value) or value < 1:
        raise at.error(f"must be a positive integer; got {describe(value)}{_why_not_int(value)}")
    return int(value)


# The largest integer a JSON number stands for exactly in every reader (2^53, a double's): past
# it 1e300 or 9007199254740993.0 is not the integer it looks like, and no count is that large.
MAX_JSON_INT = 2**53


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= MAX_JSON_INT
    return isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) <= MAX_JSON_INT


def _why_not_int(value: Any) -> str:
    """Why a number that reads as an integer is refused, for the message ('' otherwise)."""
    integral = isinstance(value, int) and not isinstance(value, bool) or \
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if integral and abs(value) > MAX_JSON_INT:
        return " (larger than 2^53: no count is that large, and JSON readers do not hold such integers exactly)"
    return ""


def enum_of(cls, deprecated: dict[str, Any] | None = None, *, note: dict[Any, str] | None = None):
    """A member of ``cls`` by any accepted spelling; ``deprecated`` spellings load with a warning."""
    deprecated = {k.lower(): v for k, v in (deprecated or {}).items()}

    def parse(value: Any, at: Place):
        if not isinstance(value, str):
            raise at.error(f"must be one of {_choices(cls)}; got {describe(value)}")
        try:
            member = cls.parse(value)
        except KeyError:
            key = value.strip().lower()
            if key not in deprecated:
                raise at.error(f"unknown value {value!r}; must be one of {_choices(cls)}") from None
            member = deprecated[key]
            at.warn(f"{value!r} is what DSSTNE's docs write, but its parser rejects it; "
                    f"write {member.json!r}")
        if note and member in note:
            at.warn(note[member])
        return member

    return parse


def _choices(cls) -> str:
    names = [n for n in cls.spellings() if n != "None"]
    return ", ".join(names[:-1]) + " or " + names[-1]


def names(value: Any, at: Place) -> tuple[str, ...]:
    """A layer name or a list of them."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise at.error(f"must be a layer name or a non-empty list of layer names; got {describe(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise at.child(i).error(f"must be a layer name (a non-empty string); got {describe(item)}")
        _storable(item, at.child(i))
    return tuple(value)


def unit_dims(value: Any, at: Place):
    """``N``: a positive integer, a list of 1–4 positive integers, or "auto"."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if _is_int(value) and value >= 1:
        return int(value)
    if isinstance(value, list) and 1 <= len(value) <= 4 and all(_is_int(v) and v >= 1 for v in value):
        return tuple(int(v) for v in value)
    raise at.error('must be a positive integer, a list of 1 to 4 positive integers, or "auto"; '
                   f"got {describe(value) if not isinstance(value, list) else value}{_why_not_int(value)}")


def kernel_dims(value: Any, at: Place) -> tuple[int, ...]:
    """``Kernel`` / ``KernelStride``: a positive integer or a list of 1–3 of them."""
    if _is_int(value) and value >= 1:
        return (int(value),)
    if isinstance(value, list) and 1 <= len(value) <= 3 and all(_is_int(v) and v >= 1 for v in value):
        return tuple(int(v) for v in value)
    raise at.error("must be a positive integer or a list of 1 to 3 positive integers; "
                   f"got {describe(value) if not isinstance(value, list) else value}{_why_not_int(value)}")


def comment(value: Any, at: Place) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    if not isinstance(value, str):
        raise at.error(f"must be a string or a list of strings; got {describe(value)}")
    return value


# ---------------------------------------------------------------------------------------------
# The field factory


def key(
    json: str,
    doc: str,
    *,
    parse: Callable[[Any, Place], Any] | None = None,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    aliases: tuple[str, ...] = (),
    deprecated: tuple[str, ...] = (),
    kinds: frozenset = ALL_KINDS,
    always: bool = False,
) -> Any:
    """A dataclass field read from JSON key ``json``.

    aliases: other spellings DSSTNE accepts. deprecated: spellings DSSTNE's docs use but its
    parser rejects; they load with a ConfigWarning. kinds: the layer kinds that accept the key
    (layer fields only). always: write the key even when it holds the default.
    """
    meta = {
        "json": json,
        "doc": doc,
        "parse": parse,
        "aliases": aliases,
        "deprecated": deprecated,
        "kinds": kinds,
        "always": always,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def json_fields(cls) -> list[dataclasses.Field]:
    """The fields of ``cls`` that come from JSON keys, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "json" in f.metadata]


def nested(cls) -> Callable[[Any, Place], Any]:
    """A JSON object read into dataclass ``cls`` (its keys case-insensitive, unknown ones fatal)."""

    def parse(value: Any, at: Place):
        from destiny.config.loader import parse_object

        return parse_object(value, cls, at)

    return parse


def nested_list(cls) -> Callable[[Any, Place], Any]:
    """One JSON object or a list of them, read into a tuple of ``cls``."""

    def parse(value: Any, at: Place):
        from destiny.config.loader import parse_object

        if isinstance(value, list):
            if not value:
                raise at.error("must be an object or a non-empty list of objects; got an empty list")
            return tuple(parse_object(v, cls, at.child(i)) for i, v in enumerate(value))
        return (parse_object(value, cls, at),)

    return parse
