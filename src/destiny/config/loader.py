"""DSSTNE JSON network descriptions → ``NetworkConfig``.

Follows DSSTNE's parser (reference/dsstne.md §1.1–1.5): keys and enum values are
case-insensitive, layer names are not; ``//`` and ``/* */`` comments are tolerated (jsoncpp
does); unknown keys are fatal; a layer's Kind defaults by position, its Name to
``<Kind><index>`` and its Source to the previous layer. Better than DSSTNE: every error names
the file and the JSON path and says how to fix it, and spellings DSSTNE's own docs use but its
parser rejects load with a ``ConfigWarning``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from typing import Any

from destiny.config import fields as f
from destiny.config.enums import LayerKind, LayerType
from destiny.config.fields import Place, describe
from destiny.config.schema import LayerConfig, NetworkConfig
from destiny.errors import ConfigError
from destiny.io.inputs import binary_kind, open_input
from destiny.io.limits import MAX_JSON_BYTES, json_too_big, json_too_deep


class _Pairs:
    """A JSON object as its (key, value) pairs, so duplicate keys can be reported."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]):
        self.pairs = pairs


def load_config(path: str | os.PathLike) -> NetworkConfig:
    """Read and validate the DSSTNE JSON network description at ``path``."""
    path = os.fspath(path)
    with open_input(path) as stream:
        raw = stream.read(MAX_JSON_BYTES + 1)  # a hostile file cannot make us read gigabytes
    too_big = json_too_big(os.path.getsize(path) if len(raw) > MAX_JSON_BYTES else len(raw))
    if too_big:
        raise ConfigError(f"{path}: {too_big}; is it the right file?")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        kind = binary_kind(raw)
        if kind:
            raise ConfigError(f"{path}: a {kind}, not a network's JSON description; give the JSON config "
                              "(the file read by destiny train -c)") from None
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8 JSON") from None
    return loads_config(text, source=path)


def loads_config(text: str, source: str = "<string>") -> NetworkConfig:
    """Parse and validate a DSSTNE JSON network description given as text."""
    document = _parse_json(text, source)
    return config_from_json(document, source)


def config_from_json(document: Any, source: str = "<object>") -> NetworkConfig:
    """Build and validate a config from parsed JSON (dicts and lists)."""
    from destiny.config.validate import validate

    at = Place(source)
    config = _parse_network(document, at)
    validate(config, source)
    return config


# ---------------------------------------------------------------------------------------------
# JSON text


def _parse_json(text: str, source: str) -> Any:
    too_big = json_too_big(len(text))
    if too_big:
        raise ConfigError(f"{source}: the text {too_big}")
    stripped = _strip_comments(text, source)

    def reject_constant(name: str):
        raise ConfigError(f"{source}: {name} is not a JSON number; write a finite number")

    try:
        document = json.loads(stripped, object_pairs_hook=_Pairs, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the JSON is nested too deeply") from None
    except ConfigError:
        raise
    except ValueError:  # an integer of more than 4300 digits (sys.int_info.default_max_str_digits)
        raise ConfigError(f"{source}: a number in the JSON has thousands of digits; write numbers of a "
                          "few digits") from None
    too_deep = json_too_deep(document, lambda node: [v for _, v in node.pairs] if isinstance(node, _Pairs)
                             else node if isinstance(node, list) else ())
    if too_deep:
        raise ConfigError(f"{source}: the JSON {too_deep}; a network description nests a few levels")
    return document


def _strip_comments(text: str, source: str) -> str:
    """Blank out // and /* */ comments outside strings, keeping line and column numbers."""
    if "/" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
        elif c == '"':
            in_string = True
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                line = text.count("\n", 0, i) + 1
                raise ConfigError(f"{source}: line {line}: a /* comment is never closed; add */")
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:end + 2]))
            i = end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Objects


def _spellings(cls) -> dict[str, tuple[dataclasses.Field, str, bool]]:
    """lower-cased spelling → (field, canonical spelling of what was written, deprecated?)."""
    table = {}
    for field in f.json_fields(cls):
        meta = field.metadata
        for spelling in (meta["json"], *meta["aliases"]):
            table[spelling.lower()] = (field, spelling, False)
        for spelling in meta["deprecated"]:
            table[spelling.lower()] = (field, spelling, True)
    return table


_LAYER_KEYS = {k for k in _spellings(LayerConfig)}
_NETWORK_KEYS = {k for k in _spellings(NetworkConfig)}


def _items(value: Any, at: Place, what: str) -> list[tuple[str, Any]]:
    if isinstance(value, _Pairs):
        return value.pairs
    if isinstance(value, dict):
        return list(value.items())
    raise at.error(f"must be {what}; got {describe(value)}")


