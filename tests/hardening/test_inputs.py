"""Bad inputs of issue 20, the input side: memory estimated before anything is allocated;
numbers the JSON cannot mean as integers; byte-order marks and stray spaces in text files;
out-of-range hyperparameters; networks with NaN weights; resuming on other data; zero
examples; malformed histories; seeds, names and layer counts a network file cannot hold; a
dataset name the network does not read; messages naming the flags and paths the user gave
(convert, synth, quickstart); FIFOs, devices and sockets given as inputs. Through the command line each ends with exit status 2 and
one line naming the file, key or line (no traceback); through the Python API, in the same
message from one of destiny.errors' classes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading

import netCDF4
import numpy as np
import pytest
import scipy.sparse

from destiny.cli.main import main
from destiny.config import loads_config
from destiny.data import SparseDataset, read_index, read_netcdf, write_netcdf
from destiny.data import budget
from destiny.errors import ConfigError, DataError, NetworkFileError, ResourceError, UsageError
from destiny.io.network_file import read_network, write_network
from destiny.nn.network import Network
from destiny.recommender import Recommender
from destiny.train.checkpoint import load_network
from destiny.train.history import write_history
from destiny.train.optimizers import Hyperparameters
from destiny.train.trainer import Trainer
from tests.hardening.helpers import CONFIG, write_problem
from tests.helpers import clustered_dataset
from tests.train.test_trainer import autoencoder

GIB = 2**30
WIDTHS = {"input": (64,), "output": (64,)}


def fails(capsys, argv, *messages) -> tuple[str, str]:
    """Run ``destiny argv``: exit 2, one error line holding every message, no traceback."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert status == 2, err
    assert err.count("\n") == 1 and ": error: " in err and "Traceback" not in err, err
    for message in messages:
        assert message in err, err
    return out, err


def config_with(directory, name: str, top: dict | None = None, **layers) -> str:
    """CONFIG with ``L<i>={...}`` changes to layer i and ``top`` ones to the network, as a file."""
    doc = json.loads(json.dumps(CONFIG))
    doc.update(top or {})
    for key, changes in layers.items():
        doc["Layers"][int(key[1:])].update(changes)
    (directory / name).write_text(json.dumps(doc))
    return str(directory / name)


def train(d, *extra, config="net.json", inp="input.nc", out="output.nc", network="out.nc", epochs=1) -> list:
    return [str(a) for a in ("train", "-c", d / config, "-i", d / inp, "-o", d / out, "-n", d / network, "-e", epochs,
                             "-b", "8", "--quiet", *extra)]


@pytest.fixture
def problem(tmp_path):
    write_problem(tmp_path)
    (tmp_path / "items").write_text("".join(f"f{i}\t{i}\n" for i in range(64)))  # a features index
    return tmp_path


@pytest.fixture
def sixteen_gib(monkeypatch):
    """This machine has 16 GiB available, whatever it really has."""
    monkeypatch.setattr(budget, "available_memory", lambda: 16 * GIB)


# -- memory, before anything is allocated ------------------------------------------------------


@pytest.mark.parametrize("units", [10**12, 3 * 10**7])
def test_a_hidden_layer_too_big_for_memory_is_refused_before_allocating(problem, capsys, sixteen_gib, units):
    config = config_with(problem, "big.json", L1={"N": units})
    fails(capsys, train(problem, config="big.json"), f"{config}: training the network", "needs about",
          "16.0 GiB free", f"layer 'Hidden' has {units:,} units (Layers[1].N)")
    assert not (problem / "out.nc").exists()
    with pytest.raises(ResourceError, match=r"needs about [\d,.]+ GiB, 16.0 GiB free"):
        Recommender(config=config, epochs=1).fit(scipy.sparse.random(20, 64, 0.1, format="csr", random_state=0))


