"""``destiny plot HISTORY.json -o curves.png``: training and validation error per epoch, the
ranking metrics of validated epochs (NDCG@K, Recall@K, P@K, … in one panel, the best epoch
marked), and any other metric the history holds, from files written by ``destiny train --history``.

matplotlib is an optional dependency (``pip install destiny[plot]``), imported only here.
"""

from __future__ import annotations

import argparse
import math
import os

# Per-epoch fields that are not curves to plot (bookkeeping) or that have their own panel.
_NOT_METRICS = {"epoch", "training_error", "validation_error", "seconds", "examples_per_second", "extra",
                "regularization_error", "learning_rate", "metrics", "best_epoch"}
RANKING = "ranking metrics (validation)"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot", help="plot training curves from history files (destiny train --history)",
        description="Draw the training and validation error per epoch of one or more training histories "
                    "(JSON written by `destiny train --history` or destiny.train.history.write_history), one "
                    "panel for the errors, one for the ranking metrics of the validated epochs (destiny train "
                    "--monitor/--patience; the best epoch marked), and one for each other metric found (such as "
                    "P@10 added by a callback, or the learning rate when it changes). Needs matplotlib: "
                    "pip install destiny[plot].")
    p.add_argument("histories", nargs="+", metavar="HISTORY.json", help="history file(s); several are overlaid")
    p.add_argument("-o", "--output", required=True, metavar="CURVES.png",
                   help="image to write (atomically); the format follows the extension (.png, .svg, .pdf)")
    p.add_argument("--title", help="figure title (default: the network's name)")
    p.add_argument("--log", action="store_true", help="logarithmic error axis")
    p.set_defaults(run=run, files=files)


def files(args: argparse.Namespace):
    from destiny.io.outputs import CommandFiles

    return CommandFiles.of([("HISTORY.json", path) for path in args.histories], [("-o", args.output)])


def curves(epochs: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Every plottable series of a history: name → [(epoch, value)], errors first; missing
    and non-finite values are left out."""
    series: dict[str, list[tuple[int, float]]] = {}

    def add(name: str, epoch: int, value) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            series.setdefault(name, []).append((epoch, float(value)))

    for i, row in enumerate(epochs):
        epoch = int(row.get("epoch", i + 1))
        add("training error", epoch, row.get("training_error"))
        add("validation error", epoch, row.get("validation_error"))
    for i, row in enumerate(epochs):
        epoch = int(row.get("epoch", i + 1))
        for key, value in row.items():
            if key not in _NOT_METRICS:
                add(key, epoch, value)
        for key, value in (row.get("extra") or {}).items():
            if not key.endswith("seconds"):  # bookkeeping (validation_seconds)
                add(key, epoch, value)
        for key, value in (row.get("metrics") or {}).items():
            add(key, epoch, value)
        if row.get("regularization_error"):
            add("regularization error", epoch, row["regularization_error"])
    rates = {row.get("learning_rate") for row in epochs}
    if len(rates) > 1:  # a constant rate says nothing a curve would show
        for i, row in enumerate(epochs):
            add("learning rate", int(row.get("epoch", i + 1)), row.get("learning_rate"))
    return series


def ranking_names(epochs: list[dict]) -> list[str]:
    """The ranking metrics a history holds (``EpochResult.metrics``), in first-seen order."""
    names: dict[str, None] = {}
    for row in epochs:
        for key in (row.get("metrics") or {}):
            names.setdefault(key)
    return list(names)


def best_epoch(history) -> int | None:
    """The best validated epoch of an early-stopped run: the meta's, else the last epoch's record."""
    best = history.meta.get("best_epoch")
    if best is None:
        marks = [row.get("best_epoch") for row in history.epochs if row.get("best_epoch") is not None]
        best = marks[-1] if marks else None
    return int(best) if isinstance(best, (int, float)) and not isinstance(best, bool) else None


def run(args: argparse.Namespace) -> int:
    from destiny.errors import ResourceError, UsageError
    from destiny.io.atomic import atomic_path
    from destiny.train.history import read_history

    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ResourceError("plotting needs matplotlib, which is not installed: pip install destiny[plot] "
                            "(or pip install matplotlib)") from None
    ext = os.path.splitext(args.output)[1].lower().lstrip(".")
    if ext not in ("png", "svg", "pdf", "jpg", "jpeg"):
        raise UsageError(f"-o {args.output}: name a .png, .svg, .pdf or .jpg file")
    runs = []
    for path in args.histories:
        history = read_history(path)
        if not history.epochs:
            raise UsageError(f"{path}: the history has no epochs yet")
        runs.append((os.path.basename(path) if len(args.histories) > 1 else None, history, curves(history.epochs)))
    errors = ("training error", "validation error")
    ranking = tuple(dict.fromkeys(name for _, history, _ in runs for name in ranking_names(history.epochs)))
    others = sorted({name for _, _, series in runs for name in series if name not in errors + ranking})
    panels = [errors] + ([ranking] if ranking else []) + [(name,) for name in others]
    fig = Figure(figsize=(7, 3.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, names in zip(axes, panels):
        for label, _, series in runs:
            for name in names:
                points = series.get(name)
                if points:
                    xs, ys = zip(*points)
                    style = "--" if name == "validation error" else "-"
                    ax.plot(xs, ys, style, marker="o" if len(xs) <= 30 else None, markersize=3,
                            label=f"{label}: {name}" if label else name)
        if names == ranking:
            for n, (label, history, _) in enumerate(runs):
                best = best_epoch(history)
                if best is not None:
                    ax.axvline(best, color=f"C{n}", linestyle=":", linewidth=1,
                               label=f"{label}: best epoch {best}" if label else f"best epoch {best}")
                    at = [row for row in history.epochs if row.get("epoch") == best]
                    value = (at[0].get("metrics") or {}).get(history.meta.get("monitor")) if at else None
                    if isinstance(value, (int, float)):  # the monitored metric's best value: a star
                        ax.plot([best], [value], marker="*", markersize=12, color="black", linestyle="none")
        ax.set_xlabel("epoch")
        ax.set_ylabel("error (average loss per example)" if names == errors
                      else RANKING if names == ranking else names[0])
        if names == errors and args.log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    first = runs[0][1]
    fig.suptitle(args.title or first.meta.get("network") or "Training history")
    with atomic_path(args.output, f".{ext}") as tmp:
        fig.savefig(tmp, format=ext, dpi=120)
    bests = [b for b in (best_epoch(h) for _, h, _ in runs) if b is not None]
    print(f"Wrote {args.output}: {len(panels)} panel(s), {sum(len(h.epochs) for _, h, _ in runs)} epochs "
          f"from {len(runs)} history file(s)"
          + (f"; ranking metrics {', '.join(ranking)}" if ranking else "")
          + (f"; best epoch {', '.join(map(str, bests))}" if bests else ""))
    return 0
