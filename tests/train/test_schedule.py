"""Learning-rate schedules (``"LearningRateSchedule"``): the factor at chosen steps against the
formula worked by hand, the optimizer's rate, the Trainer's plan, and a resumed run that
continues the schedule exactly."""

from __future__ import annotations

import math

import pytest
import torch

from destiny.config.enums import ScheduleKind, ScheduleUnit
from destiny.errors import UsageError
from destiny.train.optimizers import DsstneOptimizer, Hyperparameters
from destiny.train.schedule import Schedule
from tests.helpers import clustered_dataset, config

K, U = ScheduleKind, ScheduleUnit


def test_constant_is_dsstnes_schedule():
    s = Schedule()
    assert s.constant and [s.factor(i) for i in (0, 1, 10**9)] == [1.0, 1.0, 1.0]
    assert s.constants() == [0.0, 0.0, 0.0, 0.0, 1.0]


def test_warmup_then_linear():
    """W = 2, U = 12, r = 0.1: ½, 1 during the warmup, then 1 − 0.9·(s − 2)/10."""
    s = Schedule(K.LINEAR, warmup=2, final_ratio=0.1).planned(12, 4)
    want = {0: 0.5, 1: 1.0, 2: 1.0, 7: 0.55, 11: 1 - 0.9 * 0.9, 12: 0.1, 50: 0.1}
    for step, value in want.items():
        assert s.factor(step) == pytest.approx(value, rel=1e-15, abs=1e-15), step


def test_cosine():
    """U = 10, r = 0.2, no warmup: 0.2 + 0.8·½(1 + cos(π s/10))."""
    s = Schedule(K.COSINE, final_ratio=0.2).planned(10)
    assert s.factor(0) == 1.0
    assert s.factor(5) == pytest.approx(0.6, rel=1e-15)
    assert s.factor(10) == pytest.approx(0.2, rel=1e-15)
    assert s.factor(3) == pytest.approx(0.2 + 0.4 * (1 + math.cos(0.3 * math.pi)), rel=1e-15)


