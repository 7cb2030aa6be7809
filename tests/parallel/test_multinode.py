"""Two "nodes" on this machine: two torchrun launchers, ``--nnodes 2 --nproc-per-node 1``, meeting
on loopback through torch.distributed's rendezvous (c10d, as across hosts, and the static
``--master-addr``/``--master-port`` one), or two processes given what ``mpirun`` across two
hosts gives them (Open MPI's rank variables, local rank 0 each, MASTER_ADDR exported), train a
model-parallel network with ``destiny train`` on gloo. The network equals the one a single
node's two processes write (bitwise: same world, same ranks) and the one-process network
within float32 rounding (see test_model_parallel)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest

from destiny.cli.main import main
from destiny.data import SparseDataset, write_netcdf
from destiny.io.network_file import read_network
from tests.helpers import clustered_dataset
from tests.parallel.launch import REPO, TIMEOUT_S, torchrun

CONFIG = {"Version": 0.8, "ErrorFunction": "ScaledMarginalCrossEntropy", "Denoising": {"p": 0.1},
          "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
                     {"Name": "Hidden", "N": 19, "Activation": "Relu", "pDropout": 0.2},
                     {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True}]}


TEARDOWN_ABORT = "terminate called without an active exception"  # pytorch/pytorch#179291


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(how: str, *args: str) -> list[str]:
    """Run ``python ARGS`` as two one-process "nodes" meeting at 127.0.0.1 (``how``: c10d, static
    or mpirun, see ``node_commands``); their outputs. Fails the test if either fails; gloo's
    abort at interpreter teardown alone is retried once, as ``launch.torchrun`` does."""
    for attempt in range(2):
        nodes, outputs = _run_nodes(how, args)
        failed = [rank for rank, node in enumerate(nodes) if node.returncode != 0]
        if not failed:
            return outputs
        if attempt or not any(TEARDOWN_ABORT in out for out in outputs):
            break
        warnings.warn(f"two nodes ({how}): a process aborted at teardown; run again")
    pytest.fail(f"node {failed[0]} of two ({how}) failed ({nodes[failed[0]].returncode}):\n"
                + "\n---\n".join(o[-4000:] for o in outputs))


def node_commands(how: str, port: int, args) -> list[tuple[list[str], dict[str, str]]]:
    """(command, extra environment) of each node.

    c10d: ``torchrun --nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:PORT`` on every node,
    as across hosts (nodes are numbered as they join; the endpoint's host serves). static:
    ``torchrun --nnodes 2 --node-rank R --master-addr HOST --master-port PORT``. mpirun: no
    launcher here; each process gets what ``mpirun -np 2 --map-by node -x MASTER_ADDR=HOST
    -x MASTER_PORT=PORT`` gives it (Open MPI's rank variables, local rank 0 on each node).
    """
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
    if how == "c10d":
        meet = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "destiny-test",
                "--local-addr", "127.0.0.1"]
        return [([*torchrun, *meet, *args], {}) for _ in range(2)]
    if how == "static":
        meet = ["--master-addr", "127.0.0.1", "--master-port", str(port)]
        return [([*torchrun, *meet, "--node-rank", str(rank), *args], {}) for rank in range(2)]
    mpi = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMPI_COMM_WORLD_SIZE": "2",
           "OMPI_COMM_WORLD_LOCAL_RANK": "0"}
    return [([sys.executable, *args], {**mpi, "OMPI_COMM_WORLD_RANK": str(rank)}) for rank in range(2)]


def _run_nodes(how: str, args) -> tuple[list[subprocess.Popen], list[str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    nodes = [subprocess.Popen(command, cwd=REPO, env={**env, **extra}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for command, extra in node_commands(how, free_port(), args)]
    try:
        return nodes, [node.communicate(timeout=TIMEOUT_S)[0] for node in nodes]
    except subprocess.TimeoutExpired:
        for node in nodes:
            node.kill()
        pytest.fail(f"two nodes ({how}) ran past {TIMEOUT_S} s:\n"
                    + "\n".join((node.communicate()[0] or "")[-3000:] for node in nodes))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The data, the training command and the networks of one process and of one node × 2."""
    tmp = tmp_path_factory.mktemp("multinode")
    d = clustered_dataset(90, 47, seed=1)
    for name in ("input", "output"):
        write_netcdf(tmp / f"{name}.nc", SparseDataset(name, (47,), d.offsets, d.indices))
    (tmp / "net.json").write_text(json.dumps(CONFIG))
    train = ["train", "-c", str(tmp / "net.json"), "-i", str(tmp / "input.nc"), "-o", str(tmp / "output.nc"),
             "-b", "16", "-e", "2", "--optimizer", "adam", "--alpha", "0.01", "--quiet", "--device", "cpu"]
    assert main([*train, "-n", str(tmp / "one.nc")]) == 0
    torchrun(2, "-m", "destiny", *train, "-n", str(tmp / "node.nc"))
    return tmp, train


@pytest.mark.parametrize("how", ["c10d", "static", "mpirun"])
def test_two_nodes_train_the_network_of_one_node(trained, how):
    tmp, train = trained
    path = tmp / f"nodes-{how}.nc"
    outputs = two_nodes(how, "-m", "destiny", *train, "-n", str(path))
    assert sum(out.count("Saved ") for out in outputs) == 1  # the global rank 0 alone writes and prints
    assert "× 2 processes (model parallel)" in " ".join("".join(outputs).split())  # rich may wrap the line
    one, node, nodes = (read_network(tmp / "one.nc"), read_network(tmp / "node.nc"), read_network(path))
    assert nodes.info["epoch"] == 2
    for a, b, c in zip(one.weights, node.weights, nodes.weights):
        np.testing.assert_array_equal(c.weights, b.weights)  # 2 nodes × 1 = 1 node × 2, bit for bit
        np.testing.assert_array_equal(c.bias, b.bias)
        np.testing.assert_allclose(c.weights, a.weights, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c.bias, a.bias, rtol=1e-5, atol=1e-6)
