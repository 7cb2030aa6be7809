"""What a network file can hold, checked when the network is built: a run must not be lost at
its end because the file it trained for cannot be written.

DSSTNE's layout (``io.network_layout``) keeps each layer dimension as a 32-bit unsigned
attribute and names as text attributes (UTF-8, ending at a NUL); Destiny stores the seed as a
64-bit signed one; NetCDF-4 (HDF5) numbers an object's attributes with 16 bits, and the
65,535th global attribute cannot be created (measured with netCDF 4.10 / HDF5 2.2), which
bounds the number of layers and weight matrices (about 30 attributes a layer, 10 a matrix).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from destiny.config import NetworkConfig
from destiny.config.shapes import WeightSpec
from destiny.errors import ConfigError, UsageError

UINT32_MAX = 2**32 - 1  # DSSTNE's Nx, Ny, Nz, Nw, kernel sizes and strides
SEED_RANGE = (-2**63, 2**63)  # the seed's attribute: int64
MAX_ATTRIBUTES = 65_534  # global attributes a NetCDF-4 file can hold
OTHER_ATTRIBUTES = 128  # besides DSSTNE's: Destiny's config copy, checksums, a checkpoint's info (about 30)


def seed_error(seed) -> str | None:
    """Why ``seed`` cannot be stored in a network file, or None."""
    if isinstance(seed, bool) or not isinstance(seed, int) and not hasattr(seed, "__index__"):
        return f"the seed must be an integer; got {seed!r}"
    if not SEED_RANGE[0] <= int(seed) < SEED_RANGE[1]:
        return (f"the seed {int(seed)} cannot be stored in a network file, which keeps it as a 64-bit signed "
                "integer (-2^63 to 2^63 - 1); give --seed (seed=) a smaller integer")
    return None


def check_seed(seed) -> None:
    """UsageError when ``seed`` cannot be stored in a network file (``seed_error``)."""
    error = seed_error(seed)
    if error:
        raise UsageError(error)


def check_storable(config: NetworkConfig, dims: Mapping[str, tuple[int, ...]], specs: Sequence[WeightSpec],
                   seed, source: str = "<config>") -> None:
    """UsageError or ConfigError, naming the layer and the fix, when a network file could not
    hold this network: its seed, a dimension past 2^32 − 1, a name with a NUL or a lone
    surrogate, or more global attributes than NetCDF-4 can hold."""
    from destiny.io.network_layout import encode_network

    check_seed(seed)
    for i, layer in enumerate(config.layers):
        units = dims.get(layer.name) or ()
        big = [d for d in units if d > UINT32_MAX]
        if big:
            raise ConfigError(f"{source}: Layers[{i}].N (layer '{layer.name}'): {big[0]:,} units along one axis "
                              f"cannot be stored in a network file, which keeps each dimension as a 32-bit unsigned "
                              f"integer (at most {UINT32_MAX:,}); make the layer smaller")
    try:
        attrs = encode_network(config, dict(dims), list(specs))
    except (OverflowError, ValueError) as exc:  # a kernel or stride past 32 bits
        raise ConfigError(f"{source}: the network cannot be stored in a network file ({exc}); make its layers, "
                          "kernels and strides smaller") from None
    for key, value in attrs.items():
        if isinstance(value, str) and _text_error(value):
            raise ConfigError(f"{source}: '{key}' is {value!r}, which {_text_error(value)}; rename it")
    count = len(attrs) + OTHER_ATTRIBUTES + sum(layer.batch_norm for layer in config.layers)  # + bn_calls.<i>
    if count > MAX_ATTRIBUTES:
        per_layer = (count - OTHER_ATTRIBUTES) / max(1, len(config.layers))
        raise ConfigError(f"{source}: a network file of {len(config.layers):,} layers and {len(specs):,} weight "
                          f"matrices needs about {count:,} attributes, more than the {MAX_ATTRIBUTES:,} a NetCDF-4 "
                          f"file can hold; use at most about {int((MAX_ATTRIBUTES - OTHER_ATTRIBUTES) / per_layer):,} "
                          "layers")


def _text_error(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character, where a network file's text ends"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate, which is not UTF-8 text"
    return None
