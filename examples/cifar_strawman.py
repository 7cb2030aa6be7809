"""The DSSTNE talk's CIFAR strawman CNN (slide 48, examples/configs/cifar100-strawman.json) trained
by Destiny and by a plain PyTorch model of the same architecture, in one script: same initial
weights (Destiny's, copied), same optimizer and hyperparameters, same epochs, same example order
each epoch, same input scaling (uint8 pixels fed as x/256 − 0.5, DSSTNE's). Prints each one's
test accuracy (top-1, top-5) and seconds an epoch, and the device.

    python examples/cifar_strawman.py ../shared/data/cifar10-subset              # CIFAR-10 subset and digits
    python examples/cifar_strawman.py ../shared/data/cifar10-subset --device cuda --epochs 20
    python examples/cifar_strawman.py --data digits                             # scikit-learn's 8x8 digits only

Data: cifar10-subset holds 2,000 training and 1,000 test images (32 × 32 × 3, 10 classes);
scikit-learn's digits are 1,797 images of 8 × 8 × 1 (10 classes), split 1,297 / 500 with a fixed
seed. The strawman does not fit 8 × 8 inputs (DSSTNE's sizes give 8 → 8 → 8 → 3 → 1, and the
fifth 3 × 3 kernel is wider than its 1 × 1 input), so digits run its first block: the three
96-channel convolutions (dropout 0.2, –, 0.5; the third at stride 2, giving 3 × 3 × 96), then
the SoftMax output layer, with the strawman's initialisation (``DIGITS_CONFIG``).

The two models differ only where they must: dropout masks (Destiny's counter-based Philox
streams, PyTorch's generator) and the order of floating-point sums. Both run under the same
precision settings (fp32: no TF32 in convolutions or GEMMs) and, on CUDA, the same cuDNN
determinism flags that Destiny's Trainer sets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from destiny.backend import device_name, resolve_device
from destiny.config import load_config
from destiny.data import images_to_datasets
from destiny.nn.network import Network
from destiny.predict.accuracy import top_k_accuracy
from destiny.train.optimizers import Hyperparameters
from destiny.train.precision import Precision, matmul_precision
from destiny.train.trainer import Trainer

CONFIG = Path(__file__).resolve().parent / "configs" / "cifar100-strawman.json"


def digits_config():
    """The strawman's first block and its output layer, in DSSTNE's JSON."""
    from destiny.config import loads_config

    doc = json.loads(CONFIG.read_text())
    doc["Name"] = "digits strawman (the first block of the CIFAR strawman)"
    doc["Layers"] = doc["Layers"][:4] + doc["Layers"][-1:]
    return loads_config(json.dumps(doc), source="digits strawman")


# -- data -----------------------------------------------------------------------------------


def cifar(folder: Path):
    train = np.load(folder / "cifar10_train_2000.npz")
    test = np.load(folder / "cifar10_test_1000.npz")
    return (images_to_datasets(train["x"], train["y"], n_classes=10),
            images_to_datasets(test["x"], test["y"], n_classes=10))


def digits(seed: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images / 16.0 * 255.0).astype(np.uint8)  # 0..16 → uint8 pixels
    order = np.random.default_rng(seed).permutation(len(images))
    train, test = order[:1297], order[1297:]
    return (images_to_datasets(images[train], d.target[train], n_classes=10),
            images_to_datasets(images[test], d.target[test], n_classes=10))


# -- the plain PyTorch model ----------------------------------------------------------------

# The strawman's hidden layers: (channels, stride, pDropout); every one a 3 × 3 ReLU convolution.
LAYERS = [(96, 1, 0.2), (96, 1, 0.0), (96, 2, 0.5), (192, 1, 0.0), (192, 1, 0.0), (192, 2, 0.5)]


class Strawman(torch.nn.Module):
    """The strawman in plain PyTorch: "same" padding at stride 1, none at stride 2 (DSSTNE's
    rule), then one Linear layer to the classes (SoftMax in the loss). layers: (channels,
    stride, pDropout) of the hidden convolutions."""

    def __init__(self, channels: int, height: int, width: int, classes: int, layers=LAYERS):
        super().__init__()
        self.layers = layers
        self.convs = torch.nn.ModuleList()
        for out, stride, _ in layers:
            self.convs.append(torch.nn.Conv2d(channels, out, 3, stride=stride, padding=1 if stride == 1 else 0))
            channels = out
            height, width = (height, width) if stride == 1 else ((height - 3) // 2 + 1, (width - 3) // 2 + 1)
        self.fc = torch.nn.Linear(channels * height * width, classes)

    def forward(self, x):
        for conv, (_, _, p) in zip(self.convs, self.layers):
            x = F.relu(conv(x))
            if p:
                x = F.dropout(x, p, self.training)
        return self.fc(x.flatten(1))

    @torch.no_grad()
    def copy_from(self, net: Network) -> None:
        """Destiny's initial weights: filters (out, in, kx, ky) → (out, in, ky, kx); the output
        matrix (inputs, classes) → (classes, inputs), inputs in the same NCHW order."""
        specs = net.specs
        for conv, spec in zip(self.convs, specs[:-1]):
            conv.weight.copy_(net.weight(spec).permute(0, 1, 3, 2))
            conv.bias.copy_(net.bias(spec))
        self.fc.weight.copy_(net.weight(specs[-1]).t())
        self.fc.bias.copy_(net.bias(specs[-1]))


def torch_optimizer(model: torch.nn.Module, args):
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    groups = [{"params": weights, "weight_decay": args.lam}, {"params": biases, "weight_decay": 0.0}]
    if args.optimizer == "adam":  # Destiny's Adam: the same formula, λ on the weights only
        return torch.optim.Adam(groups, lr=args.alpha, betas=(0.9, 0.999), eps=1e-8)
    return torch.optim.SGD(groups, lr=args.alpha, momentum=args.mu, nesterov=True)  # = Destiny's Nesterov


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_pytorch(net: Network, orders, train, test, args, device, layers) -> dict:
    (x_train, y_train), (x_test, y_test) = train, test
    c, h, w = x_train.shape[1:]
    torch.manual_seed(args.seed)
    model = Strawman(c, h, w, 10, layers)
    model.copy_from(net)
    model.to(device)
    opt = torch_optimizer(model, args)
    xs = torch.as_tensor(x_train, device=device)  # uint8, as Destiny holds it
    ys = torch.as_tensor(y_train, dtype=torch.int64, device=device)
    seconds = []
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    if args.pytorch_defaults:  # PyTorch as people run it: cuDNN may benchmark and pick nondeterministic kernels
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    try:
        with matmul_precision(Precision.parse(args.precision)):
            _epochs(model, opt, orders, xs, ys, args, device, seconds)
            model.eval()
            with torch.no_grad():
                logits = torch.cat([model(torch.as_tensor(x_test[i:i + 500], device=device).float() / 256.0 - 0.5)
                                    for i in range(0, len(x_test), 500)]).cpu()
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]
    ranks = (logits > logits.gather(1, torch.as_tensor(y_test, dtype=torch.int64)[:, None])).sum(1)
    return {"top1": float((ranks < 1).double().mean()), "top5": float((ranks < 5).double().mean()),
            "seconds": seconds}


def _epochs(model, opt, orders, xs, ys, args, device, seconds) -> None:
    """The PyTorch model's training epochs, one example order each; seconds appended."""
    for order in orders:
        sync(device)
        start = time.perf_counter()
        model.train()
        order = torch.as_tensor(order, device=device)
        for b in range(0, len(order), args.batch_size):
            idx = order[b:b + args.batch_size]
            x = xs.index_select(0, idx).float() / 256.0 - 0.5
            # cross entropy with an elementwise one-hot: no scatter or nll_loss kernel that
            # deterministic mode might refuse on CUDA
            logp = F.log_softmax(model(x), dim=1)
            hot = torch.arange(logp.shape[1], device=device)[None, :] == ys.index_select(0, idx)[:, None]
            loss = -(hot.to(logp.dtype) * logp).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        seconds.append(time.perf_counter() - start)


