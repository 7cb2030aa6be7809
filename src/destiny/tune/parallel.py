"""Parallel trials of ``destiny.tune``: one worker process a device, one trial a worker.

The study stays in the calling process, which asks Optuna for each trial's settings and
tells it the results (ask and tell); the workers only train. Messages (multiprocessing
queues, spawned processes so that CUDA starts afresh in each):

    parent → worker  ("trial", number, params, values, recipe, seconds left, finish first epoch)
    worker → parent  ("epoch", wid, number, epoch, value)  → parent replies True to prune
    worker → parent  ("done", wid, outcome dict, history)  → parent replies a path to save to, or None
    worker → parent  ("saved", wid, number)                  (after a save, or right away for None)
    parent → worker  None: exit

Only a new best trial's network is written (``Recommender.save`` into a temporary directory;
the previous best's file is removed); the parent loads the last best at the end. A worker
whose process dies fails its trial and takes no more. On the CPU (tests) every worker gets an
equal share of the cores.
"""

from __future__ import annotations

import os
import queue
import tempfile

from destiny.tune.trial import Outcome, fit_trial, free_memory

_POLL_S = 0.2  # how often the parent checks on dead workers while waiting


def _worker(wid: int, device: str, threads: int | None, train, validation, tasks, results, replies) -> None:
    """A worker process: trains the trials it is sent on ``device`` until it gets None."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(device))
    from destiny.recommender import _as_dataset

    train = _as_dataset(train, "train")
    validation = _as_dataset(validation, "validation", width=train.n_features)
    while True:
        task = tasks.get()
        if task is None:
            return
        _, number, params, values, recipe, time_left, finish_first = task

        def report(epoch: int, value: float) -> bool:
            results.put(("epoch", wid, number, epoch, value))
            return bool(replies.get())

        model, outcome = fit_trial(params, train, validation, number=number, recipe=recipe, values=values,
                                   time_left=time_left, report=report, finish_first_epoch=finish_first)
        results.put(("done", wid, outcome.as_dict(), getattr(model, "history_", [])))
        path = replies.get()
        if path is not None and model is not None:
            model.save(path)
        results.put(("saved", wid, number))
        del model
        free_memory(device)


class _Pool:
    """The worker processes, their queues and what each is doing."""

    def __init__(self, run, devices: list[str]):
        import multiprocessing

        from destiny.data.interop import to_scipy

        ctx = multiprocessing.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // len(devices)) if all(d == "cpu" for d in devices) else None
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in devices]
        self.replies = [ctx.Queue() for _ in devices]
        train, validation = to_scipy(run.train), to_scipy(run.validation)
        self.procs = [ctx.Process(target=_worker, daemon=True, name=f"destiny-tune-{i}",
                                  args=(i, d, threads, train, validation, self.tasks[i], self.results,
                                        self.replies[i]))
                      for i, d in enumerate(devices)]
        for p in self.procs:
            p.start()
        self.devices = devices
        self.busy: dict[int, list] = {}  # wid → [optuna trial, plan, told]
        self.dead: set[int] = set()

    def idle(self) -> list[int]:
        return [i for i in range(len(self.procs)) if i not in self.busy and i not in self.dead]

    def next_message(self):
        """The next message from a worker, or ("died", wid) for a busy worker whose process ended."""
        while True:
            try:
                return self.results.get(timeout=_POLL_S)
            except queue.Empty:
                for wid in list(self.busy):
                    if not self.procs[wid].is_alive():
                        self.dead.add(wid)
                        return ("died", wid)

    def close(self) -> None:
        for i, p in enumerate(self.procs):
            if p.is_alive() and i not in self.dead:
                self.tasks[i].put(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


def run_parallel(run, devices: list[str]):
    """Trials in parallel on ``devices`` (``search.Run``'s study, space and budget); returns
    the best fitted Recommender, loaded on the first device."""
    from destiny.recommender import Recommender

    with tempfile.TemporaryDirectory(prefix="destiny-tune-") as scratch:
        pool = _Pool(run, devices)
        best_path, history = None, []
        try:
            while True:
                for wid in pool.idle():
                    if not (run.can_start() or (best_path is None and run.started == 0)):
                        break
                    trial, plan, params = run.ask(devices[wid])
                    pool.busy[wid] = [trial, plan, False]
                    pool.tasks[wid].put(("trial", trial.number, params, plan.values, plan.recipe, run.time_left(),
                                         best_path is None and run.best is None))
                if not pool.busy:
                    break
                message = pool.next_message()
                kind, wid = message[0], message[1]
                if kind == "epoch":
                    trial = pool.busy[wid][0]
                    _, _, number, epoch, value = message
                    run.table.epoch(number, epoch, value)
                    trial.report(value, epoch)
                    pool.replies[wid].put(trial.should_prune())
                elif kind == "done":
                    outcome = Outcome(**message[2])
                    pool.busy[wid][2] = True
                    better = run.tell(pool.busy[wid][0], outcome)
                    path = os.path.join(scratch, f"trial-{outcome.number}.nc") if better else None
                    pool.replies[wid].put(path)
                    if better:
                        if best_path is not None and os.path.exists(best_path):
                            os.remove(best_path)
                        best_path, history = path, message[3]
                elif kind == "saved":
                    del pool.busy[wid]
                elif kind == "died":
                    trial, plan, told = pool.busy.pop(wid)
                    if not told:
                        outcome = Outcome(trial.number, plan.recipe, dict(plan.values), state="FAIL", stopped="error",
                                          error=f"the worker process on {devices[wid]} died "
                                                f"(exit code {pool.procs[wid].exitcode})", device=devices[wid])
                        run.tell(trial, outcome)
        finally:
            pool.close()
        if best_path is None:
            return None
        if not os.path.exists(best_path):
            from destiny.errors import ResourceError

            raise ResourceError(f"the worker of the best trial ({run.best[1]}) died before writing its network; "
                                "run destiny.tune again")
        model = Recommender.load(best_path, device=devices[0])
        model.history_ = history
        return model