def test_a_batch_larger_than_the_data_counts_as_the_data(problem, sixteen_gib):
    """Training caps a minibatch at the examples there are; so does the memory estimate (a
    batch of 5,000,000 over a few examples needs no 64 GiB)."""
    args = train(problem)
    args[args.index("-b") + 1] = "5000000"
    assert main(args) == 0 and (problem / "out.nc").exists()
    Recommender(epochs=1, batch_size=5_000_000).fit(scipy.sparse.random(20, 64, 0.1, format="csr", random_state=0))


def test_the_training_rows_given_as_validation_are_refused(problem, capsys):
    """Validation items that are all in their users' inputs are removed from the ranking as
    seen: every metric would be 0 and the 'best epoch' meaningless."""
    fails(capsys, train(problem, "--validation", problem / "output.nc", "--monitor", "ndcg@10"),
          "every one of the", "held-out items is also in its user's input rows")
    assert not (problem / "out.nc").exists()
    x = scipy.sparse.random(20, 64, 0.1, format="csr", random_state=0)
    with pytest.raises(UsageError, match="removed from the ranking as already seen"):
        Recommender(epochs=1).fit(x, validation=x)


def test_a_dataset_4e9_wide_is_refused_naming_its_width(tmp_path, capsys, sixteen_gib):
    for name in ("input", "output"):
        write_netcdf(tmp_path / f"{name}.nc", SparseDataset(name, (4 * 10**9,), np.array([0, 1, 2]),
                                                             np.array([5, 3_999_999_999], np.int64)))
    (tmp_path / "net.json").write_text(json.dumps(CONFIG))
    fails(capsys, train(tmp_path), "needs about", "layer 'Input' has 4,000,000,000 units (the width of dataset 'input'")


def test_building_a_network_checks_its_parameters_first(sixteen_gib):
    config = loads_config(json.dumps({**CONFIG, "Layers": [CONFIG["Layers"][0], {**CONFIG["Layers"][1], "N": 10**12},
                                                           CONFIG["Layers"][2]]}))
    with pytest.raises(ResourceError, match="the network .* needs about [0-9,.]+ GiB, 16.0 GiB free"):
        Network.from_config(config, WIDTHS)


def test_a_dense_dataset_too_big_to_read_whole_is_refused(tmp_path, sixteen_gib):
    with netCDF4.Dataset(tmp_path / "dense.nc", "w", format="NETCDF4") as nc:
        for key, value in dict(datasets=np.uint32(1), name0="input", attributes0=np.uint32(0), kind0=np.uint32(0),
                               dataType0=np.uint32(7), dimensions0=np.uint32(1), width0=np.uint32(2 * 10**9)).items():
            nc.setncattr(key, value)
        nc.createDimension("examplesDim0", 20)
        nc.createDimension("dataDim0", 20 * 2 * 10**9)
        nc.createVariable("data0", "f4", ("dataDim0",), zlib=True)
    with pytest.raises(ResourceError, match=r"dense.nc: dataset 'input' \(20 examples × 2,000,000,000 \(dense\)\) "
                                            r"read whole needs about [\d,.]+ GiB, 16.0 GiB free"):
        read_netcdf(tmp_path / "dense.nc")


@pytest.mark.parametrize("value, where", [
    (1e300, "Layers[1].N (layer 'Hidden')"), (1e16, "Layers[1].N (layer 'Hidden')"),
    (10**30, "Layers[1].N (layer 'Hidden')"),
    ([4, 1e300], "Layers[1].N (layer 'Hidden')"), ({"LRN": {"n": 1e300}}, "LocalResponseNormalization.n"),
    ({"Maxout": {"k": 1e20}}, "Maxout.k")], ids=["1e300", "1e16", "10^30", "list", "LRN.n", "Maxout.k"])
