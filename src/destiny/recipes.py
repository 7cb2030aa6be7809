"""Recipes: DSSTNE JSON networks of the field's best autoencoder recommenders, parameterised.

    config = destiny.recipes.mult_vae(hidden=600, latent=200, beta=0.2)   # a dict of DSSTNE JSON
    model = destiny.Recommender(config, optimizer="adam", alpha=1e-3, batch_size=500).fit(train)

Every function returns a plain dict (``json.dump`` writes it as a network file; ``destiny.
config.config_from_json`` validates it) for a users × items autoencoder: a sparse Input layer
on the DataSet "input", a sparse Output layer on "output", both ``"N": "auto"``. Every recipe
starts its output biases from the items' frequencies (``WeightInit.FrequencyBias``: log-odds
for a Sigmoid output, log-frequencies for a SoftMax, means for a Linear one). The training
settings that are not JSON keys (optimizer, learning rate ``alpha``, L2 ``lam``, batch size,
epochs) are ``destiny.Recommender``'s arguments; ``destiny.tune`` searches both.

| recipe | network | loss |
|---|---|---|
| ``mult_dae`` | L2-normalised input, input dropout with rescaling, H tanh, SoftMax | Multinomial |
| ``mult_vae`` | as Mult-DAE, then a Variational code of L units (KL β annealed), H tanh | Multinomial + KL |
| ``ease_network`` | one items × items matrix with a zero diagonal, Linear output | L2 (EASE) |
| ``hybrid`` | H tanh + a zero-diagonal items × items matrix from the input, SoftMax or Linear | Multinomial or L2 |
| ``ease_hybrid`` | the L2 ``hybrid``, its matrix started at the closed form (``ClosedForm``) | L2 |
| ``sigmoid_autoencoder`` | DSSTNE's: denoised input, H sigmoid, Sigmoid output | CrossEntropy |

A learning-rate schedule whose shape depends on the run's length (Linear, Cosine) makes a run
of E epochs differ from the first E epochs of a longer one: ``destiny.tune`` refits its winner
with ``epochs`` = the best epoch, so its search space keeps the default Constant schedule.
"""

from __future__ import annotations

from typing import Any

INPUT, OUTPUT = "input", "output"  # the DataSet names of every recipe (what Recommender binds)


def _input(normalize: str | None = None) -> dict[str, Any]:
    layer = {"Name": "Input", "Kind": "Input", "N": "auto", "DataSet": INPUT, "Sparse": True}
    if normalize is not None:
        layer["Normalize"] = normalize
    return layer


def _hidden(name: str, n: int, activation: str, *, dropout: float = 0.0, **extra) -> dict[str, Any]:
    layer = {"Name": name, "Kind": "Hidden", "Type": "FullyConnected", "N": int(n), "Activation": activation,
             "WeightInit": {"Scheme": "Xavier"}}
    if dropout:
        layer["pDropout"] = float(dropout)
    layer.update(extra)
    return layer


def _output(activation: str, *, sources: list[str] | None = None, init: dict | None = None, **extra) -> dict[str, Any]:
    layer = {"Name": "Output", "Kind": "Output", "Type": "FullyConnected", "N": "auto", "DataSet": OUTPUT,
             "Sparse": True, "Activation": activation,
             "WeightInit": {"Scheme": "Xavier", **(init or {}), "FrequencyBias": True}}
    if sources is not None:
        layer["Source"] = sources
    layer.update(extra)
    return layer


def _network(name: str, layers: list[dict], error: str, *, denoising: float = 0.0, rescale: bool = True,
             weight_decay: float = 0.0, comment: str = "", **top) -> dict[str, Any]:
    doc: dict[str, Any] = {"Version": 0.9, "Name": name, "Kind": "AutoEncoder"}
    if comment:
        doc["Comment"] = comment
    doc["ShuffleIndices"] = True
    if denoising:
        doc["Denoising"] = {"p": float(denoising), "Rescale": bool(rescale)}
    if weight_decay:
        doc["WeightDecay"] = float(weight_decay)
    doc.update(top)
    doc["Layers"] = layers
    doc["ErrorFunction"] = error
    return doc


def _check(name: str, **values: float) -> None:
    """UsageError for a dropout outside [0, 1) or a width that is not a positive integer."""
    from destiny.errors import UsageError

    for key, value in values.items():
        if key.endswith("dropout") or key == "denoising":
            if not 0.0 <= float(value) < 1.0:
                raise UsageError(f"recipes.{name}: {key} must lie in [0, 1); got {value!r}")
        elif isinstance(value, bool) or int(value) != value or value < 1:
            raise UsageError(f"recipes.{name}: {key} must be a positive integer; got {value!r}")


