"""Cross-field checks of a NetworkConfig, all in one place.

Single values are checked as they are read (``fields.py``); what needs several fields or
several layers is checked here: names, sources and skips, cycles, which kinds need a DataSet,
"auto", pooling functions, shared weights, Variational layers (and the KL key without them),
and error function against output activation.
Widths and kernel sizes, which need the datasets' dimensions, are checked in ``shapes.py``.
"""

from __future__ import annotations

import difflib
import graphlib
import math
import warnings

from destiny.config.enums import Activation, ErrorFunction, LayerKind, LayerType, PoolingFunction
from destiny.config.fields import Place
from destiny.config.schema import LayerConfig, NetworkConfig
from destiny.errors import ConfigError, ConfigWarning

MIN_VERSION = 0.7


def validate(config: NetworkConfig, source: str = "<config>") -> None:
    """Raise ConfigError at the first inconsistency; warn about ignored settings."""
    top = Place(source)
    if config.version < MIN_VERSION - 1e-4:
        raise top.child("Version").error(f"is {config.version:g}; DSSTNE's format starts at "
                                         f"{MIN_VERSION} (write \"Version\": 0.9)")
    names = _check_names(config, top)
    kinds = [layer.kind for layer in config.layers]
    if LayerKind.INPUT not in kinds:
        raise top.child("Layers").error("has no Input layer; the first layer is Input by default, "
                                        "or give \"Kind\": \"Input\"")
    for i, layer in enumerate(config.layers):
        at = top.child("Layers").child(i).in_layer(layer.name)
        _check_layer(config, layer, at, names)
        _check_recipes(config, layer, at)
        _check_variational(layer, at)
    _check_kl(config, top)
    _check_acyclic(config, top)
    _check_error_function(config, top)


def _check_names(config: NetworkConfig, top: Place) -> dict[str, int]:
    names: dict[str, int] = {}
    for i, layer in enumerate(config.layers):
        if layer.name in names:
            raise top.child("Layers").child(i).child("Name").error(
                f"the layer name '{layer.name}' is already used by Layers[{names[layer.name]}]; "
                "layer names must be unique")
        names[layer.name] = i
    return names


