"""``destiny check CONFIG.json``: validate a network description and show its layers."""

from __future__ import annotations

import argparse

from destiny.errors import UsageError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "check", help="validate a JSON network description and list its layers",
        description="Validate a DSSTNE JSON network description and print its layers and "
                    "parameter count. Widths of \"auto\" layers come from the options.")
    parser.add_argument("config", metavar="CONFIG.json", help="network description")
    parser.add_argument("--input-width", metavar="DIMS",
                        help='dimensions of the datasets of "auto" Input layers (27278 or 227x227x3)')
    parser.add_argument("--output-width", metavar="DIMS",
                        help='dimensions of the datasets of "auto" Output layers')
    parser.add_argument("--width", metavar="DATASET=DIMS", action="append", default=[],
                        help="dimensions of one dataset by name (repeatable)")
    parser.set_defaults(run=run)


def _dims(text: str, option: str) -> tuple[int, ...]:
    from destiny.config.shapes import parse_dims

    try:
        return parse_dims(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: give 1 to 4 positive integers joined by 'x', "
                         "such as 27278 or 227x227x3") from None


def dataset_dims_from_args(config, args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    from destiny.config import LayerKind

    dims: dict[str, tuple[int, ...]] = {}
    for layer in config.layers:
        if layer.is_auto and layer.kind == LayerKind.INPUT and args.input_width:
            dims[layer.dataset] = _dims(args.input_width, "--input-width")
        if layer.is_auto and layer.kind == LayerKind.OUTPUT and args.output_width:
            dims[layer.dataset] = _dims(args.output_width, "--output-width")
    for item in args.width:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--width {item!r}: write DATASET=DIMS, such as input=27278")
        if name not in {layer.dataset for layer in config.layers}:
            raise UsageError(f"--width {item!r}: no layer reads a dataset named '{name}'")
        dims[name] = _dims(text, "--width")
    return dims


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from destiny.cli.console import console
    from destiny.config import LayerKind, LayerType, load_config
    from destiny.config.shapes import count_parameters, resolve_shapes
    from destiny.config.validate import check_zero_diagonal

    config = load_config(args.config)
    dims = resolve_shapes(config, dataset_dims_from_args(config, args), strict=False, source=args.config)
    check_zero_diagonal(config, dims, args.config)
    counts = count_parameters(config, dims)

    table = Table(title=f"{config.name or args.config} ({config.kind.json}, {config.error_function.json})")
    for column in ("Layer", "Kind", "Type", "Activation", "Width", "Sources", "Parameters"):
        table.add_column(column, justify="right" if column in ("Width", "Parameters") else "left")
    for layer in config.layers:
        width = "×".join(map(str, dims[layer.name])) if dims[layer.name] else ("auto" if layer.is_auto else "?")
        if layer.sparse and layer.kind in (LayerKind.INPUT, LayerKind.OUTPUT):
            width += " sparse"
        layer_type = layer.type.json
        if layer.type == LayerType.POOLING:
            layer_type += f" ({layer.pooling_function.json})"
        activation = "" if layer.kind == LayerKind.INPUT or layer.type == LayerType.POOLING else layer.activation.json
        params = counts[layer.name]
        table.add_row(layer.name, layer.kind.json, layer_type, activation, width,
                      ", ".join(layer.sources + tuple(f"+{s}" for s in layer.skips)),
                      "?" if params is None else f"{params:,}")
    out = console()
    out.print(table)
    if any(c is None for c in counts.values()):
        out.print('Parameters: unknown until the widths of "auto" layers are given '
                  "(--input-width, --output-width or --width DATASET=DIMS).")
    else:
        out.print(f"Parameters: {sum(counts.values()):,}")
    _warn_recipes(config, dims)
    return 0


def _warn_recipes(config, dims) -> None:
    """Warnings about settings that train badly (``nn.recipes.bias_warnings``), every time."""
    import warnings

    from destiny.errors import ConfigWarning
    from destiny.nn.recipes import bias_warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always", ConfigWarning)
        for message in bias_warnings(config, dims):
            warnings.warn(message, ConfigWarning, stacklevel=2)