def mult_dae(hidden: int = 600, dropout: float = 0.5, *, activation: str = "Tanh", normalize: str = "L2",
             weight_decay: float = 0.0, layers: int = 1) -> dict[str, Any]:
    """Mult-DAE (Liang et al. 2018): each user's row L2-normalised, a share ``dropout`` of its
    items dropped in training and the rest rescaled by 1/(1 − dropout), ``layers`` hidden layers
    of ``hidden`` tanh units, a SoftMax over all items with the multinomial log-likelihood.
    weight_decay: decoupled (AdamW) decay of the weight matrices. The paper: 600 units, dropout
    0.5, Adam 0.001, batch 500 (``Recommender(optimizer="adam", alpha=1e-3, batch_size=500)``)."""
    _check("mult_dae", hidden=hidden, dropout=dropout, layers=layers)
    hidden_layers = [_hidden(f"Hidden{i + 1}", hidden, activation) for i in range(int(layers))]
    return _network("Mult-DAE", [_input(normalize), *hidden_layers, _output("SoftMax")], "Multinomial",
                    denoising=dropout, weight_decay=weight_decay,
                    comment=f"Mult-DAE: {int(layers)} × {int(hidden)} {activation}, input dropout {dropout:g}")


def mult_vae(hidden: int = 600, latent: int = 200, dropout: float = 0.5, beta: float = 0.2,
             anneal_steps: int = 40_000, *, activation: str = "Tanh", normalize: str = "L2",
             weight_decay: float = 0.0) -> dict[str, Any]:
    """Mult-VAE (Liang et al. 2018): as ``mult_dae``, then a Gaussian code of ``latent`` units
    (a ``Variational`` layer: mean and log-variance, a sample in training, the mean in
    prediction), a decoder of ``hidden`` tanh units, a SoftMax with the multinomial likelihood,
    and the KL term with β rising from 0 to ``beta`` over ``anneal_steps`` updates (``KL``).
    examples/configs/mult-vae.json is ``mult_vae()`` with comments."""
    _check("mult_vae", hidden=hidden, latent=latent, dropout=dropout)
    layers = [_input(normalize), _hidden("Encoder", hidden, activation),
              _hidden("Latent", latent, "Linear", Variational=True), _hidden("Decoder", hidden, activation),
              _output("SoftMax")]
    return _network("Mult-VAE", layers, "Multinomial", denoising=dropout, weight_decay=weight_decay,
                    KL={"Beta": float(beta), "AnnealSteps": int(anneal_steps)},
                    comment=f"Mult-VAE: {int(hidden)} {activation} → {int(latent)} Variational → {int(hidden)} "
                            f"{activation}, input dropout {dropout:g}, KL beta {beta:g} over {int(anneal_steps)} "
                            "updates")


def _closed_form(name: str, value: float | None) -> dict[str, Any]:
    """The Output layer's WeightInit of a ``closed_form`` λ (None: none)."""
    if value is None:
        return {}
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        from destiny.errors import UsageError

        raise UsageError(f"recipes.{name}: closed_form must be EASE's λ, a finite number ≥ 0 (or None); got {value!r}")
    return {"ClosedForm": float(value)}


def ease_network(dropout: float = 0.0, *, closed_form: float | None = None, weight_decay: float = 0.0) -> dict[str, Any]:
    """EASE (Steck 2019) as a network: one items × items matrix B whose diagonal is held at zero
    (``ZeroDiagonal``), a Linear output and the L2 error, started at B = 0 with the biases at
    the item means. With the L2 ``lam`` of ``Recommender`` its minimum is closed-form EASE on
    column-centred data with EASE's λ' = n_users·lam. dropout: input denoising (EDLAE's
    emphasised dropout, rescaled). Memory: items² weights and as much again per optimizer
    state (Adam: 3 × 4·items² bytes, plus the best epoch's copy). closed_form: λ' to start B
    at closed-form EASE (``WeightInit.ClosedForm``; with dropout, EDLAE's) instead of 0, so
    that training starts at EASE's optimum and is validated there as epoch 0."""
    _check("ease_network", dropout=dropout)
    out = _output("Linear", init={"Scheme": "Constant", "Scale": 0.0, **_closed_form("ease_network", closed_form)},
                  ZeroDiagonal=True)
    return _network("EASE", [_input(), out], "L2", denoising=dropout, weight_decay=weight_decay,
                    comment="EASE as a network: a zero-diagonal items x items matrix, Linear output, L2 error")


