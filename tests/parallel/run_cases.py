"""Entry point of the model-parallel tests under torchrun (one process a rank, gloo on CPU):

    python -m torch.distributed.run --standalone --nproc-per-node N tests/parallel/run_cases.py OUT_DIR [REF.nc]

Runs ``cases.run_all`` on the world the launcher describes and has rank 0 write its arrays to
OUT_DIR/results_N.npz (``test_model_parallel`` compares them with one process)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from destiny.parallel import holds_collective_graphs, init_from_environment, shutdown  # noqa: E402
from tests.parallel.cases import run_all  # noqa: E402


class _GraphHolder:
    """Stands for a trainer step whose CUDA graph captured collectives: ``shutdown`` must release
    it (NCCL's communicator destruction waits on such graphs); it leaves a file to say it was."""

    def __init__(self, path: str):
        self.path = path

    def release_graphs(self) -> None:
        with open(self.path, "w") as f:
            f.write("released")


def main() -> None:
    out_dir = sys.argv[1]
    reference = sys.argv[2] if len(sys.argv) > 2 else None
    torch.set_num_threads(1)
    world = init_from_environment("cpu", timeout_s=120)
    arrays = run_all(world, out_dir, reference)
    if world.is_root:
        np.savez(os.path.join(out_dir, f"results_{world.size}.npz"), **arrays)
    holder = _GraphHolder(os.path.join(out_dir, f"released_{world.size}_{world.rank}"))
    holds_collective_graphs(holder)
    shutdown(world)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the interpreter's teardown, where gloo's threads have been seen to abort (see launch.py)


if __name__ == "__main__":
    main()
