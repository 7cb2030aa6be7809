"""``destiny train``: DSSTNE's train tool (same short flags) with long options.

Model parallel with the same command line under a launcher (DSSTNE's ``mpirun -np N train``):

    torchrun --nproc-per-node N -m destiny train -c net.json -i in.nc -o out.nc -n net.nc
    torchrun --nproc-per-node N --no-python destiny train …       (the installed script)
    mpirun -np N destiny train …                                  (Open MPI, MPICH)
    torchrun --nnodes M --nproc-per-node N --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m destiny train …

When the launcher's variables say there are several processes (``destiny.parallel.
init_from_environment``), every process reads the same files, holds its shards of every layer
on its GPU (cuda:LOCAL_RANK; gloo on CPU) and trains them; only rank 0 prints and writes the
network (the ordinary whole file, loadable on any number of processes).

Validation-driven training: ``--validation held.nc`` gives the held-out items of the training
users as the output layer's dataset (a validation input dataset, when given, replaces the
users' training rows as the network's input); ``--monitor ndcg@100``, ``--patience N`` or
``--validate-every N`` then rank the output's items for those users (their input items
removed) every N epochs, print the ranking metrics, stop after N validations without
improvement, and write the best epoch's weights (``destiny.train.validation``).
"""

from __future__ import annotations

import argparse
import os