def hybrid(hidden: int = 600, dropout: float = 0.5, *, activation: str = "Tanh", normalize: str = "L2",
           loss: str = "Multinomial", closed_form: float | None = None, weight_decay: float = 0.0) -> dict[str, Any]:
    """A Mult-DAE and an EASE side by side: the output sums a hidden layer of ``hidden`` units
    (low rank) and a zero-diagonal items × items matrix from the (normalised, denoised) input
    (``ZeroDiagonal`` on the Output layer applies to its items-wide source only). loss:
    "Multinomial" (a SoftMax output, the multinomial likelihood) or "L2" (a Linear output and
    EASE's squared error: EASE plus a nonlinear low-rank correction; on MovieLens-1M's
    validation split, 1 × 600 tanh with dropout 0.25, it beat tuned closed-form EASE, NDCG@100
    .305 against .302, one H100). closed_form (loss "L2" only): λ' to start the items × items
    matrix at its closed-form minimum on the normalised, denoised input (``WeightInit.
    ClosedForm``) and the hidden path's output weights at zero, so that training starts from
    an EASE of the normalised input. Memory as ``ease_network``."""
    _check("hybrid", hidden=hidden, dropout=dropout)
    from destiny.errors import UsageError

    if loss not in ("Multinomial", "L2"):
        raise UsageError(f"recipes.hybrid: loss must be 'Multinomial' or 'L2'; got {loss!r}")
    if closed_form is not None and loss != "L2":
        raise UsageError("recipes.hybrid: closed_form solves the L2 error; use loss=\"L2\" with it")
    out = _output("SoftMax" if loss == "Multinomial" else "Linear", sources=["Hidden1", "Input"], ZeroDiagonal=True,
                  init=_closed_form("hybrid", closed_form))
    return _network("Hybrid", [_input(normalize), _hidden("Hidden1", hidden, activation), out], loss,
                    denoising=dropout, weight_decay=weight_decay,
                    comment=f"Hybrid: {int(hidden)} {activation} + zero-diagonal item-to-item, "
                            f"{out['Activation']}, {loss}")


def ease_hybrid(closed_form: float = 10.0, hidden: int = 600, dropout: float = 0.25, *, activation: str = "Tanh",
                normalize: str = "L2", weight_decay: float = 0.0) -> dict[str, Any]:
    """EASE first, then a correction: ``hybrid(loss="L2", closed_form=…)``. The items × items
    matrix starts at its closed-form minimum on the L2-normalised, denoised input (λ'
    ``closed_form`` in those rows' units: EASE's λ × n_users / n_interactions), the hidden
    path's output weights at zero; training (with the L2 ``lam`` = closed_form / n_users, the
    same penalty) then adds a nonlinear low-rank correction from EASE's optimum, and early
    stopping keeps the start (epoch 0) when no epoch beats it."""
    return hybrid(hidden, dropout, activation=activation, normalize=normalize, loss="L2", closed_form=closed_form,
                  weight_decay=weight_decay)


def sigmoid_autoencoder(hidden: int = 512, denoising: float = 0.2, *, hidden_dropout: float = 0.0,
                        error: str = "CrossEntropy", weight_decay: float = 0.0) -> dict[str, Any]:
    """DSSTNE's classic autoencoder (samples/movielens, slide 20 of the talk): denoised sparse
    input (DSSTNE's Denoising: kept inputs divided by 1 − p), one hidden layer of ``hidden``
    sigmoid units, a sparse Sigmoid output, with the output biases at the items' log-odds
    (FrequencyBias; DSSTNE's bias 0 halves its quality on wide catalogues). error:
    CrossEntropy (default) or ScaledMarginalCrossEntropy (DSSTNE's sample)."""
    _check("sigmoid_autoencoder", hidden=hidden, denoising=denoising, hidden_dropout=hidden_dropout)
    layers = [_input(), _hidden("Hidden1", hidden, "Sigmoid", dropout=hidden_dropout), _output("Sigmoid")]
    return _network("Autoencoder", layers, error, denoising=denoising, weight_decay=weight_decay,
                    comment=f"DSSTNE autoencoder: {int(hidden)} Sigmoid, denoising {denoising:g}, "
                            "output biases from item frequencies")


RECIPES = {"mult_dae": mult_dae, "mult_vae": mult_vae, "ease_network": ease_network, "ease_hybrid": ease_hybrid,
           "hybrid": hybrid, "sigmoid_autoencoder": sigmoid_autoencoder}
"""Every recipe builder by name (what ``destiny.tune`` searches over)."""


def recipe(name: str, **params) -> dict[str, Any]:
    """The network of recipe ``name`` with ``params``; UsageError naming the recipes if unknown."""
    from destiny.errors import UsageError

    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; the recipes are {', '.join(RECIPES)}")
    return RECIPES[name](**params)


__all__ = ["RECIPES", "ease_hybrid", "ease_network", "hybrid", "mult_dae", "mult_vae", "recipe", "sigmoid_autoencoder"]
