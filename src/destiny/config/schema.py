"""The network description as typed dataclasses: DSSTNE's JSON "LDL" (reference/dsstne.md §1).

Each field names its JSON key, DSSTNE's default and its meaning (see ``fields.key``); the
loader, the writer and the generated JSON reference all read them from here. Defaults are
DSSTNE's, quirks included where they only concern defaults (ShuffleIndices true, the 0.9/0.1
margins of ScaledMarginalCrossEntropy, Sigmoid activations, Xavier initialisation).
"""

from __future__ import annotations

import graphlib
import types
from dataclasses import dataclass
from typing import Literal, Union

from destiny.config import fields as f
from destiny.config.enums import (
    Activation,
    ErrorFunction,
    LayerKind,
    LayerType,
    NetworkKind,
    PoolingFunction,
    ScheduleKind,
    ScheduleUnit,
    WeightInitScheme,
)

UnitDims = Union[int, tuple[int, ...], Literal["auto"], None]

_NOT_INPUT = frozenset({LayerKind.HIDDEN, LayerKind.OUTPUT, LayerKind.TARGET})
_WEIGHTED = frozenset({LayerKind.HIDDEN, LayerKind.OUTPUT})
_DATA = frozenset({LayerKind.INPUT, LayerKind.OUTPUT})

_IDENTITY_NOTE = "DSSTNE accepted {} but never implemented it (it acted as the identity); Destiny computes it as Linear"


def _extension(field):
    """Mark a key of a nested object (WeightInit, Denoising, ...) as a Destiny extension: the
    writer (``dump.py``) leaves it out while it holds its default, so that what Destiny writes
    for a DSSTNE network stays loadable by DSSTNE (whose parser rejects unknown keys)."""
    field.metadata = types.MappingProxyType({**field.metadata, "extension": True})
    return field


_NORMS = {"none": None, "l1": "L1", "l2": "L2"}


def _normalization(value, at: f.Place) -> str | None:
    """``Normalize``: "None", "L1" or "L2" (any case; null is "None")."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in _NORMS:
        raise at.error(f'must be "None", "L1" or "L2"; got {f.describe(value)}')
    return _NORMS[value.strip().lower()]


_normalization.value_type = '`"None"`, `"L1"` or `"L2"`'  # for the JSON reference (config/reference.py)


@dataclass
class WeightInit:
    """How a layer's incoming weights and biases are initialised (DSSTNE's ``WeightInit``)."""

    scheme: WeightInitScheme = f.key(
        "Scheme", "Distribution of the initial weights: Xavier, CaffeXavier, Gaussian, Uniform, "
        "UnitBall, Constant or SELU.", parse=f.enum_of(WeightInitScheme),
        default=WeightInitScheme.XAVIER)
    scale: float = f.key(
        "Scale", "Scale of the distribution (the standard deviation for Gaussian, the half-width "
        "for Uniform, the value for Constant).", parse=f.number(), default=1.0)
    bias: float = f.key("Bias", "Initial value of every bias.", parse=f.number(), default=0.0)
    frequency_bias: bool = _extension(f.key(
        "FrequencyBias", "A Destiny extension for Output layers: start the biases from the target "
        "dataset's column counts c (n examples, N units) instead of Bias: log((c+1)/(n−c+1)) for a "
        "Sigmoid output (the log-odds of each item), log((c+1)/(Σc+N)) for a SoftMax (its "
        "log-frequency), c/n for a Linear one (its mean); c sums the target values (1 for "
        "indicator data). Computed from the training data when training starts from a freshly "
        "initialised network; a network file or a checkpoint keeps its biases.",
        parse=f.boolean, default=False))
    closed_form: float | None = _extension(f.key(
        "ClosedForm", "A Destiny extension for ZeroDiagonal Output layers with a Linear activation "
        "and the L2 error (EASE as a network): λ ≥ 0. When training starts from a freshly "
        "initialised network, the items × items matrix B from the sparse Input layer starts at "
        "the minimum of Σ‖y − xB‖² + λ‖B‖² with diag(B) = 0 over the training examples (x as the "
        "layer reads it: Normalize and the expected Denoising applied), solved in closed form "
        "(EASE, Steck 2019; EDLAE with denoising); the layer's biases and other matrices start "
        "at zero. λ is EASE's λ (n_examples × the L2 lam of training). "
        "Memory: two dense items × items matrices for the solve.",
        parse=f.number(0.0), default=None))


@dataclass
class SharedWeights:
    """Reuse of another layer pair's weight matrix (tied weights, e.g. a tied autoencoder)."""

    input_layer: str = f.key(
        "InputLayer", "The source of this layer whose incoming weights are shared.",
        parse=f.name, default="")
    source_input_layer: str = f.key(
        "SourceInputLayer", "Input side of the weight matrix that is reused.", parse=f.name, default="")
    source_output_layer: str = f.key(
        "SourceOutputLayer", "Output side of the weight matrix that is reused.", parse=f.name, default="")
    transposed: bool = f.key(
        "Transposed", "Use the transpose of the reused matrix (a tied decoder).",
        parse=f.boolean, default=False, deprecated=("Transpose",))


