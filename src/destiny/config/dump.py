"""``NetworkConfig`` → DSSTNE JSON. The output loads back to an equal config (round trip) and
uses only spellings DSSTNE's own parser accepts (the ``Comment`` extension aside)."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from typing import Any

from destiny.config import fields as f
from destiny.config.schema import LayerConfig, NetworkConfig
from destiny.io.atomic import atomic_open


def config_to_json(config: NetworkConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict with DSSTNE's key spellings; defaults are left out
    except the keys that make a description readable (Kind, Name, N, Source, ...)."""
    document = _object(config, kind=None)
    document["Layers"] = [_object(layer, kind=layer.kind) for layer in config.layers]
    return document


def dumps_config(config: NetworkConfig, indent: int = 4) -> str:
    return json.dumps(config_to_json(config), indent=indent) + "\n"


def save_config(config: NetworkConfig, path: str | os.PathLike) -> None:
    """Write the config as JSON, atomically."""
    with atomic_open(path, "w") as stream:
        stream.write(dumps_config(config))


def _object(obj: Any, kind) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in f.json_fields(type(obj)):
        meta = field.metadata
        if field.name == "layers" or (kind is not None and kind not in meta["kinds"]):
            continue
        value = getattr(obj, field.name)
        if value is None or value == () or (not meta["always"] and value == _default(field)):
            continue
        if field.name in ("sources", "skips") and len(value) == 1:
            value = value[0]  # "Source": "Hidden1" reads better than a one-element list
        out[meta["json"]] = _value(value)
    return out


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.json
    if dataclasses.is_dataclass(value):
        return {key: item for key, item in _full_object(value).items()}
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    return value


def _full_object(obj: Any) -> dict[str, Any]:
    """Every key of a nested object, except Destiny extensions at their default (DSSTNE's
    parser would reject them; ``schema._extension``)."""
    return {fl.metadata["json"]: _value(getattr(obj, fl.name)) for fl in f.json_fields(type(obj))
            if not (fl.metadata.get("extension") and getattr(obj, fl.name) == _default(fl))}


__all__ = ["config_to_json", "dumps_config", "save_config", "LayerConfig"]
