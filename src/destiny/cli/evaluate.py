"""``destiny evaluate``: ranking metrics of a network's recommendations (or of a recs file)
against held-out items: P@K, Recall@K (two ways), NDCG@K, MAP@K, HitRate@K, coverage; or, with
``--accuracy``, a classifier's top-1 / top-5 accuracy against one label per example."""

from __future__ import annotations

import argparse
import math
import os

from destiny.errors import UsageError


def register(subparsers) -> None:
    from destiny.cli.predict import add_filter_arguments, add_input_arguments

    p = subparsers.add_parser(
        "evaluate", help="P@K, Recall@K, NDCG@K, MAP@K, HitRate@K and coverage on held-out items",
        description="Evaluate top-K recommendations against held-out items: either recommend with a network "
                    "(-n, the samples with -r/-i or --input-nc, seen items removed as in destiny predict) or "
                    "read a recs file (--recs). Users without a relevant held-out item are skipped and counted. "
                    "Ties in scores go to the lower item index before the metrics; a recs file is taken in its "
                    "own order. With --accuracy: top-K classification accuracy of a network on a NetCDF input "
                    "(--input-nc) against one label per example (-t, default the input file's output dataset).")
    add_input_arguments(p, network_required=False)
    add_filter_arguments(p)
    for action in p._actions:  # -o is needed for ranking only; _check asks for it there
        if action.dest == "output_index":
            action.required = False
    p.add_argument("--recs", metavar="RECS",
                   help="evaluate this recs file ('sample<TAB>item,score:…') instead of a network")
    p.add_argument("-t", "--held-out", "--test", dest="held_out", metavar="HELD_OUT",
                   help="held-out items: DSSTNE text through the output index, or a NetCDF dataset whose rows are "
                        "the input's (with --recs: labelled by --samples)")
    p.add_argument("--held-out-dataset", metavar="NAME", help="dataset of a NetCDF held-out file with several")
    p.add_argument("-k", "--top-k", dest="k", type=int, nargs="+", metavar="K",
                   help="one or more K (default 10; with --accuracy 1 5), such as -k 1 5 10 20")
    p.add_argument("--accuracy", action="store_true",
                   help="classification: top-K accuracy against one label per example (a sparse dataset with one "
                        "index a row, such as DSSTNE's CIFAR 'output'), instead of ranking metrics")
    p.add_argument("--threshold", type=float, metavar="R",
                   help="analog held-out values: an item is relevant iff its value ≥ R (such as a rating of 4)")
    p.add_argument("--popularity", action="store_true",
                   help="also evaluate the most-popular baseline counted over the input's items (with a network)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the table")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON object to FILE")
    p.set_defaults(run=run, files=files)


def files(args: argparse.Namespace):
    from destiny.cli.predict import input_files
    from destiny.io.outputs import CommandFiles

    inputs = input_files(args) + [("--recs", args.recs), ("-t", args.held_out)]
    return CommandFiles.of(inputs, [("--json-out", args.json_out)])


def _is_netcdf(path: str) -> bool:
    from destiny.io.inputs import open_input

    with open_input(path) as stream:
        head = stream.read(8)
    return head[:3] == b"CDF" or head == b"\x89HDF\r\n\x1a\n"