@dataclass
class SparsenessPenalty:
    """KL-divergence penalty that pushes the mean activation of sparse hidden units towards p."""

    p: float = f.key("p", "Target mean activation of a sparse hidden unit.",
                     parse=f.number(0.0, 1.0), default=0.0)
    beta: float = f.key("beta", "Weight of the penalty; 0 turns it off.",
                        parse=f.number(0.0), default=0.0)
@dataclass
class LearningRateSchedule:
    """How the learning rate α changes over a run (a Destiny extension; the run's number of
    updates U is epochs × minibatches an epoch, known when training starts). With s the updates
    done so far and W = WarmupSteps: α_s = α·w(s)·f(s) / (1 + Decay·s), where the warmup w(s) =
    (s+1)/W for s < W (else 1) and, with p = min(1, max(0, s − W) / max(1, U − W)), f is 1
    (Constant: DSSTNE's own schedule), 1 − (1 − r)·p (Linear), r + (1 − r)·½(1 + cos πp)
    (Cosine), r = FinalRatio, or Gamma^⌊max(0, s − W) / Every⌋ (Step). AdaDelta has no
    learning rate: only its WeightDecay follows the schedule."""

    kind: ScheduleKind = f.key(
        "Kind", "Constant, Linear, Cosine or Step.", parse=f.enum_of(ScheduleKind),
        default=ScheduleKind.CONSTANT)
    warmup_steps: float = f.key(
        "WarmupSteps", "Updates over which α rises linearly to its full value (α·(s+1)/W); 0: none.",
        parse=f.number(0.0), default=0.0)
    final_ratio: float = f.key(
        "FinalRatio", "Linear and Cosine: the fraction of α the schedule ends at.",
        parse=f.number(0.0), default=0.0)
    every: float = f.key(
        "Every", "Step: α is multiplied by Gamma after every this many Units (after the warmup).",
        parse=f.number(0.0, lo_open=True), default=1.0)
    unit: ScheduleUnit = f.key(
        "Unit", "What Every counts: Epochs or Updates (minibatches).", parse=f.enum_of(ScheduleUnit),
        default=ScheduleUnit.EPOCHS)
    gamma: float = f.key("Gamma", "Step: the factor applied every Every Units.",
                         parse=f.number(0.0, lo_open=True), default=0.1)




@dataclass
class KLDivergence:
    """Weight of the KL term of Variational layers (a Destiny extension): training adds
    β_t·½·Σ(μ² + exp(logvar) − 1 − logvar) per example, β_t = Beta·min(1, t / AnnealSteps), t the
    updates done so far (AnnealSteps 0: β_t = Beta from the start). Liang et al.'s Mult-VAE
    (anneal_cap 0.2, total_anneal_steps 200000, β = min(cap, t / total)) is Beta 0.2,
    AnnealSteps 40000."""

    beta: float = f.key("Beta", "Weight of the KL term once annealed (1: the plain ELBO).",
                        parse=f.number(0.0), default=1.0)
    anneal_steps: float = f.key(
        "AnnealSteps", "Updates over which β rises linearly from 0 to Beta; 0 keeps β = Beta.",
        parse=f.number(0.0), default=0.0)