# -- Destiny --------------------------------------------------------------------------------


def run(name: str, data, args, device, config, layers) -> dict:
    (train_in, train_out), (test_in, test_out) = data
    net = Network.from_config(config, {"input": train_in.dims, "output": train_out.dims}, seed=args.seed)
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    hyper = Hyperparameters(alpha=args.alpha, lam=args.lam, mu=args.mu if args.optimizer == "nesterov" else None)
    trainer = Trainer(net, args.optimizer, hyper, batch_size=args.batch_size, seed=args.seed, device=device,
                      shuffle=True, progress=False, precision=args.precision)
    orders = [trainer.order(train_in.n_examples, epoch).numpy() for epoch in range(1, args.epochs + 1)]
    seconds = []

    def timed(result, tr):
        seconds.append(result.seconds)
        print(f"  {name} Destiny epoch {result.epoch}: training error {result.training_error:.4f}, "
              f"{result.seconds:.2f} s", flush=True)

    trainer.callbacks.append(timed)
    sync(device)
    trainer.fit({"input": train_in, "output": train_out}, args.epochs)
    destiny = top_k_accuracy(net, test_in, test_out, ks=(1, 5), device=device)
    mine = {"top1": destiny.top[1], "top5": destiny.top[5], "seconds": seconds}

    reference = Network.from_config(config, {"input": train_in.dims, "output": train_out.dims}, seed=args.seed)
    reference.load_state_dict(initial)  # the same initial weights for the PyTorch model
    plain = train_pytorch(reference, orders, (train_in.data, train_out.indices), (test_in.data, test_out.indices),
                          args, device, layers)
    return {"data": name, "train": train_in.n_examples, "test": test_in.n_examples, "dims": list(train_in.dims),
            "destiny": mine, "pytorch": plain,
            "graph": trainer.graph_status() if device.type == "cuda" else None}


