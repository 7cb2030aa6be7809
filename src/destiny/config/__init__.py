"""DSSTNE JSON network descriptions as typed, validated dataclasses.

    >>> from destiny.config import loads_config
    >>> cfg = loads_config('{"Layers": [{"N": "auto", "DataSet": "in", "Sparse": true},'
    ...                    ' {"N": 64}, {"N": "auto", "DataSet": "out"}]}')
    >>> [(layer.name, layer.kind.json, layer.sources) for layer in cfg.layers]
    [('Input0', 'Input', ()), ('Hidden1', 'Hidden', ('Input0',)), ('Output2', 'Output', ('Hidden1',))]
"""

from destiny.config.dump import config_to_json, dumps_config, save_config
from destiny.config.enums import (
    Activation,
    ErrorFunction,
    LayerKind,
    LayerType,
    NetworkKind,
    PoolingFunction,
    WeightInitScheme,
)
from destiny.config.loader import config_from_json, load_config, loads_config
from destiny.config.schema import (
    DeltaBoost,
    Denoising,
    LayerConfig,
    LocalResponseNormalization,
    MarginalCrossEntropy,
    Maxout,
    NetworkConfig,
    SharedWeights,
    SparsenessPenalty,
    WeightInit,
)
from destiny.config.validate import validate

__all__ = [
    "Activation", "ErrorFunction", "LayerKind", "LayerType", "NetworkKind", "PoolingFunction",
    "WeightInitScheme", "DeltaBoost", "Denoising", "LayerConfig", "LocalResponseNormalization",
    "MarginalCrossEntropy", "Maxout", "NetworkConfig", "SharedWeights", "SparsenessPenalty",
    "WeightInit", "config_from_json", "config_to_json", "dumps_config", "load_config",
    "loads_config", "save_config", "validate",
]