@dataclass
class Denoising:
    """Denoising autoencoder: drop each nonzero of sparse inputs with probability p."""

    p: float = f.key("p", "Probability of dropping an input nonzero during training; 0 is off.",
                     parse=f.number(0.0, 1.0, hi_open=True), default=0.0)
    rescale: bool = _extension(f.key(
        "Rescale", "Divide the kept values by 1 − p, as DSSTNE does (its denoising q = 1/(1 − p)), "
        "so an input's expected value is unchanged: Mult-VAE's dropout on the input. false keeps "
        "them as they are (a Destiny extension).", parse=f.boolean, default=True))


@dataclass
class DeltaBoost:
    """Scales output deltas of positive (one) and zero targets for CrossEntropy and L2."""

    one: float = f.key("one", "Factor on the deltas of nonzero targets.", parse=f.number(0.0), default=1.0)
    zero: float = f.key("zero", "Factor on the deltas of zero targets.", parse=f.number(0.0), default=1.0)


@dataclass
class MarginalCrossEntropy:
    """Margins and scales of (Data)ScaledMarginalCrossEntropy."""

    one_target: float = f.key(
        "oneTarget", "A positive output costs nothing once it exceeds this.",
        parse=f.number(0.0, 1.0), default=0.9)
    zero_target: float = f.key(
        "zeroTarget", "A zero output costs nothing once it is below this.",
        parse=f.number(0.0, 1.0), default=0.1)
    one_scale: float = f.key("oneScale", "Weight of the positive terms.", parse=f.number(0.0), default=1.0)
    zero_scale: float = f.key("zeroScale", "Weight of the zero terms.", parse=f.number(0.0), default=1.0)


@dataclass
class LocalResponseNormalization:
    """Parameters of Pooling layers with Function LRN (cross-channel normalisation)."""

    k: float = f.key("k", "Offset.", parse=f.number(), default=2.0)
    n: int = f.key("n", "Number of neighbouring channels.", parse=f.positive_int, default=5)
    alpha: float = f.key("alpha", "Scale.", parse=f.number(), default=0.0001)
    beta: float = f.key("beta", "Exponent.", parse=f.number(), default=0.75)


@dataclass
class Maxout:
    """Parameters of Maxout pooling."""

    k: int = f.key("k", "Number of pieces (stored for DSSTNE files; maxout takes the max over "
                   "all sources).", parse=f.positive_int, default=2)


def _layer_sparseness_penalty(value, at: f.Place) -> SparsenessPenalty | None:
    if isinstance(value, bool):  # DSSTNE's LDL documents a Boolean; its parser wants {p, beta}
        at.warn("DSSTNE's docs give a Boolean here, but its parser wants an object {\"p\": ..., "
                "\"beta\": ...}; the layer uses the network's SparsenessPenalty")
        return None
    return f.nested(SparsenessPenalty)(value, at)


