"""The multinomial likelihood on a SoftMax output split over ranks, with weight decay and a
cosine schedule: the same function runs in one process (pytest, the reference) and under
``torchrun --nproc-per-node N`` on gloo (this file as the script), and returns the same named
arrays on rank 0 (``test_multinomial_parallel`` compares them).

    python -m torch.distributed.run --standalone --nproc-per-node N tests/parallel/multinomial_case.py OUT_DIR

Input(47 sparse) → H(13, Relu, dropout) → Output(47, SoftMax, Multinomial): the output matrix is
split by output columns, so each rank scores its columns against the log-sum-exp of the whole
rows (``ops.functional.sharded_logsumexp``) and its targets are not spread by 1/#targets.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from destiny.parallel import World  # noqa: E402

ITEMS, EXAMPLES, BATCH = 47, 40, 12


def data():
    from tests.helpers import sparse_dataset

    rng = np.random.default_rng(8)
    rows = [np.sort(rng.choice(ITEMS, size=rng.integers(1, 12), replace=False)) for _ in range(EXAMPLES)]
    return sparse_dataset(rows, ITEMS)


def run(world: World) -> dict:
    """Loss before training, two epochs' errors and the trained weights (whole, on rank 0)."""
    from destiny.nn.network import Network
    from destiny.train.checkpoint import whole
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer
    from tests.helpers import config

    cfg = config([
        {"Name": "Input", "N": "auto", "DataSet": "in", "Sparse": True},
        {"Name": "H", "N": 13, "Activation": "Relu", "pDropout": 0.2},
        {"Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "out", "Sparse": True, "Activation": "SoftMax"},
    ], ErrorFunction="Multinomial", WeightDecay=0.05,
        LearningRateSchedule={"Kind": "Cosine", "WarmupSteps": 2, "FinalRatio": 0.1})
    net = Network.from_config(cfg, {"in": (ITEMS,), "out": (ITEMS,)}, seed=6, dtype=torch.float64, world=world)
    sets = {"in": data(), "out": data()}
    trainer = Trainer(net, "adam", Hyperparameters(alpha=0.02), batch_size=BATCH, progress=False, seed=3)
    out = {"initial_error": np.asarray(trainer.evaluate(sets))}
    out["errors"] = np.asarray([r.training_error for r in trainer.fit(sets, 2)])
    out["rates"] = np.asarray([r.learning_rate for r in trainer.history])
    for name, tensor in net.state_dict().items():
        array = whole(net, name, tensor, keep_dtype=True)
        if array is not None:
            out[name] = array
    return out if world.is_root else {}


def main() -> None:
    from destiny.parallel import init_from_environment, shutdown

    out_dir = sys.argv[1]
    torch.set_num_threads(1)
    world = init_from_environment("cpu", timeout_s=120)
    arrays = run(world)
    if world.is_root:
        np.savez(os.path.join(out_dir, f"multinomial_{world.size}.npz"), **arrays)
    shutdown(world)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the interpreter's teardown (gloo's threads, see launch.py)


if __name__ == "__main__":
    main()
