"""Top-K by certified candidates (``destiny.predict.candidates``) against a float64 brute force:
random float networks, exclusion and include-only, K past the eligible items, near-ties and
all-equal scores that defeat the certificate (the fallback runs), NaN weights, any chunk
size, any batch split. On CPU the candidate pass emulates bfloat16, whose error bound is large
enough that both the certified and the fallback paths run here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import destiny.predict.candidates as candidates
from destiny.config import loads_config
from destiny.errors import UsageError
from destiny.nn.network import Network
from destiny.predict.recommend import recommend
from destiny.predict.topk import top_k
from tests.helpers import sparse_dataset
from tests.predict.helpers import brute_top_k, exact_network
from tests.predict.test_topk import batch_of, random_rows


def float_network(n_in: int = 30, hidden: int = 24, n_out: int = 300, activation: str = "Sigmoid",
                  seed: int = 0) -> Network:
    """Sparse input → ReLU hidden → output, Gaussian weights and biases (no exact ties)."""
    config = loads_config(json.dumps({
        "ErrorFunction": "ScaledMarginalCrossEntropy" if activation == "Sigmoid" else "L2",
        "Layers": [{"Name": "Input", "Kind": "Input", "N": n_in, "DataSet": "input", "Sparse": True},
                   {"Name": "Hidden", "Kind": "Hidden", "N": hidden, "Activation": "Relu"},
                   {"Name": "Output", "Kind": "Output", "N": n_out, "DataSet": "output",
                    "Activation": activation, "Sparse": True}]}))
    net = Network.from_config(config, {})
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for spec in net.specs:
            net.weight(spec).copy_(torch.randn(net.weight(spec).shape, generator=gen))
            net.bias(spec).copy_(torch.randn(net.bias(spec).shape, generator=gen))
    return net


def output_weight(net: Network) -> tuple[torch.Tensor, torch.Tensor]:
    spec = net.specs[-1]
    return net.weight(spec), net.bias(spec)


def float64_scores(net: Network, rows: list[list[int]], width_in: int) -> np.ndarray:
    """(users, n_out) float32 roundings of the float64 pre-activations h @ W + b, NaN → −inf."""
    with torch.no_grad():
        h = net.forward({"Input": batch_of(rows, width_in)}, None, stop_at={"Hidden"})["Hidden"]
        w, b = output_weight(net)
        z = (h.double() @ w.double() + b.double()).float().numpy()
    return np.where(np.isnan(z), -np.inf, z)


def check(got, z: np.ndarray, k: int, seen=None, allowed=None, activation=torch.sigmoid) -> None:
    """got's items are the brute force's, −1 padded; its scores the activation of z there."""
    want = brute_top_k(z, k, None if seen is None else [set(s) for s in seen], allowed)
    for u, items in enumerate(want):
        assert got.items[u].tolist() == items + [-1] * (k - len(items)), u
        assert torch.isneginf(got.scores[u, len(items):]).all()
        expected = activation(torch.tensor(z[u, items], dtype=torch.float64)).float().numpy()
        np.testing.assert_allclose(got.scores[u, :len(items)].numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_candidates_equal_the_float64_brute_force(chunk):
    rng = np.random.default_rng(chunk or 0)
    net = float_network(seed=1)
    rows = random_rows(rng, 40, 30)
    seen = random_rows(rng, 40, 300, most=120)
    allowed = rng.random(300) < 0.8
    allowed[:3] = False
    z = float64_scores(net, rows, 30)
    runs = 0
    for k in (1, 10, 60):
        for exclude, include in ((None, None), (seen, None), (seen, allowed)):
            got = top_k(net, {"Input": batch_of(rows, 30)}, k, chunk=chunk, method="candidates",
                        exclude=None if exclude is None else batch_of(exclude, 300),
                        include_only=None if include is None else torch.tensor(include))
            check(got, z, k, exclude, include)
            runs += int((~got.fallback).sum())
    assert runs > 0  # the certificate covered rows: the candidate path itself was checked


def test_more_k_than_eligible_items_pads():
    rng = np.random.default_rng(4)
    net = float_network(n_out=90, seed=2)
    rows = random_rows(rng, 12, 30)
    seen = [sorted(rng.choice(90, size=int(rng.integers(60, 91)), replace=False).tolist()) for _ in range(12)]
    got = top_k(net, {"Input": batch_of(rows, 30)}, 40, exclude=batch_of(seen, 90), method="candidates", chunk=16)
    check(got, float64_scores(net, rows, 30), 40, seen)
    assert (got.items[[len(s) == 90 for s in seen]] == -1).all()


def test_near_ties_fail_the_certificate_and_fall_back(monkeypatch):
    """Output columns that differ by far less than the bfloat16 bound: no row can be
    certified; the fallback (in several column blocks, with exclusions) is still exact."""
    monkeypatch.setattr(candidates, "FALLBACK_ELEMENTS", 24 * 37)
    rng = np.random.default_rng(5)
    net = float_network(n_out=500, seed=3)
    w, b = output_weight(net)
    with torch.no_grad():
        base = w[:, :1].clone()
        w.copy_(base + 1e-4 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
        b.fill_(0.5)
    rows = random_rows(rng, 20, 30)
    rows[3] = []  # h = relu(b_hidden): a row like any other
    seen = random_rows(rng, 20, 500, most=300)
    z = float64_scores(net, rows, 30)
    got = top_k(net, {"Input": batch_of(rows, 30)}, 10, exclude=batch_of(seen, 500), method="candidates",
                chunk=128)
    assert got.fallback.all()
    check(got, z, 10, seen)


def test_fallback_rows_mixed_with_certified_rows():
    """Some rows' top items are near-tied (their hidden units light only near-tied columns),
    others are not: both kinds in one batch, each exact."""
    rng = np.random.default_rng(6)
    net = float_network(n_in=30, hidden=24, n_out=400, seed=4)
    w, b = output_weight(net)
    first = net.weight(net.specs[0])
    with torch.no_grad():
        w[:12, :] = w[:12, :1] + 1e-5 * torch.randn(12, 400, generator=torch.Generator().manual_seed(1))
        b.zero_()
        net.bias(net.specs[0]).fill_(-100.0)  # hidden units off unless an input turns them on
        first.zero_()
        first[:15, :12] = 200.0 * (1 + torch.rand(15, 12, generator=torch.Generator().manual_seed(2)))  # → units 0..11
        first[15:, 12:] = 200.0 * (1 + torch.rand(15, 12, generator=torch.Generator().manual_seed(3)))  # → units 12..23
    rows = [sorted(rng.choice(range(0, 15) if u % 2 else range(15, 30), size=3, replace=False).tolist())
            for u in range(16)]
    z = float64_scores(net, rows, 30)
    got = top_k(net, {"Input": batch_of(rows, 30)}, 10, method="candidates")
    check(got, z, 10)
    assert got.fallback.any() and not got.fallback.all()
    assert got.fallback.tolist() == [bool(u % 2) for u in range(16)]


def test_all_equal_scores_give_the_lowest_items():
    net = float_network(n_out=200, seed=5)
    w, b = output_weight(net)
    with torch.no_grad():
        w.zero_()
        b.fill_(0.25)
    seen = [[0, 1, 5], [], [2]]
    got = top_k(net, {"Input": batch_of([[1], [2, 3], []], 30)}, 6, exclude=batch_of(seen, 200),
                method="candidates", chunk=50)
    assert got.items.tolist() == [[2, 3, 4, 6, 7, 8], [0, 1, 2, 3, 4, 5], [0, 1, 3, 4, 5, 6]]
    assert got.fallback.all()


def test_nan_weights_are_never_recommended():
    rng = np.random.default_rng(7)
    net = float_network(n_out=150, seed=6)
    w, _ = output_weight(net)
    with torch.no_grad():
        w[:, [3, 40, 41]] = float("nan")
    rows = random_rows(rng, 10, 30)
    z = float64_scores(net, rows, 30)
    got = top_k(net, {"Input": batch_of(rows, 30)}, 20, method="candidates", chunk=64)
    check(got, z, 20)
    assert not np.isin(got.items.numpy(), [3, 40, 41]).any()
    assert got.fallback.all()  # no finite bound: every row scored whole


def test_batch_splits_and_chunks_do_not_change_the_answer():
    rng = np.random.default_rng(8)
    net = float_network(n_out=333, seed=7)
    rows = random_rows(rng, 64, 30)
    seen = random_rows(rng, 64, 333, most=50)
    whole = top_k(net, {"Input": batch_of(rows, 30)}, 12, exclude=batch_of(seen, 333), method="candidates")
    for size, chunk in ((1, 100), (7, 33), (64, 1)):
        parts = [top_k(net, {"Input": batch_of(rows[i:i + size], 30)}, 12, exclude=batch_of(seen[i:i + size], 333),
                       method="candidates", chunk=chunk) for i in range(0, 64, size)]
        assert torch.equal(torch.cat([p.items for p in parts]), whole.items)
        assert torch.equal(torch.cat([p.scores for p in parts]), whole.scores)


def test_same_items_as_the_exact_method_away_from_near_ties():
    """The exact method ranks float32 GEMM scores, the candidates float64-rounded ones: the
    same items wherever consecutive scores of the top k + 1 are more than float32 noise apart."""
    rng = np.random.default_rng(9)
    net = float_network(n_out=500, activation="Linear", seed=8)  # scores not saturated
    rows = random_rows(rng, 50, 30)
    inputs = {"Input": batch_of(rows, 30)}
    fast = top_k(net, inputs, 15, method="candidates", chunk=100)
    exact = top_k(net, inputs, 16, method="exact")
    gaps = (exact.scores[:, :-1] - exact.scores[:, 1:]).abs().amin(1)
    clear = gaps > 1e-5
    assert clear.sum() > 25
    assert torch.equal(fast.items[clear], exact.items[clear, :15])
    np.testing.assert_allclose(fast.scores.numpy(), exact.scores[:, :15].numpy(), rtol=2e-6)
    auto = top_k(net, inputs, 15, method="auto")  # CPU: auto is exact
    assert torch.equal(auto.scores, exact.scores[:, :15]) and auto.fallback is None


def test_linear_output_and_recommend_pass_the_method():
    rng = np.random.default_rng(10)
    net = float_network(n_out=120, activation="Linear", seed=9)
    rows = random_rows(rng, 9, 30)
    seen = random_rows(rng, 9, 120, most=20)
    z = float64_scores(net, rows, 30)
    data = sparse_dataset(rows, 30)
    scores, items = recommend(net, {"input": data}, 7, exclude=sparse_dataset(seen, 120), batch_size=4,
                              method="candidates")
    want = brute_top_k(z, 7, [set(s) for s in seen])
    assert items.tolist() == want
    np.testing.assert_allclose(scores, np.take_along_axis(z, np.array(want), 1), rtol=1e-6)


def test_method_errors_say_why():
    net = float_network(n_out=50)
    inputs = {"Input": batch_of([[1]], 30)}
    with pytest.raises(UsageError, match="unknown top-K method 'fast'"):
        top_k(net, inputs, 3, method="fast")
    softmax = exact_network(30, 4, 50, "SoftMax")
    with pytest.raises(UsageError, match="SoftMax"):
        top_k(softmax, inputs, 3, method="candidates")
    relu = exact_network(30, 4, 50, "Relu")
    with pytest.raises(UsageError, match="not strictly increasing"):
        top_k(relu, inputs, 3, method="candidates")
    direct = Network.from_config(loads_config(json.dumps({"Layers": [
        {"Name": "Input", "Kind": "Input", "N": 30, "DataSet": "input", "Sparse": True},
        {"Name": "Output", "Kind": "Output", "N": 50, "DataSet": "output", "Activation": "Sigmoid",
         "Sparse": True}]})), {})
    with pytest.raises(UsageError, match="sparse input"):
        top_k(direct, inputs, 3, method="candidates")
    assert top_k(direct, inputs, 3, method="auto").items.shape == (1, 3)  # auto: the exact path


def test_predict_command_takes_the_method(tmp_path, capsys):
    """destiny predict --top-k-method candidates writes what the exact method writes (an exact
    integer network: no rounding anywhere), and refuses a SoftMax layer with exit code 2."""
    from destiny.cli.main import main
    from tests.predict.helpers import autoencoder_files

    paths, rows, labels, _ = autoencoder_files(tmp_path)

    def predict(recs, *extra):
        return main(["predict", "-n", str(paths["net"]), "-i", str(paths["index"]), "-o", str(paths["index"]),
                     "-r", str(paths["input"]), "-s", str(tmp_path / recs), "--quiet", "-k", "6", *extra])

    assert predict("exact.txt", "--top-k-method", "exact") == 0
    assert predict("fast.txt", "--top-k-method", "candidates", "--chunk", "7") == 0
    assert (tmp_path / "fast.txt").read_text() == (tmp_path / "exact.txt").read_text()
    (tmp_path / "soft").mkdir()
    soft, *_ = autoencoder_files(tmp_path / "soft", activation="SoftMax")
    code = main(["predict", "-n", str(soft["net"]), "-i", str(soft["index"]), "-o", str(soft["index"]),
                 "-r", str(soft["input"]), "-s", str(tmp_path / "soft.txt"), "--top-k-method", "candidates"])
    assert code == 2 and "SoftMax" in capsys.readouterr().err
    assert not (tmp_path / "soft.txt").exists()


def test_network_recommend_takes_the_method():
    rng = np.random.default_rng(11)
    net = float_network(n_in=30, n_out=30, activation="Linear", seed=10)
    rows = random_rows(rng, 8, 30)
    z = float64_scores(net, rows, 30)
    recs = net.recommend(sparse_dataset(rows, 30), 5, method="candidates")
    assert recs.items.tolist() == brute_top_k(z, 5, [set(r) for r in rows])



@pytest.mark.parametrize("chunk", [None, 100, 7])
def test_candidates_with_padded_chunks_equal_the_brute_force(chunk):
    """A width that is not a multiple of ALIGN: the candidate products run on ALIGN-multiple
    column counts (zero-padded copies of W and b), the padded columns never recommended."""
    rng = np.random.default_rng(9)
    net = float_network(n_out=1003, seed=2)
    rows = random_rows(rng, 12, 30)
    seen = random_rows(rng, 12, 1003, most=300)
    z = float64_scores(net, rows, 30)
    for k in (10, 1003):
        got = top_k(net, {"Input": batch_of(rows, 30)}, k, method="candidates", chunk=chunk,
                    exclude=batch_of(seen, 1003))
        check(got, z, k, seen)
        assert int(got.items.max()) < 1003