@dataclass
class LayerConfig:
    """One layer of the network (an element of ``Layers``)."""

    kind: LayerKind = f.key(
        "Kind", "Input, Hidden, Output or Target. Default: Input for the first layer, Output for "
        "the last, Hidden otherwise.", parse=f.enum_of(LayerKind), default=LayerKind.HIDDEN,
        always=True)
    type: LayerType = f.key(
        "Type", "FullyConnected, Convolutional or Pooling.",
        parse=f.enum_of(LayerType, {"Convolution": LayerType.CONVOLUTIONAL}),
        default=LayerType.FULLY_CONNECTED)
    name: str = f.key(
        "Name", "Unique, case-sensitive name. Default: the kind followed by the layer's index "
        "(Hidden2).", parse=f.name, default="", always=True)
    n: UnitDims = f.key(
        "N", 'Units: an integer, a list of 1 to 4 dimensions, or "auto" to take the dimensions '
        "of the layer's DataSet (Input and Output layers).", parse=f.unit_dims, default=None,
        deprecated=("Dimensions",), always=True)
    sparse: bool = f.key(
        "Sparse", "Sparse layer: for Input and Output layers the data are sparse; for Hidden "
        "layers the sparseness penalty applies.", parse=f.boolean, default=False)
    p_dropout: float = f.key(
        "pDropout", "Dropout probability during training.", parse=f.number(0.0, 1.0, hi_open=True),
        default=0.0)
    dataset: str | None = f.key(
        "DataSet", "Name of the dataset that feeds this Input layer or holds this Output "
        "layer's targets (the name stored in the NetCDF file).", parse=f.name, default=None,
        kinds=_DATA, always=True)
    sources: tuple[str, ...] = f.key(
        "Source", "Layer name or list of names feeding this layer. Default: the previous layer.",
        parse=f.names, default=(), kinds=_NOT_INPUT, aliases=(), deprecated=("Sources",),
        always=True)
    skips: tuple[str, ...] = f.key(
        "Skip", "Layers added element-wise to this layer's input sum (residual connections); "
        "their widths must equal this layer's.", parse=f.names, default=(), kinds=_WEIGHTED,
        deprecated=("Skips",))
    activation: Activation = f.key(
        "Activation", "Sigmoid, Tanh, Relu, LRelu, ELU, SELU, SoftPlus, SoftSign, SoftMax or "
        "Linear.", parse=f.enum_of(Activation, note={
            Activation.RELU_MAX: _IDENTITY_NOTE.format("'ReluMax'"),
            Activation.LINEAR_MAX: _IDENTITY_NOTE.format("'LinearMax'")}),
        default=Activation.SIGMOID, kinds=_WEIGHTED, always=True)
    relu_slope: float | None = f.key(
        "RELUSlope", "Slope of LRelu for negative inputs. Default: the network's RELUSlope.",
        parse=f.number(), default=None, kinds=_WEIGHTED, aliases=("Slope",))
    elu_alpha: float | None = f.key(
        "ELUAlpha", "Alpha of ELU and SELU. Default: the network's ELUAlpha.", parse=f.number(),
        default=None, kinds=_WEIGHTED, deprecated=("SELUAlpha",))
    selu_lambda: float | None = f.key(
        "SELULambda", "Lambda of SELU. Default: the network's SELULambda.", parse=f.number(),
        default=None, kinds=_WEIGHTED)
    weight_init: WeightInit = f.key(
        "WeightInit", "Initialisation of the incoming weights and the bias.",
        parse=f.nested(WeightInit), default_factory=WeightInit, kinds=_WEIGHTED)
    weight_norm: float = f.key(
        "WeightNorm", "Maximum L2 norm of each unit's incoming weight vector; 0 is unconstrained.",
        parse=f.number(0.0), default=0.0, kinds=_WEIGHTED)
    delta_norm: float = f.key(
        "DeltaNorm", "Maximum L2 norm of each example's delta vector; 0 is unconstrained.",
        parse=f.number(0.0), default=0.0, kinds=_WEIGHTED)
    batch_norm: bool = f.key(
        "BatchNormalization", "Normalise the layer's pre-activations over the batch.",
        parse=f.boolean, default=False, kinds=f.HIDDEN)
    sparseness_penalty: SparsenessPenalty | None = f.key(
        "SparsenessPenalty", "This layer's own {p, beta}; used where beta > 0, else the "
        "network's.", parse=_layer_sparseness_penalty, default=None, kinds=f.HIDDEN)
    variational: bool = f.key(
        "Variational", "A Destiny extension (Mult-VAE): the incoming matrices give 2N "
        "pre-activations, the mean μ (first N) and log-variance (last N) of a Gaussian; in training "
        "the layer's value is μ + ε·exp(½·logvar), ε ~ N(0, 1) from the seeded stream, and the "
        "network's KL term applies; in evaluation (predict, encode) it is μ. Needs FullyConnected, "
        "Activation Linear, no Skip, BatchNormalization or SharedWeights; one process only.",
        parse=f.boolean, default=False, kinds=f.HIDDEN)
    kernel: tuple[int, ...] | None = f.key(
        "Kernel", "Convolution or pooling window: X, [X], [X, Y] or [X, Y, Z].",
        parse=f.kernel_dims, default=None, kinds=_NOT_INPUT)
    kernel_stride: tuple[int, ...] | None = f.key(
        "KernelStride", "Step of the window along each axis.", parse=f.kernel_dims, default=None,
        kinds=_NOT_INPUT)
    pooling_function: PoolingFunction | None = f.key(
        "Function", "Pooling layers: Max, Average, LRN, Maxout, DotProduct or Cosine.",
        parse=f.enum_of(PoolingFunction), default=None, kinds=_WEIGHTED)
    shared_weights: tuple[SharedWeights, ...] = f.key(
        "SharedWeights", "Weight matrices reused from another pair of layers.",
        parse=f.nested_list(SharedWeights), default=(), kinds=_WEIGHTED)
    normalize: str | None = f.key(
        "Normalize", "A Destiny extension for sparse Input layers: scale each example's values to "
        "unit L2 norm (\"L2\": v/√Σv², 1/√n for indicator data, as Mult-VAE) or unit L1 norm "
        "(\"L1\": v/Σ|v|, 1/n for indicator data), in training and prediction, before "
        "Denoising; an example with no nonzeros stays empty.",
        parse=_normalization, default=None, kinds=f.INPUT)
    zero_diagonal: bool = f.key(
        "ZeroDiagonal", "A Destiny extension (EASE as a network): the diagonal of every incoming "
        "matrix from a source of this layer's width is held at zero — zero at initialisation and "
        "after every update — so that no unit predicts itself. FullyConnected layers; at least "
        "one source must have the layer's width.", parse=f.boolean, default=False, kinds=_WEIGHTED)
    comment: str | None = f.key(
        "Comment", "Free text, ignored (a Destiny extension: DSSTNE rejects the key).",
        parse=f.comment, default=None)

    @property
    def is_auto(self) -> bool:
        return self.n == "auto"