def _read_keys(obj: Any, cls, at: Place, kind: LayerKind | None = None) -> dict[str, tuple[Any, Place]]:
    """The raw values of ``obj`` by field name, after the checks every key gets: known,
    allowed for this layer kind, given once. Deprecated spellings warn here."""
    table = _spellings(cls)
    found: dict[str, tuple[Any, Place]] = {}
    written: dict[str, str] = {}
    for raw_key, value in _items(obj, at, "a JSON object {...}"):
        entry = table.get(str(raw_key).lower())
        if entry is None:
            raise at.child(raw_key).error(_unknown_key_message(raw_key, table, cls))
        field, spelling, deprecated = entry
        meta = field.metadata
        where = at.child(meta["json"])
        if kind is not None and kind not in meta["kinds"]:
            allowed = " and ".join(k.json for k in LayerKind if k in meta["kinds"])
            raise where.error(f"'{meta['json']}' is not allowed on {_article(kind.json)} {kind.json} "
                              f"layer; it belongs on {allowed} layers")
        if field.name in found:
            raise at.error(f"'{meta['json']}' is given twice (as '{written[field.name]}' and "
                           f"'{raw_key}'); keep one")
        if deprecated:
            where.warn(f"'{raw_key}' is what DSSTNE's docs write, but its parser rejects it; "
                       f"write '{meta['json']}'")
        found[field.name] = (value, where)
        written[field.name] = str(raw_key)
    return found


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _unknown_key_message(raw_key: str, table, cls) -> str:
    canonical = {}
    for lower, (field, spelling, deprecated) in table.items():
        if not deprecated:
            canonical.setdefault(lower, spelling)
    close = difflib.get_close_matches(str(raw_key).lower(), list(canonical), n=1, cutoff=0.6)
    message = "unknown key"
    if close:
        return f"{message}; did you mean '{canonical[close[0]]}'?"
    lower = str(raw_key).lower()
    if cls is NetworkConfig and lower in _LAYER_KEYS:
        return f"{message} at the top level; '{raw_key}' is a layer key: put it inside a layer of Layers"
    if cls is LayerConfig and lower in _NETWORK_KEYS:
        return f"{message} in a layer; '{raw_key}' is a network key: put it at the top level"
    names = sorted({field.metadata["json"] for field, _, _ in table.values()})
    return f"{message}; valid keys are {', '.join(names)}"


def parse_object(obj: Any, cls, at: Place):
    """Read a nested JSON object (WeightInit, SparsenessPenalty, ...) into dataclass ``cls``."""
    found = _read_keys(obj, cls, at)
    values = {name: _parse_value(cls, name, raw, where) for name, (raw, where) in found.items()}
    return cls(**values)


def _parse_value(cls, field_name: str, raw: Any, where: Place) -> Any:
    field = next(fl for fl in dataclasses.fields(cls) if fl.name == field_name)
    return field.metadata["parse"](raw, where)


# ---------------------------------------------------------------------------------------------
# The network and its layers


def _parse_network(document: Any, at: Place) -> NetworkConfig:
    found = _read_keys(document, NetworkConfig, at)
    if "layers" not in found:
        raise at.error("the network has no 'Layers'; add \"Layers\": [ {input layer}, ..., {output layer} ]")
    values = {}
    for name, (raw, where) in found.items():
        if name == "layers":
            continue
        values[name] = _parse_value(NetworkConfig, name, raw, where)
    raw_layers, layers_at = found["layers"]
    if isinstance(raw_layers, (dict, _Pairs)):
        raw_layers = [raw_layers]  # DSSTNE accepts a single layer object
    if not isinstance(raw_layers, list):
        raise layers_at.error(f"must be a list of layer objects; got {describe(raw_layers)}")
    if not raw_layers:
        raise layers_at.error("is empty; a network needs at least an Input and an Output layer")
    count = len(raw_layers)
    values["layers"] = tuple(_parse_layer(raw, layers_at.child(i), i, count)
                             for i, raw in enumerate(raw_layers))
    _default_sources(values["layers"])
    return NetworkConfig(**values)


def _parse_layer(obj: Any, at: Place, index: int, count: int) -> LayerConfig:
    kind, pooling_kind = _layer_kind(obj, at, index, count)  # DSSTNE also reads Kind first
    layer_name = _layer_name(obj, at) or f"{kind.json}{index}"
    at = at.in_layer(layer_name)
    found = _read_keys(obj, LayerConfig, at, kind)
    values: dict[str, Any] = {"kind": kind, "name": layer_name}
    for name, (raw, where) in found.items():
        if name in ("kind", "name"):
            continue
        values[name] = _parse_value(LayerConfig, name, raw, where)
    if pooling_kind:
        where = at.child("Type")
        if values.setdefault("type", LayerType.POOLING) != LayerType.POOLING:
            raise where.error(f"'Kind' is \"Pooling\" but 'Type' is {values['type'].json!r}; "
                              "write \"Kind\": \"Hidden\", \"Type\": \"Pooling\"")
    return LayerConfig(**values)


def _layer_kind(obj: Any, at: Place, index: int, count: int) -> tuple[LayerKind, bool]:
    given = [value for key, value in _items(obj, at, "a layer object {...}") if str(key).lower() == "kind"]
    if not given:
        if index == 0:
            return LayerKind.INPUT, False
        return (LayerKind.OUTPUT if index == count - 1 else LayerKind.HIDDEN), False
    raw, where = given[0], at.child("Kind")
    if isinstance(raw, str) and raw.strip().lower() == "pooling":
        where.warn("DSSTNE's docs write \"Kind\": \"Pooling\", but its parser rejects it; "
                   "write \"Kind\": \"Hidden\", \"Type\": \"Pooling\"")
        return LayerKind.HIDDEN, True
    return f.enum_of(LayerKind)(raw, where), False


def _layer_name(obj: Any, at: Place) -> str | None:
    given = [value for key, value in _items(obj, at, "a layer object {...}") if str(key).lower() == "name"]
    return f.name(given[0], at.child("Name")) if given else None


def _default_sources(layers: tuple[LayerConfig, ...]) -> None:
    """A non-Input layer without Source reads from the previous layer (DSSTNE's rule)."""
    for i, layer in enumerate(layers):
        if layer.kind != LayerKind.INPUT and not layer.sources and i > 0:
            layer.sources = (layers[i - 1].name,)
