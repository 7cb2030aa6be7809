"""``destiny fingerprint NETWORK.nc``: the hash of a network's weights, to compare runs."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fingerprint", help="print the fingerprint (hash of all weights) of network files",
        description="Print a short hash of all weights, biases and batch-norm arrays of each network file. "
                    "Runs with the same data, config, seed, hardware and number of GPUs print the same "
                    "fingerprint; `destiny train` prints it at the end and at each checkpoint.")
    p.add_argument("networks", nargs="+", metavar="NETWORK.nc")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from destiny.io.network_file import read_network
    from destiny.train.fingerprint import fingerprint_file

    for path in args.networks:
        network = read_network(path)
        fingerprint = fingerprint_file(network)
        stored = network.info.get("fingerprint")
        note = "" if stored in (None, fingerprint) else f"  (the file says {stored}: its weights were changed)"
        epoch = f"  epoch {network.info['epoch']}" if "epoch" in network.info else ""
        print(f"{fingerprint}  {path}{epoch}{note}")
    return 0
