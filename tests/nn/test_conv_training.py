"""Training convolutional networks end to end: Destiny's Trainer on image datasets matches a plain
PyTorch model step for step (same initial weights, order and Adam; no dropout), and a small
strawman-like network learns scikit-learn's 8 × 8 digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from destiny.config import loads_config
from destiny.data import images_to_datasets
from destiny.nn.network import Network
from destiny.predict.accuracy import top_k_accuracy
from destiny.train.optimizers import Hyperparameters
from destiny.train.trainer import Trainer


def strawman_like(n1=6, n2=8, dropout=0.0, classes=5):
    return loads_config(json.dumps({"ErrorFunction": "CrossEntropy", "Layers": [
        {"Name": "in", "Kind": "Input", "Type": "Convolutional", "N": "auto", "DataSet": "input"},
        {"Name": "c1", "Type": "Convolutional", "N": n1, "Kernel": [3, 3], "KernelStride": [1, 1],
         "Activation": "Relu", "pDropout": dropout, "WeightInit": {"Scheme": "Gaussian", "Scale": 0.2}},
        {"Name": "c2", "Type": "Convolutional", "N": n2, "Kernel": [3, 3], "KernelStride": [2, 2],
         "Activation": "Relu", "WeightInit": {"Scheme": "Gaussian", "Scale": 0.2, "Bias": 0.1}},
        {"Name": "p", "Type": "Pooling", "Function": "Average", "Kernel": [2, 2]},
        {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "SoftMax",
         "WeightInit": {"Scheme": "Gaussian", "Scale": 0.1}}]}))


class Plain(torch.nn.Module):
    def __init__(self, n1, n2, flat, classes):
        super().__init__()
        self.c1 = torch.nn.Conv2d(2, n1, 3, padding=1)
        self.c2 = torch.nn.Conv2d(n1, n2, 3, stride=2)
        self.fc = torch.nn.Linear(flat, classes)

    def forward(self, x):
        x = F.relu(self.c2(F.relu(self.c1(x))))
        x = F.avg_pool2d(x, 2, stride=1, padding=1, count_include_pad=False)[:, :, :-1, :-1]  # "same", even kernel
        return self.fc(x.flatten(1))


def test_training_matches_plain_pytorch_step_for_step():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 7, 9, 2), dtype=np.uint8)  # NHWC: height 7, width 9
    inputs, outputs = images_to_datasets(images, rng.integers(0, 5, size=40), n_classes=5)
    net = Network.from_config(strawman_like(), {"input": inputs.dims, "output": outputs.dims}, seed=1,
                              dtype=torch.float64)
    plain = Plain(6, 8, 8 * 3 * 4, 5).double()
    with torch.no_grad():
        plain.c1.weight.copy_(net.weights["w0"].permute(0, 1, 3, 2))
        plain.c1.bias.copy_(net.biases["b0"])
        plain.c2.weight.copy_(net.weights["w1"].permute(0, 1, 3, 2))
        plain.c2.bias.copy_(net.biases["b1"])
        plain.fc.weight.copy_(net.weights["w2"].t())
        plain.fc.bias.copy_(net.biases["b2"])
    trainer = Trainer(net, "adam", Hyperparameters(alpha=0.01, lam=0.0), batch_size=16, seed=3, progress=False)
    opt = torch.optim.Adam(plain.parameters(), lr=0.01, eps=1e-8)
    x_all = torch.from_numpy(inputs.data).double() / 256 - 0.5
    y_all = torch.from_numpy(outputs.indices).long()
    epochs = 3
    for epoch in range(1, epochs + 1):
        order = trainer.order(40, epoch)
        for b in range(0, 40, 16):
            idx = order[b:b + 16]
            loss = F.cross_entropy(plain(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    trainer.fit({"input": inputs, "output": outputs}, epochs)
    with torch.no_grad():
        want = torch.softmax(plain(x_all), 1)
    torch.testing.assert_close(net.predict(inputs)["out"], want, rtol=1e-9, atol=1e-9)


def test_a_strawman_like_network_learns_digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    images = np.round(d.images / 16 * 255).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:1297], order[1297:]
    tr = images_to_datasets(images[train], d.target[train], n_classes=10)
    te = images_to_datasets(images[test], d.target[test], n_classes=10)
    cfg = loads_config(json.dumps({"ErrorFunction": "CrossEntropy", "Layers": [
        {"Name": "in", "Kind": "Input", "Type": "Convolutional", "N": "auto", "DataSet": "input"},
        {"Name": "c1", "Type": "Convolutional", "N": 16, "Kernel": [3, 3], "Activation": "Relu",
         "WeightInit": {"Scheme": "Xavier"}},
        {"Name": "c2", "Type": "Convolutional", "N": 16, "Kernel": [3, 3], "KernelStride": [2, 2],
         "Activation": "Relu", "BatchNormalization": True, "WeightInit": {"Scheme": "Xavier"}},
        {"Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "SoftMax"}]}))
    net = Network.from_config(cfg, {"input": tr[0].dims, "output": tr[1].dims}, seed=2)
    trainer = Trainer(net, "adam", Hyperparameters(alpha=0.003), batch_size=32, progress=False)
    trainer.fit({"input": tr[0], "output": tr[1]}, 4)
    result = top_k_accuracy(net, te[0], te[1], ks=(1, 5))
    assert result.examples == 500 and result.top[1] > 0.9 and result.top[5] > 0.98