@dataclass
class NetworkConfig:
    """A whole network description (the top-level JSON object)."""

    version: float = f.key(
        "Version", "Format version; at least 0.7.", parse=f.number(), default=0.9, always=True)
    name: str = f.key("Name", "Name of the network.", parse=f.string, default="", always=True)
    kind: NetworkKind = f.key(
        "Kind", "FeedForward or AutoEncoder (no difference in training).",
        parse=f.enum_of(NetworkKind), default=NetworkKind.FEED_FORWARD, always=True)
    weights_data: str | None = f.key(
        "WeightsData", "NetCDF file of weights (accepted and ignored, as by DSSTNE).",
        parse=f.string, default=None, deprecated=("WeightData",))
    lrn: LocalResponseNormalization = f.key(
        "LocalResponseNormalization", "Parameters of LRN pooling layers.",
        parse=f.nested(LocalResponseNormalization), default_factory=LocalResponseNormalization,
        aliases=("LRN",))
    maxout: Maxout = f.key("Maxout", "Parameters of Maxout pooling layers.",
                           parse=f.nested(Maxout), default_factory=Maxout)
    sparseness_penalty: SparsenessPenalty = f.key(
        "SparsenessPenalty", "Penalty on the mean activation of hidden layers marked Sparse.",
        parse=f.nested(SparsenessPenalty), default_factory=SparsenessPenalty)
    denoising: Denoising = f.key(
        "Denoising", "Denoising of sparse Input layers during training.",
        parse=f.nested(Denoising), default_factory=Denoising)
    kl: KLDivergence = f.key(
        "KL", "Weight and annealing of the KL term of Variational layers (a Destiny extension).",
        parse=f.nested(KLDivergence), default_factory=KLDivergence)
    delta_boost: DeltaBoost = f.key(
        "DeltaBoost", "Scaling of output deltas for sparse targets.", parse=f.nested(DeltaBoost),
        default_factory=DeltaBoost)
    smce: MarginalCrossEntropy = f.key(
        "ScaledMarginalCrossEntropy", "Margins and scales of (Data)ScaledMarginalCrossEntropy "
        "(both spellings set the same parameters).", parse=f.nested(MarginalCrossEntropy),
        default_factory=MarginalCrossEntropy, aliases=("DataScaledMarginalCrossEntropy",))
    shuffle_indices: bool = f.key(
        "ShuffleIndices", "Shuffle the order of examples every epoch.", parse=f.boolean, default=True)
    relu_slope: float = f.key("RELUSlope", "Default LRelu slope of layers.", parse=f.number(),
                              default=1.0, aliases=("Slope",))
    elu_alpha: float = f.key("ELUAlpha", "Default alpha of ELU and SELU layers.", parse=f.number(),
                             default=1.0, deprecated=("SELUAlpha",))
    selu_lambda: float = f.key("SELULambda", "Default lambda of SELU layers.", parse=f.number(),
                               default=1.050701)
    decay: float = f.key(
        "Decay", "Learning-rate decay: alpha / (1 + Decay * minibatches so far).",
        parse=f.number(0.0), default=0.0)
    error_function: ErrorFunction = f.key(
        "ErrorFunction", "L1, L2, CrossEntropy, ScaledMarginalCrossEntropy, "
        "DataScaledMarginalCrossEntropy, Hinge, L2Hinge or Multinomial (a Destiny extension for "
        "SoftMax outputs: −Σ t·log softmax(z) an example, each indicator target counting 1, where "
        "CrossEntropy spreads them as 1/#targets; the Mult-DAE/Mult-VAE likelihood).",
        parse=f.enum_of(ErrorFunction, {"SMCE": ErrorFunction.SCALED_MARGINAL_CROSS_ENTROPY}),
        default=ErrorFunction.CROSS_ENTROPY, always=True)
    layers: tuple[LayerConfig, ...] = f.key(
        "Layers", "The layers, inputs first; see the layer keys.", parse=None, default=(), always=True)
    comment: str | None = f.key(
        "Comment", "Free text, ignored (a Destiny extension: DSSTNE rejects the key).",
        parse=f.comment, default=None)

    # -- lookups --------------------------------------------------------------------------------

    def layer(self, name: str) -> LayerConfig:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def input_layers(self) -> list[LayerConfig]:
        return [layer for layer in self.layers if layer.kind == LayerKind.INPUT]

    learning_rate_schedule: LearningRateSchedule = f.key(
        "LearningRateSchedule", "Warmup and the shape of the learning rate over the run: Constant "
        "(default), Linear, Cosine or Step (a Destiny extension; Decay still applies).",
        parse=f.nested(LearningRateSchedule), default_factory=LearningRateSchedule)
    weight_decay: float = f.key(
        "WeightDecay", "Decoupled weight decay (AdamW's, Loshchilov & Hutter): every update also "
        "does w ← w − α_s·WeightDecay·w on the weight matrices (not the biases), α_s the step's "
        "scheduled rate, whatever the optimizer; rows of the sparse input layer that are not in "
        "the minibatch decay too. Unlike the L2 lambda it does not pass through Adam's moments "
        "(a Destiny extension; 0: off).", parse=f.number(0.0), default=0.0)
    @property
    def output_layers(self) -> list[LayerConfig]:
        return [layer for layer in self.layers if layer.kind == LayerKind.OUTPUT]

    def topological_order(self) -> list[LayerConfig]:
        """Layers in an order where every Source and Skip comes first (graphlib.CycleError if none)."""
        feeds = {layer.name: (*layer.sources, *layer.skips) for layer in self.layers}
        order = graphlib.TopologicalSorter(feeds).static_order()
        by_name = {layer.name: layer for layer in self.layers}
        return [by_name[name] for name in order if name in by_name]

    def relu_slope_of(self, layer: LayerConfig) -> float:
        return self.relu_slope if layer.relu_slope is None else layer.relu_slope

    def elu_alpha_of(self, layer: LayerConfig) -> float:
        return self.elu_alpha if layer.elu_alpha is None else layer.elu_alpha

    def selu_lambda_of(self, layer: LayerConfig) -> float:
        return self.selu_lambda if layer.selu_lambda is None else layer.selu_lambda

    def sparseness_penalty_of(self, layer: LayerConfig) -> SparsenessPenalty:
        own = layer.sparseness_penalty
        return own if own is not None and own.beta > 0 else self.sparseness_penalty