def test_a_number_that_is_no_exact_integer_is_refused_at_load(problem, capsys, value, where):
    top = value if isinstance(value, dict) else None
    path = config_with(problem, "bad.json", top, **({} if top else {"L1": {"N": value}}))
    out, _ = fails(capsys, ["check", path], f"{path}: {where}", "must be a positive integer")
    assert "Parameters" not in out
    with pytest.raises(ConfigError, match="must be a positive integer"):
        loads_config((problem / "bad.json").read_text())


def test_a_dimension_a_network_file_cannot_store_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 2**60)  # memory is not what stops it
    config = loads_config(json.dumps({**CONFIG, "Layers": [CONFIG["Layers"][0], {**CONFIG["Layers"][1], "N": 5 * 10**9},
                                                           CONFIG["Layers"][2]]}))
    with pytest.raises(ConfigError, match=r"Layers\[1\].N \(layer 'Hidden'\): 5,000,000,000 units .*at most 4,294,967,295"):
        Network.from_config(config, WIDTHS)


# -- silent wrong results ----------------------------------------------------------------------


def test_a_byte_order_mark_is_not_part_of_the_first_label(tmp_path, capsys):
    (tmp_path / "in.txt").write_bytes(b"\xef\xbb\xbfu1\ta:b\nu2\tb\n")
    (tmp_path / "features").write_bytes(b"\xef\xbb\xbfa\t0\nb\t1\n")
    assert main([str(a) for a in ("generate", "-i", tmp_path / "in.txt", "-o", tmp_path / "in.nc", "-d", "input", "-f",
                                  tmp_path / "features", "-s", tmp_path / "samples", "-m")]) == 0
    assert read_index(tmp_path / "samples") == {"u1": 0, "u2": 1}
    assert read_index(tmp_path / "features") == {"a": 0, "b": 1}  # no third feature for 'a'


@pytest.mark.parametrize("text, features", [
    (b"u1\ta:b \nu2\tb\n", {"a": 0, "b": 1}), (b"u1\ta: \nu2\tb\n", {"a": 0, "b": 1}),
    (b"u1\t a : b\nu2\tb\n", {"a": 0, "b": 1}), (b"u1 \ta\nu1\tb\n", {"a": 0, "b": 1})],
    ids=["trailing", "blank datapoint", "around", "sample label"])
def test_spaces_around_labels_make_no_new_features(tmp_path, capsys, text, features):
    (tmp_path / "in.txt").write_bytes(text)
    assert main([str(a) for a in ("generate", "-i", tmp_path / "in.txt", "-o", tmp_path / "in.nc", "-d", "input", "-f",
                                  tmp_path / "features", "-s", tmp_path / "samples", "-c", "--exact-width")]) == 0
    assert read_index(tmp_path / "features") == features
    assert "u1" in read_index(tmp_path / "samples")
    assert "in.txt:1: read '" in capsys.readouterr().err  # said once, with the first place


def test_spaces_around_an_index_label_are_not_part_of_it(tmp_path):
    (tmp_path / "features").write_bytes(b"a \t0\nb\t 1\n")
    with pytest.warns(UserWarning, match="features:1: read 'a ' as 'a'"):
        assert read_index(tmp_path / "features") == {"a": 0, "b": 1}


@pytest.mark.parametrize("flag, value, message", [
    ("--alpha", "-0.1", "the learning rate alpha (--alpha, alpha=) must be a finite number above 0; got -0.1"),
    ("--alpha", "0", "got 0.0"), ("--alpha", "nan", "got nan"),
    ("--lambda", "-1", "the L2 weight decay lam (--lambda, lam=) must be a finite number ≥ 0; got -1.0"),
    ("--lambda1", "-0.5", "(--lambda1, lam1=) must be a finite number ≥ 0"),
    ("--mu", "1", "(--mu, mu=) must be a finite number in [0, 1); got 1.0"), ("--mu1", "-0.1", "(--mu1, mu1=)")])
def test_hyperparameters_out_of_range_are_refused(problem, capsys, flag, value, message):
    fails(capsys, train(problem, f"{flag}={value}"), message)
    assert not (problem / "out.nc").exists()


