"""Variational layers (nn/variational.py) against a plain-PyTorch Mult-VAE (Liang et al. 2018)
holding the same weights: the loss parts, every parameter's gradient (float64), the evaluation
path (μ), β's annealing, the ε stream's determinism, the network file round trip, the config
errors, and a short training on synthetic data."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from destiny.config.schema import KLDivergence
from destiny.errors import ConfigError, ConfigWarning
from destiny.nn import variational
from destiny.nn.network import Network
from destiny.nn.noise import Noise
from destiny.ops.random import normal_at, stream_seed
from destiny.parallel import World
from tests.helpers import config, random_batch

ITEMS, HIDDEN, LATENT, BATCH = 17, 7, 3, 6


def layers(items=ITEMS, hidden=HIDDEN, latent=LATENT, sparse=True, **latent_keys):
    latent_layer = {"Name": "z", "N": latent, "Activation": "Linear", "Variational": True,
                    "WeightInit": {"Scheme": "Gaussian", "Scale": 0.4, "Bias": 0.05}}
    latent_layer.update(latent_keys)
    return [
        {"Name": "in", "N": items, "DataSet": "x", "Sparse": sparse},
        {"Name": "enc", "N": hidden, "Activation": "Tanh", "WeightInit": {"Scheme": "Gaussian", "Scale": 0.4}},
        latent_layer,
        {"Name": "dec", "N": hidden, "Activation": "Tanh", "WeightInit": {"Scheme": "Gaussian", "Scale": 0.4}},
        {"Name": "out", "N": items, "DataSet": "y", "Sparse": sparse, "Activation": "SoftMax",
         "WeightInit": {"Scheme": "Gaussian", "Scale": 0.4, "Bias": -0.1}},
    ]


def mult_vae(beta=0.2, anneal=10, seed=5, dtype=torch.float64, **latent_keys) -> Network:
    cfg = config(layers(**latent_keys), ErrorFunction="Multinomial", KL={"Beta": beta, "AnnealSteps": anneal})
    return Network.from_config(cfg, seed=seed, dtype=dtype)


class TorchMultVAE(torch.nn.Module):
    """Mult-VAE as its authors wrote it (their TensorFlow code in PyTorch terms): q-network
    items → 7 tanh → 2·3 (μ, logvar), p-network 3 → 7 tanh → items, multinomial likelihood."""

    def __init__(self, net: Network):
        super().__init__()
        self.q1, self.q2 = torch.nn.Linear(ITEMS, HIDDEN), torch.nn.Linear(HIDDEN, 2 * LATENT)
        self.p1, self.p2 = torch.nn.Linear(LATENT, HIDDEN), torch.nn.Linear(HIDDEN, ITEMS)
        self.double()
        with torch.no_grad():  # Destiny's W is (in, out); nn.Linear's is (out, in)
            for k, linear in enumerate((self.q1, self.q2, self.p1, self.p2)):
                linear.weight.copy_(net.weights[f"w{k}"].t())
                linear.bias.copy_(net.biases[f"b{k}"])

    def encode(self, x):
        h = self.q2(torch.tanh(self.q1(x)))
        return h[:, :LATENT], h[:, LATENT:]

    def forward(self, x, eps=None, anneal=0.0):
        mu, logvar = self.encode(x)
        z = mu if eps is None else mu + eps * torch.exp(0.5 * logvar)
        logits = self.p2(torch.tanh(self.p1(z)))
        neg_ll = -(F.log_softmax(logits, 1) * x).sum(1)  # per example
        kl = torch.sum(0.5 * (-logvar + torch.exp(logvar) + mu ** 2 - 1), dim=1)
        return logits, neg_ll.sum(), anneal * kl.sum()


def epsilon(seed, epoch, step, batch=BATCH, layer="z"):
    """The ε the documented stream gives: element (b, j) is normal number b·N + j."""
    return normal_at(stream_seed(seed, "variational", epoch, step, layer),
                     torch.arange(batch * LATENT)).view(batch, LATENT).double()


def data(seed=1):
    return random_batch(BATCH, ITEMS, 6, seed=seed)


def test_the_network_holds_2n_columns_into_the_variational_layer():
    net = mult_vae()
    assert tuple(net.weights["w1"].shape) == (HIDDEN, 2 * LATENT) and tuple(net.biases["b1"].shape) == (2 * LATENT,)
    assert net.units["z"] == LATENT and tuple(net.weights["w2"].shape) == (LATENT, HIDDEN)
    assert net.n_parameters() == sum(p.numel() for p in net.parameters())
    assert ("variational", "z") in net.noise_streams()


@pytest.mark.parametrize("updates,anneal", [(4, 0.08), (None, 0.2), (25, 0.2)])
def test_loss_parts_and_every_gradient_match_plain_pytorch(updates, anneal):
    net = mult_vae()
    ref = TorchMultVAE(net)
    x = data()
    xd = x.to_dense(torch.float64)
    seed, epoch, step = 11, 2, 3
    total, parts = net.loss({"in": x}, {"out": x}, Noise(seed, epoch, step), updates=updates)
    _, neg_ll, kl = ref(xd, epsilon(seed, epoch, step), anneal)
    assert set(parts) == {"out", "KL"}
    assert float(parts["out"].detach()) == pytest.approx(float(neg_ll.detach()), rel=1e-12)
    assert float(parts["KL"].detach()) == pytest.approx(float(kl.detach()), rel=1e-12) and float(kl.detach()) > 0
    total.backward()
    (neg_ll + kl).backward()
    pairs = [("w0", ref.q1.weight), ("w1", ref.q2.weight), ("w2", ref.p1.weight), ("w3", ref.p2.weight)]
    for name, theirs in pairs:
        p = net.weights[name]
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        if getattr(p, "row_grad", None) is not None:  # the sparse input layer's rows
            grad = grad + p.row_grad.to_dense(p.shape[0])
        torch.testing.assert_close(grad, theirs.grad.t(), rtol=1e-10, atol=1e-12, msg=name)
    for k, linear in enumerate((ref.q1, ref.q2, ref.p1, ref.p2)):
        torch.testing.assert_close(net.biases[f"b{k}"].grad, linear.bias.grad, rtol=1e-10, atol=1e-12)


def test_gradients_by_finite_differences_with_dense_input_and_dropout_after_the_sample():
    net = mult_vae(sparse=False, pDropout=0.3)
    x = data(2)
    inputs, targets = {"in": x.to_dense(torch.float64)}, {"out": x}
    noise = Noise(3, 0, 1)
    loss, parts = net.loss(inputs, targets, noise, updates=7)
    loss.backward()
    for name, p in net.named_parameters():
        flat = p.data.view(-1)
        for k in range(0, flat.numel(), max(1, flat.numel() // 6)):
            original = float(flat[k])
            with torch.no_grad():
                flat[k] = original + 1e-6
                up = float(net.loss(inputs, targets, noise, updates=7)[0])
                flat[k] = original - 1e-6
                down = float(net.loss(inputs, targets, noise, updates=7)[0])
                flat[k] = original
            assert (up - down) / 2e-6 == pytest.approx(float(p.grad.view(-1)[k]), rel=1e-5, abs=1e-7), (name, k)


def test_evaluation_is_the_mean_path():
    net = mult_vae()
    ref = TorchMultVAE(net)
    x = data()
    xd = x.to_dense(torch.float64)
    mu, _ = ref.encode(xd)
    logits, neg_ll, _ = ref(xd)
    out = net.predict({"in": x}, layers=["z", "out"])
    torch.testing.assert_close(out["z"], mu, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out["out"], F.softmax(logits, 1), rtol=1e-12, atol=1e-14)
    total, parts = net.loss({"in": x}, {"out": x}, None)  # evaluation loss: no KL, no sample
    assert set(parts) == {"out"} and float(total.detach()) == pytest.approx(float(neg_ll.detach()), rel=1e-12)
    encoded = net.encode(x.to_dense(torch.float64).numpy(), "z")
    torch.testing.assert_close(torch.as_tensor(encoded).double(), mu.float().double(), rtol=1e-6, atol=1e-7)


def test_beta_anneals_linearly_to_its_cap():
    kl = KLDivergence(beta=0.2, anneal_steps=100)
    assert [variational.kl_weight(kl, t) for t in (0, 25, 50, 100, 1000)] == \
        pytest.approx([0.0, 0.05, 0.1, 0.2, 0.2], abs=1e-15)
    assert variational.kl_weight(kl, None) == 0.2
    assert variational.kl_weight(KLDivergence(beta=0.5, anneal_steps=0), 12345) == 0.5
    for t in (0, 1, 37, 99, 100, 5000):  # the device counter gives the same number
        on_device = variational.kl_weight(kl, torch.tensor(t, dtype=torch.int64))
        assert on_device.dtype == torch.float64 and float(on_device) == variational.kl_weight(kl, t)


def test_the_kl_part_is_the_same_from_a_host_count_and_a_device_count():
    net = mult_vae(dtype=torch.float32)
    x = random_batch(BATCH, ITEMS, 6, seed=4, dtype=torch.float32)
    noise = Noise(1, 0, 0)
    for t in (0, 3, 7, 10, 11):
        host = net.loss({"in": x}, {"out": x}, noise, updates=t)[1]["KL"]
        device = net.loss({"in": x}, {"out": x}, noise, updates=torch.tensor(t))[1]["KL"]
        assert torch.equal(host, device) and host.dtype == torch.float32
    assert float(net.loss({"in": x}, {"out": x}, noise, updates=0)[1]["KL"]) == 0.0


def test_the_sample_is_reproducible_and_each_step_draws_new_numbers():
    net = mult_vae()
    x = data()

    def sample(seed, epoch, step, n=net):
        return n.forward({"in": x}, Noise(seed, epoch, step))["z"].detach()

    first = sample(4, 1, 2)
    assert torch.equal(first, sample(4, 1, 2))
    assert torch.equal(first, sample(4, 1, 2, mult_vae()))  # another network object, same weights
    for other in (sample(4, 1, 3), sample(4, 2, 2), sample(5, 1, 2)):
        assert not torch.equal(first, other)
    mu = net.predict({"in": x}, layers=["z"])["z"]
    assert not torch.equal(first, mu)
    big = variational.standard_normal((512, 64), 99, torch.device("cpu"))
    assert abs(float(big.mean())) < 0.02 and float(big.std()) == pytest.approx(1.0, abs=0.02)
    from_device_seed = variational.standard_normal((512, 64), torch.tensor(99), torch.device("cpu"))
    assert torch.equal(big, from_device_seed)


def test_the_network_file_round_trip(tmp_path):
    net = mult_vae(dtype=torch.float32)
    path = tmp_path / "vae.nc"
    net.save(path)
    back = Network.load(path)
    assert back.config.layer("z").variational and back.config.kl == KLDivergence(0.2, 10)
    for name, p in net.state_dict().items():
        assert torch.equal(p, back.state_dict()[name]), name
    from destiny.io.network_file import read_network

    stored = read_network(path)
    assert stored.weights[1].weights.shape == (HIDDEN, 2 * LATENT) and stored.weights[1].bias.shape == (2 * LATENT,)
    x = random_batch(BATCH, ITEMS, 6, seed=4, dtype=torch.float32)
    assert torch.equal(net.predict({"in": x}, layers=["z"])["z"], back.predict({"in": x}, layers=["z"])["z"])
    a = net.loss({"in": x}, {"out": x}, Noise(2, 0, 0), updates=5)[0]
    b = back.loss({"in": x}, {"out": x}, Noise(2, 0, 0), updates=5)[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize("change,where", [
    ({"Activation": "Tanh"}, "Layers[2].Activation"),
    ({"Activation": "Sigmoid"}, "Layers[2].Activation"),
    ({"Skip": "enc2"}, "Layers[2].Skip"),
    ({"BatchNormalization": True}, "Layers[2].BatchNormalization"),
])
def test_config_errors_on_the_variational_layer(change, where):
    spec = layers(**change)
    spec.insert(2, {"Name": "enc2", "N": LATENT, "Activation": "Tanh", "Source": "enc"})
    spec[3]["Source"] = "enc"
    spec = [spec[0], spec[1], spec[3], spec[2], spec[4], spec[5]]  # z is Layers[2]
    with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
        config(spec, ErrorFunction="Multinomial")


@pytest.mark.parametrize("index", [0, 4])
def test_variational_is_refused_on_input_and_output_layers(index):
    spec = layers()
    spec[index]["Variational"] = True
    with pytest.raises(ConfigError, match=r"'Variational' is not allowed on an? (Input|Output) layer"):
        config(spec, ErrorFunction="Multinomial")


def test_a_layer_built_in_python_is_checked_too():
    from destiny.config import validate

    cfg = config(layers(), ErrorFunction="Multinomial")
    cfg.layers[4].variational = True
    with pytest.raises(ConfigError, match=r"Layers\[4\]\.Variational.*only for Hidden layers"):
        validate(cfg)


def test_kl_without_a_variational_layer_warns_and_model_parallel_is_refused():
    spec = layers()
    del spec[2]["Variational"]
    with pytest.warns(ConfigWarning, match="KL.*ignored"):
        config(spec, ErrorFunction="Multinomial", KL={"Beta": 0.5})
    cfg = config(layers(), ErrorFunction="Multinomial")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config(layers(), ErrorFunction="Multinomial")  # the default KL on a VAE: no warning
    dims = {"in": (ITEMS,), "enc": (HIDDEN,), "z": (LATENT,), "dec": (HIDDEN,), "out": (ITEMS,)}
    with pytest.raises(ConfigError, match=r"Layers\[2\]\.Variational.*variational layers run in one process"):
        Network(cfg, dims, world=World(0, 2))


def test_short_training_on_synthetic_data_lowers_the_loss_and_the_kl():
    """A Mult-VAE (β annealed to 0.2 over 20 updates) on MovieLens-like synthetic data, its
    encoder started noisy (a large KL): every epoch lowers the training error, the likelihood
    term and the KL term (both measured on all users in training mode with the full β)."""
    from destiny.data.synth import synthesize
    from destiny.predict.api import as_batch
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer

    items = 60
    data = synthesize(users=400, items=items, seed=1, topics=3)
    cfg = config(layers(items=items, hidden=24, latent=4, WeightInit={"Scheme": "Gaussian", "Scale": 1.0}),
                 ErrorFunction="Multinomial", KL={"Beta": 0.2, "AnnealSteps": 20})
    net = Network.from_config(cfg, seed=2)
    batch = as_batch(net, data)

    def measure():  # (likelihood, KL) per example
        with torch.no_grad():
            _, parts = net.loss(batch, {"out": batch["in"]}, Noise(0, 0, 0))
        return float(parts["out"]) / data.n_examples, float(parts["KL"]) / data.n_examples

    trainer = Trainer(net, "adam", Hyperparameters(alpha=0.01), batch_size=50, progress=False)
    measured, errors = [measure()], []
    for _ in range(5):
        errors.append(trainer.fit({"x": data, "y": data}, 1)[0].training_error)
        measured.append(measure())
    nll, kl = zip(*measured)
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert all(b < a for a, b in zip(nll, nll[1:])) and nll[-1] < nll[0] - 5, nll
    assert all(b < a for a, b in zip(kl, kl[1:])) and kl[-1] < kl[0] / 3, kl
    assert trainer.optimizer.steps == 5 * 8


def test_the_example_config_builds_and_trains():
    """examples/configs/mult-vae.json (Normalize, Denoising with Rescale, Variational, KL,
    Multinomial, FrequencyBias) on synthetic data: a few epochs of Adam lower the error."""
    from pathlib import Path

    from destiny.config import load_config
    from destiny.data.synth import synthesize
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer

    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "configs" / "mult-vae.json")
    assert cfg.layer("Latent").variational and cfg.kl == KLDivergence(0.2, 40000)
    data = synthesize(users=300, items=50, seed=3, topics=3)
    net = Network.from_config(cfg, {"input": (50,), "output": (50,)}, seed=1)
    assert tuple(net.weights["w1"].shape) == (600, 400) and tuple(net.weights["w2"].shape) == (200, 600)
    trainer = Trainer(net, "adam", Hyperparameters(alpha=0.001, lam=0.0), batch_size=50, progress=False)
    errors = [r.training_error for r in trainer.fit({"input": data, "output": data}, 4)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert net.encode(data, "Latent").shape == (300, 200)
