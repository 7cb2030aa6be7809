"""Entry point of ``test_recipes_parallel`` under torchrun (gloo on CPU):

    python -m torch.distributed.run --standalone --nproc-per-node N tests/parallel/run_recipes.py OUT_DIR

Runs ``recipes_cases.run_all`` on the launcher's world; rank 0 writes OUT_DIR/recipes_N.npz and
each rank OUT_DIR/recipes_offsets_N_RANK.npy (its blocks' diagonal offsets)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from destiny.parallel import init_from_environment, shutdown  # noqa: E402
from tests.parallel.recipes_cases import network, run_all  # noqa: E402


def main() -> None:
    out_dir = sys.argv[1]
    torch.set_num_threads(1)
    world = init_from_environment("cpu", timeout_s=120)
    arrays = run_all(world)
    np.save(os.path.join(out_dir, f"recipes_offsets_{world.size}_{world.rank}.npy"),
            np.asarray([offset for _, offset in network(world).diagonals]))
    if world.is_root:
        np.savez(os.path.join(out_dir, f"recipes_{world.size}.npz"), **arrays)
    shutdown(world)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as run_cases.py: skip the teardown where gloo's threads have been seen to abort


if __name__ == "__main__":
    main()