def test_the_api_refuses_hyperparameters_out_of_range():
    with pytest.raises(UsageError, match="lam .* must be a finite number ≥ 0; got -0.01"):
        Trainer(autoencoder(40), "sgd", Hyperparameters(lam=-0.01), progress=False)
    with pytest.raises(UsageError, match="alpha .* above 0; got -0.001"):
        Recommender(alpha=-0.001, epochs=1).fit(scipy.sparse.random(20, 30, 0.2, format="csr", random_state=0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A directory with the problem, a features index and a network trained for one epoch."""
    d = tmp_path_factory.mktemp("trained")
    write_problem(d)
    (d / "items").write_text("".join(f"f{i}\t{i}\n" for i in range(64)))
    assert main(train(d, network="good.nc")) == 0
    return d


@pytest.mark.parametrize("layer, part", [("Output", "weights"), ("Hidden", "bias")])
def test_a_network_with_nan_or_inf_weights_is_refused_naming_the_layer(trained, tmp_path, capsys, layer, part):
    nf = read_network(trained / "good.nc")
    arrays = nf.weights[0 if layer == "Hidden" else 1]
    (arrays.weights if part == "weights" else arrays.bias).flat[3] = np.nan if part == "weights" else np.inf
    nf.info.pop("fingerprint")
    write_network(tmp_path / "bad.nc", nf)
    message = f"bad.nc: layer '{layer}' has NaN or infinite values in the "
    fails(capsys, ["predict", "-n", tmp_path / "bad.nc", "--input-nc", trained / "input.nc", "-o", trained / "items",
                   "-s", tmp_path / "recs.txt"], message)
    assert not (tmp_path / "recs.txt").exists()
    fails(capsys, ["encode", "-n", tmp_path / "bad.nc", "--input-nc", trained / "input.nc", "-o", tmp_path / "e.npy"],
          message)
    with pytest.raises(NetworkFileError, match=message):
        load_network(tmp_path / "bad.nc")
    with pytest.raises(NetworkFileError, match=message):
        Recommender.load(tmp_path / "bad.nc")


def test_resuming_on_other_training_data_is_refused_naming_both(problem, capsys):
    assert main(train(problem, "--checkpoint-every", "1")) == 0
    other = clustered_dataset(200, 64, seed=7)  # the same shape, other users
    for name in ("input", "output"):
        write_netcdf(problem / f"other_{name}.nc", SparseDataset(name, (64,), other.offsets, other.indices))
    resume = ("--checkpoint-every", "1", "--resume", "--force")
    out, _ = fails(capsys, train(problem, *resume, inp="other_input.nc", out="other_output.nc", epochs=2),
                   "out.epoch1.nc was trained on other data (input: 200x64, ", "than this run gives (input: 200x64, ",
                   "resume with the run's own training files")
    assert "Epoch 2" not in out
    assert main(train(problem, *resume, epochs=2)) == 0
    assert main(train(problem, *resume, "--stream", epochs=3)) == 0  # streamed from disk: the same data


# -- tracebacks and misleading messages --------------------------------------------------------


def _empty_dataset(path, name: str) -> None:
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        for key, value in dict(datasets=np.uint32(1), name0=name, attributes0=np.uint32(3), kind0=np.uint32(0),
                               dataType0=np.uint32(0), dimensions0=np.uint32(1), width0=np.uint32(64)).items():
            nc.setncattr(key, value)
        nc.createDimension("examplesDim0", 0)
        nc.createDimension("sparseDataDim0", 0)
        for var, dim in (("sparseStart0", "examplesDim0"), ("sparseEnd0", "examplesDim0"), ("sparseIndex0", "sparseDataDim0")):
            nc.createVariable(var, "u4", (dim,))


def test_zero_examples_are_refused_by_train_predict_and_evaluate(trained, tmp_path, capsys):
    for name in ("input", "output"):
        _empty_dataset(tmp_path / f"{name}.nc", name)
    (tmp_path / "net.json").write_text(json.dumps(CONFIG))
    message = "dataset 0 ('input') has no examples ('examplesDim0' is 0): there is nothing to train on"
    fails(capsys, train(tmp_path), "input.nc: " + message)
    fails(capsys, ["predict", "-n", trained / "good.nc", "--input-nc", tmp_path / "input.nc", "-o", trained / "items",
                   "-s", tmp_path / "recs.txt"], message)
    fails(capsys, ["evaluate", "-n", trained / "good.nc", "--input-nc", trained / "input.nc", "-o", trained / "items",
                   "-t", tmp_path / "output.nc"], "output.nc: dataset 0 ('output') has no examples")
    assert not (tmp_path / "recs.txt").exists()
    empty = SparseDataset("in", (40,), np.zeros(1, np.int64), np.zeros(0, np.int32))
    with pytest.raises(DataError, match="the training data have no examples"):
        Trainer(autoencoder(40), "sgd", progress=False).fit({"in": empty, "out": empty}, 1)


GOOD_HISTORY = [{"epoch": 1, "training_error": 0.7, "validation_error": None, "learning_rate": 0.01, "metrics": {}}]


@pytest.mark.parametrize("change, message", [
    (lambda h: h["epochs"][0].update(epoch=None), "epochs[0].epoch is null"),
    (lambda h: h["epochs"][0].update(epoch="one"), 'epochs[0].epoch is "one"; it must be an epoch number'),
    (lambda h: h["epochs"][0].update(metrics=[1, 2]), "epochs[0].metrics is [1, 2], not an object"),
    (lambda h: h["epochs"][0].update(extra=5), "epochs[0].extra is 5"),
    (lambda h: h["epochs"][0].update(learning_rate=[0.1]), "epochs[0].learning_rate is [0.1]; it must be a number"),
    (lambda h: h.update(meta="run"), "'meta' is \"run\", not an object"),
    (lambda h: h["meta"].update(best_epoch=1e400), "meta.best_epoch is Infinity"),
    (lambda h: h["meta"].update(network={"name": 1}), "meta.network is {\"name\": 1}; it must be text")],
    ids=["epoch null", "epoch text", "metrics list", "extra number", "rate list", "meta text", "best inf", "name"])
def test_plot_of_a_malformed_history_is_one_line(tmp_path, capsys, change, message):
    pytest.importorskip("matplotlib")
    write_history(tmp_path / "h.json", GOOD_HISTORY, {"network": "net"})
    history = json.loads((tmp_path / "h.json").read_text())
    change(history)
    (tmp_path / "h.json").write_text(json.dumps(history))
    fails(capsys, ["plot", tmp_path / "h.json", "-o", tmp_path / "p.png"], f"h.json: {message}")
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_r_with_input_nc_says_not_both(trained, tmp_path, capsys, command):
    (tmp_path / "in.txt").write_text("u1\tf1:f2\n")
    argv = [command, "-n", trained / "good.nc", "-r", tmp_path / "in.txt", "-i", trained / "items", "--input-nc",
            trained / "input.nc", "-o", trained / "items"]
    argv += ["-s", tmp_path / "recs.txt"] if command == "predict" else ["-t", trained / "output.nc"]
    fails(capsys, argv, "both give the samples to score: give one of them, not both")


@pytest.mark.parametrize("seed", [2**64, 2**63, -2**63 - 1])
def test_a_seed_a_network_file_cannot_store_is_refused_before_training(problem, capsys, seed):
    out, _ = fails(capsys, train(problem, "--seed", str(seed)), f"the seed {seed} cannot be stored in a network file",
                   "give --seed")
    assert "Epoch" not in out
    with pytest.raises(UsageError, match="cannot be stored"):
        Trainer(autoencoder(40), "sgd", seed=seed, progress=False)
    with pytest.raises(UsageError, match="cannot be stored"):
        Network.from_config(loads_config(json.dumps(CONFIG)), WIDTHS, seed=seed)


@pytest.mark.parametrize("layers, top, where", [
    ({"L1": {"Name": "Hid\u0000den"}}, None, "Layers[1].Name: 'Hid\\x00den' holds a NUL character"),
    ({"L1": {"Name": "Hid\ud800den"}}, None, "Layers[1].Name: 'Hid\\ud800den' holds the lone surrogate \\uD800"),
    ({"L0": {"DataSet": "in\u0000put"}}, None, "Layers[0].DataSet (layer 'Input'): 'in\\x00put' holds a NUL"),
    ({}, {"Name": "my\u0000net"}, "Name: 'my\\x00net' holds a NUL")], ids=["NUL", "surrogate", "DataSet", "network"])
def test_a_name_a_network_file_cannot_hold_is_refused_at_load(problem, capsys, layers, top, where):
    path = config_with(problem, "bad.json", top, **layers)
    fails(capsys, train(problem, config="bad.json"), f"{path}: {where}")
    assert not (problem / "out.nc").exists()


def test_more_layers_than_a_network_file_can_hold_are_refused_before_training(problem, capsys):
    doc = json.loads(json.dumps(CONFIG))
    doc["Layers"][1:2] = [{"Name": f"H{i}", "N": 2, "Activation": "Relu"} for i in range(1450)]
    (problem / "deep.json").write_text(json.dumps(doc))
    out, _ = fails(capsys, train(problem, config="deep.json"), "deep.json: a network file of 1,452 layers",
                   "more than the 65,534 a NetCDF-4 file can hold; use at most about 1,4")
    assert "Epoch" not in out


def test_a_config_built_in_python_with_a_nul_name_is_refused_before_allocating():
    import dataclasses

    config = loads_config(json.dumps(CONFIG))
    config = dataclasses.replace(config, name="my\x00net")
    with pytest.raises(ConfigError, match="'name' is 'my\\\\x00net', which holds a NUL character"):
        Network.from_config(config, WIDTHS)


def test_an_output_file_of_another_dataset_name_names_the_expected_ones(problem, capsys):
    (ratings,) = read_netcdf(problem / "output.nc")
    write_netcdf(problem / "ratings.nc", ratings.replace(name="ratings"))
    expects = "the network expects 'input' (from -i) and 'output' (from -o)"
    out, _ = fails(capsys, train(problem, out="ratings.nc"), f"-o {problem}/ratings.nc holds dataset 'ratings', but "
                   f"layer 'Output' reads dataset 'output' (its DataSet in {problem}/net.json); {expects}: write the "
                   "data under that name (destiny generate -d output), or set the layer's DataSet")
    assert "Training" not in out  # found before any data are read
    fails(capsys, train(problem, out="input.nc"), f"-o {problem}/input.nc holds dataset 'input', but layer 'Output'",
          expects)


def test_convert_names_its_index_files_as_given(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "ratings.csv").write_text("1,10,4.0,100\n1,20,3.0,101\n2,10,5.0,102\n")
    assert main(["convert", "ratings.csv", "-o", "out/train.nc"]) == 0
    assert "Wrote the features index out/features_input (-f) and the samples index out/samples_input (-s)" in \
        capsys.readouterr().out
    fails(capsys, ["convert", "out/samples_input", "-o", "out/again.nc", "--from", "csv"], "-s out/samples_input is "
          "the same file as INPUT out/samples_input, an input of this command", "name another file for -s")


@pytest.mark.parametrize("flags, message", [
    (["--density", "2"], "--density 2: give a fraction of the users × items cells from 0.025 (one item a user) to "
                         "0.5 (half the 40 items a user)"),
    (["--density", "nan"], "--density nan: give a fraction"),
    (["--mean-items", "1000"], "--mean-items 1000: give from 1 to 20 items a user (half the 40 items)"),
    (["--topics", "0"], "--topics 0: give at least 1 planted taste"),
    (["--users", "0"], "--users 0: give at least 1"),
    (["--items", "3"], "--items 3: the default mean items a user is an eighth of the items, less than 1")],
    ids=["density", "density-nan", "mean-items", "topics", "users", "few-items"])
def test_synth_names_its_flags(tmp_path, capsys, flags, message):
    argv = ["synth", "--seed", "1", "--users", "50", "--items", "40", "-o", tmp_path / "s.nc", *flags]
    _, err = fails(capsys, argv, message)
    assert "topic_share" not in err and "mean items per user" not in err
    assert not (tmp_path / "s.nc").exists()


def test_quickstart_workdir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    fails(capsys, ["quickstart", "--workdir", tmp_path / "file"], f"--workdir {tmp_path}/file is a file; --workdir "
          "must be a directory (created if missing)")
    fails(capsys, ["quickstart", "--workdir", tmp_path / "file" / "sub"], f"--workdir {tmp_path}/file/sub cannot be "
          "created: part of its path is a file")
    assert (tmp_path / "file").read_text() == "mine"


# -- inputs that are not regular files ---------------------------------------------------------


@contextlib.contextmanager
def fifo_watchdog(path):
    """A FIFO at ``path``; whenever a reader blocks opening it (the old hang), a writer opens and
    closes it, so that the test fails instead of hanging."""
    os.mkfifo(path)
    done = threading.Event()

    def release():
        while not done.wait(0.2):
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO while nobody reads

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        thread.join()


@pytest.mark.parametrize("argv", [
    ["train", "-c", "{p}", "-i", "{d}/input.nc", "-o", "{d}/output.nc", "-n", "{d}/out.nc"],
    ["train", "-c", "{d}/net.json", "-i", "{p}", "-o", "{d}/output.nc", "-n", "{d}/out.nc"],
    ["generate", "-i", "{p}", "-o", "{d}/g.nc", "-d", "input", "-f", "{d}/f", "-s", "{d}/s", "-c"],
    ["predict", "-n", "{p}", "--input-nc", "{d}/input.nc", "-o", "{d}/items", "-s", "{d}/recs.txt"],
    ["predict", "-n", "{d}/good.nc", "-r", "{d}/in.txt", "-i", "{p}", "-o", "{d}/items", "-s", "{d}/recs.txt"],
    ["evaluate", "--recs", "{p}", "-t", "{d}/in.txt", "-o", "{d}/items"],
    ["plot", "{p}", "-o", "{d}/p.png"], ["fingerprint", "{p}"], ["check", "{p}"]],
    ids=["train -c", "train -i", "generate -i", "predict -n", "predict -i", "evaluate --recs", "plot", "fingerprint",
         "check"])
def test_a_fifo_as_input_is_refused_not_waited_on(trained, tmp_path, capsys, argv):
    for name in ("input.nc", "output.nc", "net.json", "items", "good.nc"):
        os.symlink(trained / name, tmp_path / name)
    (tmp_path / "in.txt").write_text("u1\tf1:f2\n")
    with fifo_watchdog(tmp_path / "pipe") as pipe:
        fails(capsys, [a.replace("{p}", str(pipe)).replace("{d}", str(tmp_path)) for a in argv],
              f"{pipe} is a FIFO (named pipe), not a regular file")


def test_a_device_or_a_socket_as_input_is_refused(problem, capsys):
    fails(capsys, train(problem)[:2] + ["/dev/null"] + train(problem)[3:], "/dev/null is a device, not a regular file")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(problem / "sock"))
        fails(capsys, train(problem, inp="sock"), "sock is a socket, not a regular file")
        with pytest.raises(UsageError, match="is a socket"):
            read_netcdf(problem / "sock")