def test_constant_with_warmup():
    s = Schedule(K.CONSTANT, warmup=4)
    assert not s.constant
    assert [s.factor(i) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_step_in_updates_and_in_epochs():
    by_updates = Schedule(K.STEP, every=3, unit=U.UPDATES, gamma=0.5)
    assert [by_updates.factor(i) for i in range(8)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    by_epochs = Schedule(K.STEP, every=2, unit=U.EPOCHS, gamma=0.1, warmup=1).planned(100, 4)  # every 8 updates
    assert by_epochs.factor(0) == 1.0  # warmup (s+1)/1
    assert [by_epochs.factor(i) for i in (8, 9, 17)] == [1.0, pytest.approx(0.1), pytest.approx(0.01)]
    assert by_epochs.constants() == [1.0, 0.0, 0.0, 8.0, 0.1]


def test_an_unplanned_schedule_that_needs_the_run_says_how_to_plan_it():
    opt = DsstneOptimizer({"w": torch.nn.Parameter(torch.zeros(2))}, "sgd", schedule=Schedule(K.COSINE))
    with pytest.raises(UsageError, match=r"optimizer\.plan\(total_updates"):
        opt.learning_rate()
    with pytest.raises(UsageError, match="Epochs needs the updates an epoch"):
        Schedule(K.STEP).factor(3)


def test_the_optimizers_rate_is_alpha_times_the_factor_over_decay():
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = DsstneOptimizer({"w": w}, "sgd", Hyperparameters(alpha=0.2, lam=0.0, decay=0.01),
                          schedule=Schedule(K.LINEAR, warmup=1, final_ratio=0.5))
    opt.plan(9, 3)
    for step in range(9):
        assert opt.learning_rate() == pytest.approx(0.2 * opt.schedule.factor(step) / (1 + 0.01 * step), rel=1e-15)
        w.grad = torch.ones(3, dtype=torch.float64)
        before = w.detach().clone()
        lr = opt.learning_rate()
        opt.step()
        torch.testing.assert_close(w.detach(), before - lr, rtol=1e-15, atol=1e-15)  # SGD: w += α_s·(−1)


def test_the_json_key_reaches_the_trainer():
    from destiny.nn.network import Network
    from destiny.train.trainer import Trainer

    layers = [{"Name": "In", "N": 30, "DataSet": "in", "Sparse": True}, {"Name": "H", "N": 5},
              {"Name": "Out", "Kind": "Output", "N": 30, "DataSet": "out", "Sparse": True}]
    cfg = config(layers, LearningRateSchedule={"Kind": "Cosine", "WarmupSteps": 2, "FinalRatio": 0.1},
                 WeightDecay=0.05)
    net = Network.from_config(cfg, seed=3, dtype=torch.float64)
    trainer = Trainer(net, "adam", Hyperparameters(alpha=0.01), batch_size=8, progress=False)
    assert trainer.optimizer.hyper.weight_decay == 0.05
    data = clustered_dataset(20, 30)
    results = trainer.fit({"in": data, "out": data}, 3)
    sched = trainer.optimizer.schedule
    assert (sched.kind, sched.total, sched.per_epoch) == (K.COSINE, 9, 3)  # 3 epochs of ⌈20/8⌉ updates
    for r in results:  # each epoch reports the rate of its first update
        assert r.learning_rate == pytest.approx(0.01 * sched.factor(3 * (r.epoch - 1)), rel=1e-15)


class _Killed(Exception):
    pass


def _cosine_run(tmp_path, epochs_first: int | None):
    """4 epochs of Adam with WeightDecay and a warmed-up Cosine schedule, in one go (None) or
    killed after writing a checkpoint at epoch ``epochs_first`` and resumed from it in a fresh
    Trainer (as ``destiny train -e 4 --checkpoint-every 1`` then ``--resume``)."""
    from destiny.io.network_file import read_network
    from destiny.nn.network import Network
    from destiny.train.checkpoint import network_from_file, restore_trainer, save_network, trainer_state
    from destiny.train.trainer import Trainer

    layers = [{"Name": "In", "N": 30, "DataSet": "in", "Sparse": True}, {"Name": "H", "N": 6, "pDropout": 0.2},
              {"Name": "Out", "Kind": "Output", "N": 30, "DataSet": "out", "Sparse": True, "Activation": "SoftMax"}]
    cfg = config(layers, ErrorFunction="Multinomial", WeightDecay=0.1,
                 LearningRateSchedule={"Kind": "Cosine", "WarmupSteps": 3, "FinalRatio": 0.05})
    data = {"in": clustered_dataset(22, 30, seed=2), "out": clustered_dataset(22, 30, seed=2)}

    def trainer_of(net):
        return Trainer(net, "adam", Hyperparameters(alpha=0.05), batch_size=5, progress=False, seed=7)

    net = Network.from_config(cfg, seed=11, dtype=torch.float32)
    trainer = trainer_of(net)
    if epochs_first is None:
        trainer.fit(data, 4)
        return net, trainer
    path = tmp_path / "half.nc"

    def checkpoint_then_die(result, tr):
        if result.epoch == epochs_first:
            save_network(net, path, *trainer_state(tr))
            raise _Killed

    trainer.callbacks.append(checkpoint_then_die)
    with pytest.raises(_Killed):
        trainer.fit(data, 4)
    nf = read_network(path)
    resumed = network_from_file(nf)
    again = trainer_of(resumed)
    restore_trainer(again, nf, str(path))
    again.fit(data, 4 - again.epoch)  # what `destiny train --resume -e 4` does
    return resumed, again


def test_a_resumed_run_continues_the_schedule_bitwise(tmp_path):
    whole, t1 = _cosine_run(tmp_path, None)
    resumed, t2 = _cosine_run(tmp_path, 2)
    assert t1.optimizer.schedule == t2.optimizer.schedule and t2.optimizer.steps == 20
    assert [r.learning_rate for r in t1.history[2:]] == [r.learning_rate for r in t2.history]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