def _unknown_layer(name: str, names: dict[str, int]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; the layers are {', '.join(names)}"
    return f"names no layer '{name}'{hint}"


def _check_layer(config: NetworkConfig, layer: LayerConfig, at: Place, names: dict[str, int]) -> None:
    kind = layer.kind
    if kind in (LayerKind.INPUT, LayerKind.OUTPUT) and layer.dataset is None:
        role = "feeds it" if kind == LayerKind.INPUT else "holds its targets"
        raise at.error(f"{_a(kind.json)} {kind.json} layer needs a 'DataSet': the name of the dataset that "
                       f"{role} (as stored in the NetCDF file)")
    if layer.is_auto and kind == LayerKind.HIDDEN:
        raise at.child("N").error('"auto" is only for Input and Output layers, which take their width '
                                  "from their DataSet; give a Hidden layer a number of units")
    if layer.is_auto and layer.dataset is None:
        raise at.child("N").error('"auto" needs a DataSet to take the width from')
    if layer.type == LayerType.POOLING:
        _check_pooling(layer, at)
    elif layer.n is None:
        raise at.error("has no 'N'; give the number of units (or \"auto\" on Input and Output layers)")
    elif layer.pooling_function is not None:
        raise at.child("Function").error(f"is only for Pooling layers; this layer is {layer.type.json}")
    if kind == LayerKind.INPUT and layer.type == LayerType.POOLING:
        raise at.child("Type").error("an Input layer cannot be a Pooling layer")
    if layer.type == LayerType.FULLY_CONNECTED and kind != LayerKind.INPUT and (
            layer.kernel is not None or layer.kernel_stride is not None):
        warnings.warn(f"{at}: Kernel and KernelStride are ignored on a FullyConnected layer",
                      ConfigWarning, stacklevel=3)
    for key, listed in (("Source", layer.sources), ("Skip", layer.skips)):
        for j, other in enumerate(listed):
            where = at.child(key).child(j) if len(listed) > 1 else at.child(key)
            if other not in names:
                raise where.error(_unknown_layer(other, names))
            if other == layer.name:
                raise where.error(f"a layer cannot be its own {key}")
    if kind != LayerKind.INPUT and not layer.sources:
        raise at.child("Source").error("the first layer has no previous layer to read from; "
                                       "make it an Input layer or give a Source")
    for src in layer.sources:
        source = config.layer(src)
        if layer.type in (LayerType.CONVOLUTIONAL, LayerType.POOLING) and _is_sparse_data(source):
            raise at.child("Source").error(
                f"{layer.type.json} layers need dense (image-like) input, but '{src}' is a sparse "
                "Input layer; put a FullyConnected layer in between or use dense data")
    _check_shared_weights(config, layer, at, names)


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _is_sparse_data(layer: LayerConfig) -> bool:
    return layer.kind == LayerKind.INPUT and layer.sparse


def _check_pooling(layer: LayerConfig, at: Place) -> None:
    if layer.pooling_function is None:
        raise at.error("a Pooling layer needs a 'Function': Max, Average, LRN, Maxout, DotProduct or Cosine")
    if layer.pooling_function in (PoolingFunction.DOT_PRODUCT, PoolingFunction.COSINE) and len(layer.sources) < 2:
        raise at.child("Source").error(
            f"{layer.pooling_function.json} pooling compares its first source with each other "
            "source, so it needs at least 2 sources")
    if layer.n is not None:
        warnings.warn(f"{at}: 'N' of a Pooling layer is ignored; its dimensions follow from its "
                      "source, Kernel and KernelStride", ConfigWarning, stacklevel=3)


def _check_shared_weights(config: NetworkConfig, layer: LayerConfig, at: Place, names: dict[str, int]) -> None:
    for j, shared in enumerate(layer.shared_weights):
        where = at.child("SharedWeights")
        if len(layer.shared_weights) > 1:
            where = where.child(j)
        if shared.input_layer not in layer.sources:
            raise where.child("InputLayer").error(
                f"'{shared.input_layer}' is not a Source of this layer; InputLayer names the source "
                f"whose weights are shared (Sources: {', '.join(layer.sources)})")
        for key, other in (("SourceInputLayer", shared.source_input_layer),
                           ("SourceOutputLayer", shared.source_output_layer)):
            if other not in names:
                raise where.child(key).error(_unknown_layer(other, names))
        owner = config.layer(shared.source_output_layer)
        if shared.source_input_layer not in owner.sources:
            raise where.error(
                f"there is no weight matrix {shared.source_input_layer} → {shared.source_output_layer}: "
                f"'{shared.source_input_layer}' is not a Source of '{shared.source_output_layer}'")
        if (shared.source_input_layer, shared.source_output_layer) == (shared.input_layer, layer.name):
            raise where.error("a weight matrix cannot share itself")
        if owner.shared_weights and any(s.input_layer == shared.source_input_layer for s in owner.shared_weights):
            raise where.error(f"the matrix {shared.source_input_layer} → {shared.source_output_layer} "
                              "is itself shared; share the original matrix instead")


def _check_variational(layer: LayerConfig, at: Place) -> None:
    """A Variational layer (nn/variational.py) is a FullyConnected Hidden layer whose 2N
    pre-activations are μ and log-variance: its value is a sample, so it takes no activation,
    and what would mix the 2N columns with N-wide tensors is refused."""
    if not layer.variational:
        return
    where = at.child("Variational")
    if layer.kind != LayerKind.HIDDEN:
        raise where.error(f"is only for Hidden layers; this layer is {_a(layer.kind.json)} {layer.kind.json} layer "
                          "(put the variational layer between the encoder and the decoder)")
    if layer.type != LayerType.FULLY_CONNECTED:
        raise where.error(f"is only for FullyConnected layers; this layer is {layer.type.json}")
    if layer.activation != Activation.LINEAR:
        raise at.child("Activation").error(
            f"is {layer.activation.json}, but a Variational layer's value is the sample μ + ε·exp(½·logvar) "
            "itself; write \"Activation\": \"Linear\" (put a nonlinearity on the next layer)")
    for key, present in (("Skip", layer.skips), ("BatchNormalization", layer.batch_norm),
                         ("SharedWeights", layer.shared_weights)):
        if present:
            raise at.child(key).error(f"cannot be used on a Variational layer (its incoming matrices give 2N "
                                      f"columns, μ and log-variance, for its N units); remove '{key}'")


def _check_kl(config: NetworkConfig, top: Place) -> None:
    if config.kl != type(config.kl)() and not any(layer.variational for layer in config.layers):
        warnings.warn(f"{top.child('KL')}: is ignored: no layer is \"Variational\": true", ConfigWarning,
                      stacklevel=3)


def _check_recipes(config: NetworkConfig, layer: LayerConfig, at: Place) -> None:
    """Normalize, ZeroDiagonal and WeightInit.FrequencyBias (Destiny extensions; nn/recipes.py,
    nn/itemitem.py): where they apply. ZeroDiagonal's widths are checked here when the JSON
    gives them, else by ``check_zero_diagonal`` once the datasets' are known."""
    if layer.normalize is not None and not layer.sparse:
        raise at.child("Normalize").error(
            "is for sparse Input layers (it scales each example's nonzeros); this Input layer is dense: "
            "add \"Sparse\": true if its dataset is sparse, or remove 'Normalize'")
    if layer.weight_init.frequency_bias:
        where = at.child("WeightInit").child("FrequencyBias")
        if layer.kind != LayerKind.OUTPUT:
            raise where.error(f"is for Output layers (it reads the target dataset's column counts); this layer "
                              f"is {_a(layer.kind.json)} {layer.kind.json} layer: use \"Bias\" here")
        if layer.activation not in _FREQUENCY_ACTIVATIONS:
            raise where.error(f"is defined for Sigmoid (log-odds), SoftMax (log-frequencies) and Linear (means) "
                              f"outputs; this layer's Activation is {layer.activation.json}: use \"Bias\"")
    if layer.weight_init.closed_form is not None:
        where = at.child("WeightInit").child("ClosedForm")
        if layer.kind != LayerKind.OUTPUT or not layer.zero_diagonal:
            raise where.error("is for ZeroDiagonal Output layers (it solves their items × items matrix); add "
                              "\"ZeroDiagonal\": true or remove 'ClosedForm'")
        if layer.activation != Activation.LINEAR or config.error_function != ErrorFunction.L2:
            raise where.error(f"solves the L2 error of a Linear output; this layer's Activation is "
                              f"{layer.activation.json} and the ErrorFunction {config.error_function.json}: use "
                              "\"Activation\": \"Linear\" with \"ErrorFunction\": \"L2\", or remove 'ClosedForm'")
    if layer.zero_diagonal:
        where = at.child("ZeroDiagonal")
        if layer.type != LayerType.FULLY_CONNECTED:
            raise where.error(f"is for FullyConnected layers (a square matrix's diagonal); this layer is "
                              f"{layer.type.json}")
        if getattr(layer, "variational", False):
            raise where.error("cannot be used on a Variational layer (its matrices give 2N columns, μ and "
                              "log-variance); put the zero-diagonal matrix on another layer")
        widths = {src: _static_units(config, config.layer(src)) for src in layer.sources}
        problem = _zero_diagonal_problem(layer, widths, _static_units(config, layer))
        if problem:
            raise where.error(problem)


_FREQUENCY_ACTIVATIONS = (Activation.SIGMOID, Activation.SOFTMAX, Activation.LINEAR)


def _static_units(config: NetworkConfig, layer: LayerConfig) -> int | None:
    """A layer's units when the JSON alone gives them (an integer or a list N of a
    FullyConnected or Input layer), else None ("auto", convolution and pooling)."""
    if layer.type != LayerType.FULLY_CONNECTED or layer.n is None or layer.is_auto:
        return None
    return layer.n if isinstance(layer.n, int) else math.prod(layer.n)


def _zero_diagonal_problem(layer: LayerConfig, widths: dict[str, int | None], own: int | None) -> str | None:
    """What is wrong with a ZeroDiagonal layer of ``own`` units whose sources have ``widths``
    (None: not known yet, which passes), or None."""
    if own is None:
        return None
    if None not in widths.values() and own not in widths.values():
        listed = ", ".join(f"'{src}' {width:,}" for src, width in widths.items())
        return (f"holds the diagonal of a square matrix at zero, but no source has this layer's width ({own:,} "
                f"units; sources: {listed}); read a layer of the same width (EASE: the Input layer of items)")
    for shared in layer.shared_weights:
        if widths.get(shared.input_layer) == own:
            return (f"the matrix from '{shared.input_layer}' is another pair's (SharedWeights), so its diagonal "
                    "is not this layer's to hold at zero; remove the sharing or 'ZeroDiagonal'")
    return None


def check_zero_diagonal(config: NetworkConfig, dims, source: str = "<config>") -> None:
    """ConfigError (Layers[i].ZeroDiagonal) when a ZeroDiagonal layer has no source of its own
    width; dims: every layer's dimensions (``shapes.resolve_shapes``; None where unknown,
    which passes)."""
    for i, layer in enumerate(config.layers):
        if not layer.zero_diagonal or dims.get(layer.name) is None:
            continue
        widths = {src: None if dims.get(src) is None else math.prod(dims[src]) for src in layer.sources}
        problem = _zero_diagonal_problem(layer, widths, math.prod(dims[layer.name]))
        if problem:
            raise Place(source, f"Layers[{i}]", layer.name).child("ZeroDiagonal").error(problem)


def _check_acyclic(config: NetworkConfig, top: Place) -> None:
    try:
        config.topological_order()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]  # each node feeds the one before it; first == last
        raise top.child("Layers").error(
            "the layers' Sources and Skips form a cycle: " + " → ".join(reversed(cycle))
            + "; a network must be acyclic") from None


def _check_error_function(config: NetworkConfig, top: Place) -> None:
    if config.error_function != ErrorFunction.DATA_SCALED_MARGINAL_CROSS_ENTROPY:
        return
    for i, layer in enumerate(config.layers):
        if layer.kind == LayerKind.OUTPUT and layer.activation == Activation.SOFTMAX:
            raise top.child("Layers").child(i).child("Activation").in_layer(layer.name).error(
                "DataScaledMarginalCrossEntropy is not defined for SoftMax outputs; use Sigmoid, "
                "or ScaledMarginalCrossEntropy / CrossEntropy with SoftMax")
