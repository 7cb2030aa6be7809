"""``destiny quickstart``: the whole job on built-in synthetic data in seconds on a CPU (measured
in the README).

Synthetic MovieLens-like data with planted tastes → 80/20 split of each user's items → the
talk's MovieLens network (narrower) trained for a few epochs → recommendations for a few users
→ P@10, Recall@10 and NDCG@10 on the held-out items, against recommending the most popular items.
"""

from __future__ import annotations

import argparse
import os


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart", help="train and evaluate a recommender on built-in synthetic data (seconds on a CPU)",
        description="Generate MovieLens-like data, train the DSSTNE talk's MovieLens network (narrower) on "
                    "80% of each user's items, recommend, and compare P@10 on the other 20% with a "
                    "popularity baseline. Files go to --workdir so you can continue with destiny train.")
    p.add_argument("--users", type=int, default=3000, help="synthetic users (default %(default)s)")
    p.add_argument("--items", type=int, default=1500, help="synthetic items (default %(default)s)")
    p.add_argument("--epochs", type=int, default=6, help="training epochs (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch (default %(default)s)")
    p.add_argument("--seed", type=int, default=12134, help="seed of data, weights and training (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--workdir", default="destiny-quickstart", help="where data and network go (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


OUTPUTS = ("train_input.nc", "train_output.nc", "test.nc", "network.json", "network.nc")


def run(args: argparse.Namespace) -> int:
    """The files of --workdir are checked and locked (``destiny.io.outputs.guard``) once it exists."""
    from destiny.errors import UsageError
    from destiny.io.outputs import CommandFiles, guard

    if min(args.users, args.items, args.epochs, args.batch_size) < 1:
        raise UsageError("--users, --items, --epochs and --batch-size must be positive")
    if os.path.exists(args.workdir) and not os.path.isdir(args.workdir):
        raise UsageError(f"--workdir {args.workdir} is a file; --workdir must be a directory (created if missing) for "
                         "the data and the network: name another")
    try:
        os.makedirs(args.workdir, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file on the way: a/b where a is a file
        raise UsageError(f"--workdir {args.workdir} cannot be created: part of its path is a file; --workdir must be "
                         "a directory: name another") from None
    with guard(CommandFiles.of(outputs=[("--workdir", os.path.join(args.workdir, name)) for name in OUTPUTS])):
        return _quickstart(args)


def _quickstart(args: argparse.Namespace) -> int:
    import importlib.resources

    import numpy as np
    from rich.table import Table

    from destiny.backend import device_name, resolve_device
    from destiny.cli.console import console
    from destiny.config import loads_config
    from destiny.data import split_dataset, synthesize, write_netcdf
    from destiny.io.atomic import atomic_open
    from destiny.nn.network import Network
    from destiny.predict.metrics import ranking_metrics
    from destiny.predict.recommend import popularity, recommend
    from destiny.train.checkpoint import save_network, trainer_state
    from destiny.train.optimizers import Hyperparameters
    from destiny.train.trainer import Trainer

    out = console()
    device = resolve_device(args.device)

    # 1. Data: strongly planted tastes (10 topics, 90% of picks by taste) so that a few seconds of
    #    training show what a network learns beyond popularity. 3,000 users × 1,500 items score
    #    2.8× popularity's P@10, as twice the size does, in half the time.
    data = synthesize(args.users, args.items, seed=args.seed, mean_items=min(60.0, args.items / 8),
                      topics=max(1, min(10, args.items // 20)), topic_share=0.9, name="input")
    train, test = split_dataset(data, 0.2, seed=args.seed)
    train_in, train_out = train.replace(name="input"), train.replace(name="output")
    write_netcdf(os.path.join(args.workdir, "train_input.nc"), train_in)
    write_netcdf(os.path.join(args.workdir, "train_output.nc"), train_out)
    write_netcdf(os.path.join(args.workdir, "test.nc"), test.replace(name="output"))
    out.print(f"[bold]Data[/]: {data.n_examples:,} synthetic users × {data.n_features:,} items, "
              f"{data.nnz:,} interactions; 80% of each user's items to train on, 20% held out "
              f"(written to {args.workdir}/)")

    # 2. Network: the talk's MovieLens network, 256 units wide instead of 1536.
    text = importlib.resources.files("destiny").joinpath("configs/quickstart.json").read_text()
    config = loads_config(text, source="quickstart.json")
    with atomic_open(os.path.join(args.workdir, "network.json"), "w") as stream:
        stream.write(text)
    network = Network.from_config(config, {"input": train.dims, "output": train.dims}, seed=args.seed)
    n_params = sum(p.numel() for p in network.parameters())
    out.print(f"[bold]Network[/]: {config.name}: {train.n_features:,} sparse inputs → 3 × 256 ReLU "
              f"(dropout 0.37) → {train.n_features:,} sigmoid outputs, {n_params:,} parameters, on "
              f"{device_name(device)}")

    # 3. Train.
    trainer = Trainer(network, "adam", Hyperparameters(alpha=0.003, lam=0.0), batch_size=args.batch_size,
                      seed=args.seed, device=device, progress=not args.quiet)
    trainer.callbacks.append(lambda r, t: out.print(
        f"  epoch {r.epoch}: training error {r.training_error:.2f}, {r.examples_per_second:,.0f} examples/s"))
    trainer.fit({"input": train_in, "output": train_out}, args.epochs)
    info, _ = trainer_state(trainer)
    save_network(network, os.path.join(args.workdir, "network.nc"), info)

    # 4. Recommend (seen items filtered out) and evaluate on the held-out items.
    _, items = recommend(network, {"input": train_in}, 10, exclude=train)
    _, popular = popularity(train, 10)
    ours = ranking_metrics(items, test.offsets, test.indices, n_items=train.n_features)
    base = ranking_metrics(popular, test.offsets, test.indices, n_items=train.n_features)
    held = [set(test.row(u)[0].tolist()) for u in range(3)]
    out.print("[bold]Recommendations[/] (item numbers; * = a held-out item the user did interact with):")
    for u in range(3):
        recs = " ".join(f"{i}{'*' if i in held[u] else ''}" for i in items[u])
        out.print(f"  user {u} (trained on {len(train.row(u)[0])} items): {recs}")
    table = Table(title="Held-out evaluation (20% of each user's items)")
    for column in ("", "P@10", "Recall@10", "NDCG@10", "Coverage"):
        table.add_column(column, justify="right" if column else "left")
    for name, m in (("Destiny", ours), ("Most popular", base)):
        table.add_row(name, f"{m.precision:.4f}", f"{m.recall:.4f}", f"{m.ndcg:.4f}", f"{m.coverage:.1%}")
    out.print(table)
    out.print(f"Destiny's P@10 is {ours.precision / max(base.precision, 1e-12):.1f}× popularity's. Continue with:")
    out.print(f"  {next_command(args.workdir)}", soft_wrap=True, markup=False)  # one line, however narrow the terminal
    return 0 if np.isfinite(ours.precision) else 1


def next_command(workdir: str) -> str:
    """The ``destiny train`` command that trains the quick start's network further on its data, quoted
    for a POSIX shell: printed on one line, never wrapped, so that it pastes as it is."""
    import shlex

    def path(name: str) -> str:
        return shlex.quote(os.path.join(workdir, name))

    return (f"destiny train -c {path('network.json')} -i {path('train_input.nc')} -o {path('train_output.nc')} "
            f"-n my_network.nc")
