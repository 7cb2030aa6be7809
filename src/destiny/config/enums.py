"""DSSTNE's enumerations, with the integers its network files store and the JSON spellings
its parser accepts (reference/dsstne.md §1.4–1.9).

Every enum is an ``IntEnum`` whose value is DSSTNE's integer, so a network file written by
DSSTNE maps straight onto it. ``parse`` reads a JSON spelling case-insensitively; ``json``
is the spelling Destiny writes back (one DSSTNE itself accepts).
"""

from __future__ import annotations

import enum


class _DsstneEnum(enum.IntEnum):
    @classmethod
    def parse(cls, text: str) -> "_DsstneEnum":
        """The member spelled ``text`` (any case); KeyError if none."""
        return _SPELLINGS[cls][text.strip().lower()]

    @classmethod
    def spellings(cls) -> list[str]:
        """The canonical JSON spellings, for error messages."""
        return [member.json for member in cls]

    @property
    def json(self) -> str:
        return _CANONICAL[type(self)][self]

    def __str__(self) -> str:
        return self.json


class NetworkKind(_DsstneEnum):
    FEED_FORWARD = 0
    AUTO_ENCODER = 1


class LayerKind(_DsstneEnum):
    INPUT = 0
    HIDDEN = 1
    OUTPUT = 2
    TARGET = 3


class LayerType(_DsstneEnum):
    FULLY_CONNECTED = 0
    CONVOLUTIONAL = 1
    POOLING = 2


class ErrorFunction(_DsstneEnum):
    L1 = 0
    L2 = 1
    CROSS_ENTROPY = 2
    SCALED_MARGINAL_CROSS_ENTROPY = 3
    DATA_SCALED_MARGINAL_CROSS_ENTROPY = 4
    HINGE = 5
    L2_HINGE = 6
    MULTINOMIAL = 7  # Destiny extension: −Σ t·log softmax(z), targets not spread (Mult-DAE/VAE)


class Activation(_DsstneEnum):
    SIGMOID = 0
    TANH = 1
    RELU = 2
    LINEAR = 3
    SOFTPLUS = 5
    SOFTSIGN = 6
    SOFTMAX = 7
    RELU_MAX = 8
    LINEAR_MAX = 9
    ELU = 10
    LEAKY_RELU = 11
    SELU = 12


class WeightInitScheme(_DsstneEnum):
    XAVIER = 0
    CAFFE_XAVIER = 1
    GAUSSIAN = 2
    UNIFORM = 3
    UNIT_BALL = 4
    CONSTANT = 5
    SELU = 6


class PoolingFunction(_DsstneEnum):
    NONE = 0
    MAX = 1
    AVERAGE = 2
    LRN = 3
    MAXOUT = 4
    DOT_PRODUCT = 5
    COSINE = 6


class ScheduleKind(_DsstneEnum):
    """The learning-rate schedule's shape (a Destiny extension: the integers are Destiny's)."""

    CONSTANT = 0
    LINEAR = 1
    COSINE = 2
    STEP = 3


class ScheduleUnit(_DsstneEnum):
    """What a Step schedule's ``Every`` counts (a Destiny extension)."""

    UPDATES = 0
    EPOCHS = 1


# Canonical spelling first, then the other spellings DSSTNE's parser accepts.
_NAMES: dict[type, dict[_DsstneEnum, tuple[str, ...]]] = {
    NetworkKind: {
        NetworkKind.FEED_FORWARD: ("FeedForward",),
        NetworkKind.AUTO_ENCODER: ("AutoEncoder",),
    },
    LayerKind: {
        LayerKind.INPUT: ("Input",),
        LayerKind.HIDDEN: ("Hidden",),
        LayerKind.OUTPUT: ("Output",),
        LayerKind.TARGET: ("Target",),
    },
    LayerType: {
        LayerType.FULLY_CONNECTED: ("FullyConnected",),
        LayerType.CONVOLUTIONAL: ("Convolutional",),
        LayerType.POOLING: ("Pooling",),
    },
    ErrorFunction: {
        ErrorFunction.L1: ("L1",),
        ErrorFunction.L2: ("L2",),
        ErrorFunction.CROSS_ENTROPY: ("CrossEntropy", "Cross Entropy"),
        ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY: ("ScaledMarginalCrossEntropy",),
        ErrorFunction.DATA_SCALED_MARGINAL_CROSS_ENTROPY: ("DataScaledMarginalCrossEntropy",),
        ErrorFunction.HINGE: ("Hinge",),
        ErrorFunction.L2_HINGE: ("L2Hinge",),
        ErrorFunction.MULTINOMIAL: ("Multinomial", "MultinomialLogLikelihood"),
    },
    Activation: {
        Activation.SIGMOID: ("Sigmoid",),
        Activation.TANH: ("Tanh",),
        Activation.RELU: ("Relu", "RectifiedLinear"),
        Activation.LINEAR: ("Linear",),
        Activation.SOFTPLUS: ("SoftPlus",),
        Activation.SOFTSIGN: ("SoftSign",),
        Activation.SOFTMAX: ("SoftMax",),
        Activation.RELU_MAX: ("ReluMax",),
        Activation.LINEAR_MAX: ("LinearMax",),
        Activation.ELU: ("ELU", "ExponentialLinear"),
        Activation.LEAKY_RELU: ("LRelu", "LeakyRectifiedLinear"),
        Activation.SELU: ("SELU", "ScaledExponentialLinear"),
    },
    WeightInitScheme: {
        WeightInitScheme.XAVIER: ("Xavier",),
        WeightInitScheme.CAFFE_XAVIER: ("CaffeXavier",),
        WeightInitScheme.GAUSSIAN: ("Gaussian",),
        WeightInitScheme.UNIFORM: ("Uniform",),
        WeightInitScheme.UNIT_BALL: ("UnitBall",),
        WeightInitScheme.CONSTANT: ("Constant",),
        WeightInitScheme.SELU: ("SELU",),
    },
    PoolingFunction: {
        PoolingFunction.NONE: ("None",),
        PoolingFunction.MAX: ("Max",),
        PoolingFunction.AVERAGE: ("Average",),
        PoolingFunction.LRN: ("LRN", "LocalResponseNormalization"),
        PoolingFunction.MAXOUT: ("Maxout",),
        PoolingFunction.DOT_PRODUCT: ("DotProduct",),
        PoolingFunction.COSINE: ("Cosine",),
    },
    ScheduleKind: {
        ScheduleKind.CONSTANT: ("Constant",),
        ScheduleKind.LINEAR: ("Linear",),
        ScheduleKind.COSINE: ("Cosine",),
        ScheduleKind.STEP: ("Step",),
    },
    ScheduleUnit: {
        ScheduleUnit.UPDATES: ("Updates", "Steps", "Minibatches"),
        ScheduleUnit.EPOCHS: ("Epochs",),
    },
}

_CANONICAL = {cls: {m: names[0] for m, names in table.items()} for cls, table in _NAMES.items()}
_SPELLINGS = {
    cls: {name.lower(): m for m, names in table.items() for name in names}
    for cls, table in _NAMES.items()
}
# "None" is the absence of a pooling function, not something a JSON file may name.
del _SPELLINGS[PoolingFunction]["none"]