def _check(args: argparse.Namespace) -> None:
    from destiny.cli.predict import check_common
    from destiny.predict.evaluate import check_ks

    args.k = check_ks(args.k if args.k is not None else [1, 5] if args.accuracy else [10])
    if args.accuracy:
        if args.network is None or args.input_nc is None or args.recs is not None or args.input is not None:
            raise UsageError("--accuracy scores a network on a NetCDF input: give -n NETWORK.nc and --input-nc "
                             "INPUT.nc (and -t LABELS.nc if the labels are in another file)")
        if args.batch_size is not None and args.batch_size < 1:
            raise UsageError(f"-b/--batch-size must be a positive integer, got {args.batch_size}")
        return
    if args.held_out is None:
        raise UsageError("give the held-out items with -t HELD_OUT (or --accuracy for classification)")
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise UsageError(f"--threshold must be a finite rating, got {args.threshold}")
    if args.output_index is None:
        raise UsageError("give the output features index with -o FEATURES_OUTPUT: the labels of the output columns")
    if args.recs is not None:
        if args.network is not None or args.input is not None or args.input_nc is not None:
            raise UsageError("--recs evaluates a recs file: leave out -n, -r and --input-nc (or drop --recs to "
                             "recommend with the network)")
        if args.popularity:
            raise UsageError("--popularity counts the input's items: it needs -n with -r or --input-nc")
        return
    if args.network is None:
        raise UsageError("give -n NETWORK.nc with the samples to score (-r/-i or --input-nc), or --recs RECS")
    check_common(args)


def _from_network(args):
    import numpy as np

    from destiny.cli.predict import load_for_recommending
    from destiny.predict.evaluate import evaluate_lists, read_held_out_netcdf, read_held_out_text
    from destiny.predict.filters import seen_items
    from destiny.cli.console import console
    from destiny.predict.recommend import iter_recommendations, popularity
    from destiny.progress import Progress

    network, layer, width, output, inp, filters = load_for_recommending(args)
    if _is_netcdf(args.held_out):
        held = read_held_out_netcdf(args.held_out, inp.n_examples, width, name=args.held_out_dataset)
        held = held.replace(dims=(width,))
    else:
        held = read_held_out_text(args.held_out, output, inp.samples, width=width, threshold=args.threshold,
                                  drop_unknown=args.drop_unknown)
    k = max(args.k)
    items = np.full((inp.n_examples, k), -1, dtype=np.int64)
    with Progress(inp.n_examples, "Scoring", unit="samples", console=lambda: console(stderr=True)) as progress:
        for rows, _, found in iter_recommendations(network, inp.datasets, k, exclude=filters.seen,
                                                   include_only=filters.allowed, layer=layer.name,
                                                   batch_size=args.batch_size, chunk=args.chunk,
                                                   device=network.device, method=args.top_k_method):
            items[rows] = found
            progress.advance(len(found))
    catalogue = int(output.labelled(width).sum())
    result = evaluate_lists(items, held, args.k, catalogue, threshold=args.threshold,
                            source=f"network {args.network}", held_out=args.held_out)
    baseline = None
    if args.popularity:
        train = seen_items(network, inp, output, width)  # the input's items, counted as interactions
        nothing = train.replace(indices=train.indices[:0], offsets=np.zeros_like(train.offsets))
        _, popular = popularity(train, k, exclude=filters.seen if filters.seen is not None else nothing,
                                include_only=filters.allowed)
        baseline = evaluate_lists(popular, held, args.k, catalogue, threshold=args.threshold,
                                  source="most popular input items", held_out=args.held_out)
    return result, baseline


def _accuracy(args):
    from destiny.backend import resolve_device
    from destiny.cli.predict import load_input
    from destiny.data import read_netcdf
    from destiny.predict.accuracy import top_k_accuracy
    from destiny.predict.topk import output_layer
    from destiny.train.checkpoint import load_network

    network = load_network(args.network, device=resolve_device(args.device))
    layer = output_layer(network, args.layer)
    inp = load_input(args, network)
    path = args.held_out or args.input_nc
    found = {d.name: d for d in read_netcdf(path)}
    name = args.held_out_dataset or layer.dataset
    if name not in found:
        raise UsageError(f"{path} holds no dataset '{name}' (it holds {', '.join(repr(n) for n in found)}); "
                         "name the labels' dataset with --held-out-dataset")
    return top_k_accuracy(network, inp.datasets, found[name], args.k, layer=layer.name, batch_size=args.batch_size,
                          device=network.device, source=f"network {args.network}", labels_name=f"{path}:{name}")


