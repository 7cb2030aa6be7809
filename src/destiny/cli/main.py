"""The ``destiny`` command: one subcommand a module, errors as one line and exit status 2."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from destiny import __version__
from destiny.errors import DestinyError

# Each module destiny.cli.<name> defines register(subparsers), which adds its parser and sets
# `run` (a function of the parsed arguments returning an exit status) as a default, and `files`
# (the parsed arguments → destiny.io.outputs.CommandFiles) when the command writes files.
COMMANDS = (
    "check",
    "generate",
    "synth",
    "convert",
    "train",
    "predict",
    "evaluate",
    "encode",
    "fingerprint",
    "import",
    "quickstart",
    "plot",
    "tune",
)


def build_parser() -> argparse.ArgumentParser:
    from destiny.cli.parser import Parser

    parser = Parser(
        prog="destiny",
        description="Deep learning on large sparse data (DSSTNE-compatible).",
    )
    parser.add_argument("--version", action="version", version=f"destiny {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"destiny.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"destiny.cli.{name}":
                continue  # command not built yet
            raise
        module.register(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"destiny: warning: {message}", file=sys.stderr)


def _guarded(args: argparse.Namespace):
    """Before any work: the command's outputs are distinct from its inputs and writable, and
    locked for the run (``destiny.io.outputs.guard``)."""
    import contextlib

    if getattr(args, "files", None) is None:
        return contextlib.nullcontext()
    from destiny.io.outputs import guard

    return guard(args.files(args), say=lambda text: print(f"destiny {args.command}: {text}", file=sys.stderr))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        with _guarded(args):
            status = args.run(args)
    except DestinyError as exc:
        print(f"destiny {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # missing file, unwritable path, disk full: the OS says which
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"destiny {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"destiny {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run(*args) -> None:
    """Run one ``destiny`` command line in this process, echoed as ``$ destiny …`` first (as
    the examples show their steps); SystemExit naming the command when it fails."""
    import shlex

    args = [str(a) for a in args]
    print("$ destiny " + " ".join(shlex.quote(a) for a in args), flush=True)
    status = main(args)
    if status:
        raise SystemExit(f"destiny {args[0]} failed with status {status}")