def register(subparsers) -> None:
    from destiny.cli.memory import add_memory_arguments

    p = subparsers.add_parser(
        "train", help="train a network from a JSON description and NetCDF datasets",
        description="Train the network described by CONFIG on the datasets of the input and output "
                    "NetCDF files (matched to layers by DataSet name, as DSSTNE does) and write it to "
                    "NETWORK in DSSTNE's network format.")
    p.add_argument("-c", "--config", required=True, metavar="CONFIG.json", help="network description")
    p.add_argument("-i", "--input", required=True, metavar="INPUT.nc", help="NetCDF file with the input dataset(s)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT.nc", help="NetCDF file with the target dataset(s)")
    p.add_argument("-n", "--network", required=True, metavar="NETWORK.nc", help="trained network to write")
    p.add_argument("-b", "--batch-size", type=int, default=1024, metavar="N", help="minibatch size (default 1024)")
    p.add_argument("-e", "--epochs", type=int, default=40, metavar="N", help="epochs (default 40)")
    p.add_argument("-d", dest="dataset_prefix", help=argparse.SUPPRESS)  # DSSTNE lists -d but ignores it
    p.add_argument("--optimizer", default="sgd",
                   help="sgd, momentum, nesterov, adagrad, rmsprop, adadelta or adam (default sgd, as DSSTNE)")
    p.add_argument("--alpha", "-alpha", type=float, help="learning rate (default 0.025 for the SGD family)")
    p.add_argument("--lambda", "-lambda", dest="lam", type=float, default=0.0001, help="L2 weight decay (default 0.0001)")
    p.add_argument("--lambda1", "-lambda1", dest="lam1", type=float, default=0.0, help="L1 weight decay (default 0)")
    p.add_argument("--mu", "-mu", type=float, help="momentum / averaging rate (Adam's beta1)")
    p.add_argument("--mu1", "-mu1", type=float, help="Adam's beta2")
    p.add_argument("--seed", type=int, default=12134, help="seed of weights, shuffling and noise (default 12134, DSSTNE's)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"),
                   help="matrix arithmetic: fp32 (default, DSSTNE's), tf32, or bf16 with fp32 master weights")
    p.add_argument("--validation", action="append", default=[], metavar="FILE.nc",
                   help="NetCDF file(s) with validation datasets of the same names; the validation error is "
                        "printed every epoch (repeat for separate input and output files). The output "
                        "dataset holds the held-out items; an input dataset missing from them is the training "
                        "one (the same users, one row each in the same order)")
    p.add_argument("--monitor", "--metric", dest="monitor", metavar="METRIC",
                   help="with --validation: score ranking metrics of the output's top items for the validation "
                        "users (their input items removed) against the held-out items, and follow METRIC for "
                        "early stopping: ndcg@K, recall@K, recall_min@K, precision@K (p@K), map@K, hit_rate@K, "
                        "or validation_error (the loss); default ndcg@100 when --patience or --validate-every "
                        "is given. The network written holds the best validated epoch's weights")
    p.add_argument("--patience", type=int, metavar="N",
                   help="with --validation: stop after N validations in a row without improvement of --monitor "
                        "(default: train every epoch, still keeping the best)")
    p.add_argument("--validate-every", type=int, metavar="N",
                   help="with --validation: score the ranking metrics every N epochs and after the last (default 1)")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                   help="shuffle the examples every epoch (default: the config's ShuffleIndices)")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="write NETWORK.epoch<N>.nc with the training state every N epochs")
    p.add_argument("--checkpoint-batches", type=int, default=0, metavar="N",
                   help="also write NETWORK.epoch<E>.batch<B>.nc every N minibatches within an epoch (the two "
                        "newest are kept), so that --resume loses at most N minibatches")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint of NETWORK (damaged ones are skipped with a "
                        "warning; none: start from the beginning); the result is identical to an uninterrupted run. "
                        "Give the same options as the interrupted run; -e is the total number of epochs")
    p.add_argument("--nan-check", type=int, default=None, metavar="N",
                   help="check the loss and the parameters for NaN/Inf every N minibatches (default: every one on "
                        "the CPU, every 100 on CUDA; 0: at the end of each epoch); training stops naming the batch, "
                        "epoch and layers")
    p.add_argument("--divergence-brake", type=float, nargs="?", const=2.0, default=None, metavar="FACTOR",
                   help="DSSTNE's divergence brake: after 100 minibatches of an epoch, a minibatch whose error exceeds "
                        "FACTOR (default 2) times the running average skips its update and the next 24 use a tenth "
                        "of the learning rate (costs a forward pass a minibatch; off by default)")
    p.add_argument("--history", metavar="FILE.json",
                   help="write the per-epoch errors to FILE.json after every epoch (for destiny plot)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write the training curves (training and validation loss, ranking metrics, learning "
                        "rate, per epoch) as TensorBoard event files in DIR (tensorboard --logdir DIR); needs pip "
                        "install destiny[tensorboard]")
    p.add_argument("--force", action="store_true", help="overwrite NETWORK if it exists (DSSTNE refuses)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_memory_arguments(p)
    p.set_defaults(run=run, files=files)


def files(args: argparse.Namespace):
    """The command's inputs and outputs (checked distinct and locked before it runs); the
    history is both with --resume, which keeps its epochs before the checkpoint."""
    from destiny.io.outputs import CommandFiles

    inputs = [("-c", args.config), ("-i", args.input), ("-o", args.output)]
    inputs += [("--validation", path) for path in args.validation]
    if args.resume:
        inputs.append(("--history", args.history))
    return CommandFiles.of(inputs, [("-n", args.network), ("--history", args.history)])


def read_datasets(paths: list[str]) -> dict:
    """All datasets of the files, by name (a name in two files must be the same data)."""
    from destiny.data import read_netcdf
    from destiny.errors import DataError

    found: dict = {}
    where: dict = {}
    for path in paths:
        for dataset in read_netcdf(path):
            if dataset.name in found and os.path.abspath(where[dataset.name]) != os.path.abspath(path):
                if dataset.n_examples != found[dataset.name].n_examples:
                    raise DataError(f"dataset '{dataset.name}' is in both {where[dataset.name]} and {path} "
                                    "with different contents; give each dataset one name")
            found.setdefault(dataset.name, dataset)
            where.setdefault(dataset.name, path)
    return found


def check_dataset_names(args: argparse.Namespace, config) -> None:
    """DataError before any data are read when a dataset an Input or Output layer reads (its
    DataSet) is in neither -i nor -o: names the file that should hold it (-i for an Input
    layer's, -o for an Output layer's), the datasets that file holds, and every name the
    network expects."""
    from destiny.data import inspect_netcdf
    from destiny.errors import DataError

    files = {"-i": args.input, "-o": args.output}
    held = {flag: [info.name for info in inspect_netcdf(path)] for flag, path in files.items()}
    given = {name for names in held.values() for name in names}
    reads = [(layer, "-i") for layer in config.input_layers] + [(layer, "-o") for layer in config.output_layers]
    expected = list(dict.fromkeys(f"'{layer.dataset}' (from {flag})" for layer, flag in reads))
    for layer, flag in reads:
        if layer.dataset not in given:
            found = ", ".join(f"'{name}'" for name in held[flag])
            raise DataError(f"{flag} {files[flag]} holds dataset{'s' * (len(held[flag]) > 1)} {found}, but layer "
                            f"'{layer.name}' reads dataset '{layer.dataset}' (its DataSet in {args.config}); the "
                            f"network expects {', '.join(expected[:-1]) + ' and ' if len(expected) > 1 else ''}"
                            f"{expected[-1]}: write the data under that name (destiny generate -d {layer.dataset}), "
                            "or set the layer's DataSet to the name in the file")


def first_monitored(metrics: dict, trainer) -> list[str]:
    """The metric names of an epoch, the monitored one first."""
    monitor = trainer.stopping.monitor if trainer.stopping is not None else None
    return sorted(metrics, key=lambda name: name != monitor)


def validating(args: argparse.Namespace) -> bool:
    """Whether the command line asks for ranking validation and early stopping."""
    return any(getattr(args, name, None) is not None for name in ("monitor", "patience", "validate_every"))


def _monitor(args: argparse.Namespace) -> str:
    from destiny.train.validation import metric_name

    return metric_name(args.monitor or "ndcg@100")


def check_validation_options(args: argparse.Namespace) -> None:
    """UsageError for --monitor/--patience/--validate-every values that cannot work."""
    from destiny.errors import UsageError

    if not validating(args):
        return
    if not args.validation:
        raise UsageError("--monitor, --patience and --validate-every score held-out items: give them with "
                         "--validation FILE.nc (the output dataset's held-out items of the training users)")
    _monitor(args)  # an unknown metric or a bad K is a UsageError
    if args.patience is not None and args.patience < 0:
        raise UsageError(f"--patience {args.patience}: give a number of validations ≥ 0")
    if args.validate_every is not None and args.validate_every < 1:
        raise UsageError(f"--validate-every {args.validate_every}: give a positive number of epochs")


def complete_validation(config, datasets: dict, validation: dict | None, paths: list[str]) -> dict | None:
    """The validation datasets with every Input layer's dataset they lack taken from the
    training datasets (the users' training rows); DataError when a dataset's width differs
    from the training one of the same name, or the example counts differ."""
    from destiny.errors import DataError

    if not validation:
        return validation
    where = " and ".join(paths)
    for name, data in validation.items():
        if name in datasets and tuple(data.dims) != tuple(datasets[name].dims):
            raise DataError(f"validation dataset '{name}' ({where}) is {_dims(data)} wide but the training dataset "
                            f"'{name}' is {_dims(datasets[name])}; write both with the same feature index "
                            "(generate --features)")
    out = dict(validation)
    borrowed = []
    for layer in config.input_layers:
        if layer.dataset not in out and layer.dataset in datasets:
            out[layer.dataset] = datasets[layer.dataset]
            borrowed.append(layer.dataset)
    counts = {name: int(_examples(data)) for name, data in out.items()}
    if len(set(counts.values())) > 1:
        sizes = ", ".join(f"'{k}' {v:,}" + (" (training)" if k in borrowed else "") for k, v in counts.items())
        fix = ("the held-out items must be those of the training users: one row per training example, in the same "
               "order (empty rows for users without held-out items), or give the validation users' input rows too"
               if borrowed else "give every validation dataset one row per validation user, in the same order")
        raise DataError(f"validation ({where}): the datasets have different numbers of examples ({sizes}); {fix}")
    return out


def _dims(data) -> str:
    return " × ".join(f"{d:,}" for d in data.dims)


def _examples(data) -> int:
    return data.n_examples if hasattr(data, "n_examples") else len(data.offsets) - 1


def ranking_validator(args: argparse.Namespace, network, validation: dict | None):
    """The RankingValidator of the command line (None without ranking validation): the
    validation inputs ranked, the first Output layer's validation dataset as held-out items."""
    from destiny.errors import DataError
    from destiny.train.validation import DEFAULT_METRICS, LOSS_MONITOR, RankingValidator

    if not validating(args) or not validation:
        return None
    output = network.output_layers()[0]
    held = validation.get(output.dataset)
    if held is None or not hasattr(held, "indices") and not hasattr(held, "read_rows"):
        raise DataError(f"ranking validation needs the held-out items as the sparse dataset '{output.dataset}' of "
                        f"output layer '{output.name}' in {' or '.join(args.validation)}")
    monitor = _monitor(args)
    metrics = list(DEFAULT_METRICS) + ([monitor] if monitor not in DEFAULT_METRICS + (LOSS_MONITOR,) else [])
    inputs = {layer.dataset: validation[layer.dataset] for layer in network.input_layers()}
    (first, *others) = network.input_layers()
    seen = not others and first.sparse and network.units[first.name] == network.units[output.name]
    return RankingValidator(inputs, held, metrics=metrics, every=args.validate_every or 1, seen=seen)


def dataset_dims(datasets: dict) -> dict:
    return {name: tuple(d.dims) for name, d in datasets.items()}


# arrays of optimizer state a checkpoint holds for each parameter
def check_disk_space(args: argparse.Namespace, n_parameters: int, optimizer: str, epochs_done: int) -> None:
    """ResourceError before training when the network file and the checkpoints still to be
    written (every --checkpoint-every epochs, the two newest of --checkpoint-batches) would not
    fit on the disk of NETWORK."""
    from destiny.io.outputs import check_free_space, network_file_bytes
    from destiny.train.optimizers import state_slots

    needed = network_file_bytes(n_parameters)
    epochs = args.epochs - epochs_done
    kept = (epochs // args.checkpoint_every if args.checkpoint_every else 0) + (2 if args.checkpoint_batches else 0)
    what = f"the network file ({n_parameters:,} parameters)"
    if kept:
        needed += kept * network_file_bytes(n_parameters, state_slots(optimizer))
        what += f" and {kept} checkpoint{'s' if kept > 1 else ''}"
    check_free_space(args.network, needed, what)


class Quiet:
    """The console of a process that is not rank 0: prints nothing."""

    def print(self, *args, **kwargs) -> None:
        pass


def launched_world(device: str):
    """The model-parallel World when a launcher (torchrun, mpirun) started several processes,
    else one process on ``device``."""
    from destiny.backend import resolve_device
    from destiny.parallel import World, environment_world_size, init_from_environment

    if environment_world_size() > 1:
        return init_from_environment(device)
    return World.single(resolve_device(device))


def run(args: argparse.Namespace) -> int:
    from destiny.errors import UsageError
    from destiny.parallel import shutdown
    from destiny.train.resume import check_fault_options

    if args.epochs < 1 or args.batch_size < 1:
        raise UsageError("--epochs and --batch-size must be positive integers")
    check_validation_options(args)
    check_fault_options(args)
    if args.tensorboard:  # before any data are read: a file in the way, or tensorboard not installed
        from destiny.train.tensorboard import check_log_dir, summary_writer_class

        check_log_dir(args.tensorboard, "--tensorboard")
        summary_writer_class()
    if os.path.exists(args.network) and not args.force:
        raise UsageError(f"{args.network} exists; DSSTNE's train refuses to overwrite a network, and so does "
                         "Destiny: remove it, name another file, or pass --force")
    world = launched_world(args.device)
    try:
        return _train(args, world)
    finally:
        shutdown(world)


def _train(args: argparse.Namespace, world) -> int:
    from destiny.backend import device_name
    from destiny.cli.console import console
    from destiny.cli.memory import load_datasets
    from destiny.config import load_config
    from destiny.nn.footprint import check_training
    from destiny.nn.network import Network
    from destiny.train.checkpoint import network_from_file, save_network, trainer_state
    from destiny.train.faults import DivergenceBrake
    from destiny.train.optimizers import Hyperparameters, Optimizer
    from destiny.train.resume import (CheckpointWriter, checkpoint_path, newest_checkpoint, remove_stale_temporaries,
                                      resume_trainer, stem_of)
    from destiny.train.trainer import Trainer

    out = console() if world.is_root else Quiet()
    if world.is_root:  # the guard removed the network's own; these are its checkpoints'
        for stale in remove_stale_temporaries(stem_of(args.network)):
            out.print(f"Removed {stale}, left by an interrupted run", markup=False, soft_wrap=True)
    config = load_config(args.config)
    check_dataset_names(args, config)  # before reading any data
    device = world.device
    datasets, validation = load_datasets([[args.input, args.output], args.validation], args, device, out.print)
    validation = complete_validation(config, datasets, validation, args.validation)
    stem = stem_of(args.network)
    resumed = newest_checkpoint(stem) if args.resume else None
    examples = min((len(d) for d in datasets.values()), default=args.batch_size)
    check_training(config, dataset_dims(datasets), optimizer=args.optimizer,  # before allocating anything
                   batch_size=min(args.batch_size, examples), device=device, world_size=world.size, source=args.config)
    if resumed is not None:
        network = network_from_file(resumed[1], source=resumed[0], world=world if world.parallel else None)
    else:
        network = Network.from_config(config, dataset_dims(datasets), seed=args.seed, source=args.config,
                                      world=world if world.parallel else None)  # one process: built on the CPU
    optimizer = Optimizer.parse(args.optimizer)
    hyper = Hyperparameters(alpha=args.alpha, lam=args.lam, lam1=args.lam1, mu=args.mu, mu1=args.mu1)
    brake = DivergenceBrake(factor=args.divergence_brake) if args.divergence_brake is not None else None
    validator = ranking_validator(args, network, validation)
    trainer = Trainer(network, optimizer, hyper, batch_size=args.batch_size, seed=args.seed, device=device,
                      shuffle=args.shuffle, progress=not args.quiet, precision=args.precision, world=world,
                      nan_check=args.nan_check, brake=brake, validator=validator,
                      monitor=_monitor(args) if validating(args) else None, patience=args.patience,
                      console=lambda: console(stderr=True))
    if resumed is not None:
        resume_trainer(trainer, config, args, *resumed, out.print)
        if trainer.stopping is not None:
            out.print(f"Early stopping starts afresh at epoch {trainer.epoch + 1}: the checkpoint does not hold the "
                      "best weights of the epochs before it")
    elif args.resume:
        out.print(f"No checkpoint of {args.network} to resume from: starting at epoch 1")
    where = device_name(device) + (f" × {world.size} processes (model parallel)" if world.parallel else "")
    out.print(f"Training {config.name or args.config}: {network.n_parameters():,} parameters, {optimizer.value}, "
              f"alpha {trainer.optimizer.hyper.alpha:g}, batch {args.batch_size}, on {where}")
    if world.is_root:
        check_disk_space(args, network.n_parameters(), optimizer.value, trainer.epoch)
    writer = CheckpointWriter(stem, world, out.print)
    if args.checkpoint_batches:
        n_batches = -(-next(iter(datasets.values())).n_examples // args.batch_size)
        trainer.batch_callbacks.append(writer.every_batches(args.checkpoint_batches, n_batches))

    def report(result, tr) -> None:
        line = (f"Epoch {result.epoch}: training error {result.training_error:.6g}"
                + (f" (regularization {result.regularization_error:.4g})" if result.regularization_error else "")
                + (f", validation error {result.validation_error:.6g}" if result.validation_error is not None else "")
                + "".join(f", {name} {result.metrics[name]:.4f}" for name in first_monitored(result.metrics, tr))
                + (" (best)" if result.best_epoch == result.epoch and tr.stopping is not None else "")
                + f", {result.examples_per_second:,.0f} examples/s, {result.seconds:.1f} s")
        out.print(line, soft_wrap=True)  # one line an epoch, however long (logs are parsed)
        if args.checkpoint_every and result.epoch % args.checkpoint_every == 0:
            writer.write(tr, checkpoint_path(stem, result.epoch))

    trainer.callbacks.append(report)
    if args.history and world.is_root:  # the whole history so far, rewritten atomically after each epoch
        from destiny.train.history import history_callback, read_history

        if resumed is not None and os.path.exists(args.history):  # keep the epochs before the checkpoint
            trainer.history = [e for e in read_history(args.history).epochs if e.get("epoch", 0) <= trainer.epoch]
        trainer.callbacks.append(history_callback(args.history, {"config": args.config, "network_file": args.network}))
    board = None
    if args.tensorboard and world.is_root:
        from destiny.train.tensorboard import TensorBoardLogger

        board = TensorBoardLogger(args.tensorboard, what="--tensorboard")
        trainer.callbacks.append(board)
    try:
        with writer.on_divergence(args.network, resumed[0] if resumed is not None else None):
            trainer.fit(datasets, args.epochs - trainer.epoch, validation)
    finally:
        if board is not None:
            board.close()
    info, _ = trainer_state(trainer, optimizer_state=False)
    if trainer.stopping is not None and trainer.best_epoch is not None:
        s = trainer.stopping
        how = f"stopped early after epoch {trainer.epoch}" if s.should_stop else f"trained {trainer.epoch} epochs"
        out.print(f"Best {s.monitor} {s.best:.6g} at epoch {s.best_epoch} ({how}); {args.network} holds epoch "
                  f"{s.best_epoch}'s weights")
        info["best_epoch"] = s.best_epoch
    fingerprint = save_network(network, args.network, info)
    out.print(f"Saved {args.network} (fingerprint {fingerprint})")
    return 0