def _accuracy_table(result, out) -> None:
    from rich.table import Table

    table = Table(title=f"{result.source} against {result.labels}")
    table.add_column("K", justify="right")
    table.add_column("Top-K accuracy", justify="right")
    for k, value in sorted(result.top.items()):
        table.add_row(str(k), f"{value:.2%}")
    out.print(table)
    out.print(f"{result.examples:,} labelled examples" + (f"; {result.skipped:,} without a label skipped"
                                                          if result.skipped else "")
              + "; classes ranked by the output's pre-activation, ties to the lower class.")


def _from_recs(args):
    from destiny.data import read_netcdf
    from destiny.predict.evaluate import align_rows, evaluate_lists, read_held_out_text, read_recs
    from destiny.predict.labels import Index, sample_labels

    output = Index.read(args.output_index)
    width = max(output.n_columns, 1)
    samples, items = read_recs(args.recs, output, drop_unknown=args.drop_unknown)
    if _is_netcdf(args.held_out):
        if args.samples is None:
            raise UsageError("a NetCDF held-out file with --recs needs --samples SAMPLES_INDEX to say which row is "
                             "which sample of the recs file")
        (held,) = read_netcdf(args.held_out, args.held_out_dataset)[:1]
        if held.n_features > width:
            raise UsageError(f"{args.held_out}: dataset '{held.name}' is {held.n_features:,} wide but the output "
                             f"index {args.output_index} has {output.n_columns:,} columns")
        held = align_rows(held.replace(dims=(width,)), sample_labels(Index.read(args.samples).by_label,
                                                                     held.n_examples), samples)
    else:
        held = read_held_out_text(args.held_out, output, samples, width=width, threshold=args.threshold,
                                  drop_unknown=args.drop_unknown)
    return evaluate_lists(items, held, args.k, len(output.by_label), threshold=args.threshold,
                          source=f"recs {args.recs}", held_out=args.held_out), None


def _table(result, baseline, out) -> None:
    from rich.table import Table

    header = ("K", "P@K", "Recall@K", "Recall@K min", "NDCG@K", "MAP@K", "HitRate@K", "Coverage")
    table = Table(title=f"{result.source} against {result.held_out}")
    if baseline is not None:
        table.add_column("")
    for column in header:
        table.add_column(column, justify="right")
    for name, ev in (("Destiny", result), ("Most popular", baseline)):
        if ev is None:
            continue
        for m in ev.metrics:
            cells = [str(m.k)] + [f"{v:.4f}" for v in (m.precision, m.recall, m.recall_min, m.ndcg, m.map,
                                                         m.hit_rate)] + [f"{m.coverage:.2%}"]
            table.add_row(*([name] if baseline is not None else []), *cells)
    out.print(table)
    out.print(f"{result.users:,} users with relevant held-out items"
              + (f" (≥ {result.threshold:g})" if result.threshold is not None else "")
              + f"; {result.users_skipped:,} without any skipped"
              + (f"; {result.users_without_recommendations:,} had no recommendations (all misses)"
                 if result.users_without_recommendations else "")
              + f"; catalogue {result.catalogue:,} items.")
    out.print("Recall@K = hits / |relevant| (textbook); Recall@K min = hits / min(K, |relevant|) (Liang et al. 2018); "
              "ties in scores go to the lower item index.")


def run(args: argparse.Namespace) -> int:
    import json

    from destiny.cli.console import console
    from destiny.io.atomic import atomic_open

    _check(args)
    if args.accuracy:
        result, baseline = _accuracy(args), None
    else:
        result, baseline = _from_recs(args) if args.recs is not None else _from_network(args)
    document = result.as_dict()
    if baseline is not None:
        document["baseline"] = baseline.as_dict()
    text = json.dumps(document, indent=2)
    if args.json_out:
        with atomic_open(args.json_out, "w") as stream:
            stream.write(text + "\n")
    if args.json:
        print(text)
    else:
        out = console()
        if args.accuracy:
            _accuracy_table(result, out)
        else:
            _table(result, baseline, out)
        if args.json_out:
            out.print(f"Wrote {os.fspath(args.json_out)}", markup=False)
    return 0