def per_epoch(seconds: list[float]) -> float:
    """Seconds an epoch after the first (the first pays for warm-up and CUDA graph capture)."""
    rest = seconds[1:] or seconds
    return sum(rest) / len(rest)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cifar", nargs="?", type=Path, help="the cifar10-subset folder (../shared/data/cifar10-subset)")
    p.add_argument("--data", choices=("both", "cifar", "digits"), default="both")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--digits-epochs", type=int, default=None, help="epochs on digits (default --epochs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=("adam", "nesterov"), default="adam")
    p.add_argument("--alpha", type=float, default=0.0005, help="learning rate (default 0.0005)")
    p.add_argument("--lam", type=float, default=0.0001, help="L2 on the weights (default 0.0001, DSSTNE's)")
    p.add_argument("--mu", type=float, default=0.9, help="Nesterov's momentum")
    p.add_argument("--seed", type=int, default=12134)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    p.add_argument("--pytorch-defaults", action="store_true",
                   help="run the PyTorch model with PyTorch's usual CUDA settings (cuDNN benchmark, nondeterministic "
                        "kernels allowed) instead of the deterministic ones Destiny trains under")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.precision == "bf16":
        print("bf16 runs Destiny under autocast; the PyTorch model stays fp32 here: compare fp32 or tf32 runs",
              file=sys.stderr)
    print(f"Device: {device_name(device)}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          f"{args.optimizer} alpha {args.alpha:g} lambda {args.lam:g}, batch {args.batch_size}, {args.precision}",
          flush=True)
    results = []
    if args.data in ("both", "cifar"):
        if args.cifar is None:
            p.error("give the cifar10-subset folder, or --data digits")
        results.append(run("cifar10-subset", cifar(args.cifar), args, device, load_config(CONFIG), LAYERS))
    if args.data in ("both", "digits"):
        epochs = args.epochs
        args.epochs = args.digits_epochs or epochs
        results.append(run("sklearn-digits", digits(), args, device, digits_config(), LAYERS[:3]))
        args.epochs = epochs
    print()
    print(f"{'data':16} {'model':8} {'top-1':>7} {'top-5':>7} {'s/epoch':>8} {'first epoch s':>14}")
    for r in results:
        for model in ("destiny", "pytorch"):
            m = r[model]
            print(f"{r['data']:16} {model:8} {m['top1']:7.2%} {m['top5']:7.2%} {per_epoch(m['seconds']):8.2f} "
                  f"{m['seconds'][0]:14.2f}")
        gap = 100 * (r["destiny"]["top1"] - r["pytorch"]["top1"])
        speed = per_epoch(r["pytorch"]["seconds"]) / per_epoch(r["destiny"]["seconds"])
        print(f"{r['data']:16} Destiny − PyTorch top-1: {gap:+.1f} points; Destiny is {speed:.2f}× PyTorch's speed")
    if args.json_out:
        doc = {"device": device_name(device), "args": {k: str(v) for k, v in vars(args).items()}, "results": results}
        args.json_out.write_text(json.dumps(doc, indent=2) + "\n")
    ok = all(abs(r["destiny"]["top1"] - r["pytorch"]["top1"]) <= 0.02 for r in results)
    print("within 2 points:", "yes" if ok else "no")
    return 0 if not math.isnan(sum(r["destiny"]["top1"] for r in results)) else 1


if __name__ == "__main__":
    sys.exit(main())
