"""The chunked top-K on a CUDA device gives exactly the CPU's answer (same items, same ties),
and its memory stays within one batch × chunk buffer plus a few MB; the certified candidates
(method auto on CUDA) give the float64 brute force's items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from destiny.predict.topk import top_k, top_k_scores
from tests.predict.helpers import brute_top_k, exact_network, exact_scores
from tests.predict.test_topk import batch_of, random_rows

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("activation", ["Sigmoid", "Relu", "SoftMax", "Linear"])
def test_gpu_equals_cpu_and_the_brute_force(activation):
    rng = np.random.default_rng(11)
    net = exact_network(40, 6, 3000, activation, seed=3)
    rows = random_rows(rng, 300, 40)
    seen = random_rows(rng, 300, 3000, most=200)
    z = exact_scores(net, rows)
    rank_by = torch.relu(torch.tensor(z, dtype=torch.float32)).numpy() if activation == "Relu" else z
    want = brute_top_k(rank_by, 50, [set(s) for s in seen])
    cpu = top_k(net, {"Input": batch_of(rows, 40)}, 50, exclude=batch_of(seen, 3000), chunk=257)
    gpu_net = net.to("cuda")
    gpu = top_k(gpu_net, {"Input": batch_of(rows, 40).to("cuda")}, 50, exclude=batch_of(seen, 3000).to("cuda"),
                chunk=257)
    assert gpu.items.cpu().tolist() == cpu.items.tolist() == [w + [-1] * (50 - len(w)) for w in want]
    np.testing.assert_allclose(gpu.scores.cpu().numpy(), cpu.scores.numpy(), rtol=1e-5)  # SoftMax: lse in float32


def test_gpu_memory_is_one_buffer():
    torch.manual_seed(0)
    scores = torch.randint(0, 5, (512, 200_000), device="cuda").float()  # heavy ties
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    got = top_k_scores(scores, 100, chunk=16384)
    extra = torch.cuda.max_memory_allocated() - before
    assert extra < 512 * 16384 * 4 * 1.2 + (8 << 20), extra / 2**20
    want = top_k_scores(scores.cpu(), 100, chunk=65536)
    assert torch.equal(got.items.cpu(), want.items)


@pytest.mark.parametrize("transpose", [True, False], ids=["transposed", "row-major"])
def test_gpu_candidates_equal_the_float64_brute_force(transpose):
    """method auto on CUDA: TF32 candidates, certified, rescored by the kernel; the same items
    as a float64 brute force and as the CPU's bfloat16-emulated candidates. row-major: W too
    wide to transpose (as a 10M-wide layer), read in place."""
    import destiny.predict.candidates as candidates
    from destiny.predict.topk import TopK
    from tests.predict.test_topk_candidates import check, float64_scores, float_network

    limit = candidates.TRANSPOSE_ELEMENTS
    candidates.TRANSPOSE_ELEMENTS = limit if transpose else 0
    try:
        rng = np.random.default_rng(12)
        net = float_network(n_in=40, hidden=256, n_out=8_000, activation="Linear", seed=3)
        rows = random_rows(rng, 300, 40, most=8)
        seen = random_rows(rng, 300, 8_000, most=300)
        z = float64_scores(net, rows, 40)
        cpu = top_k(net, {"Input": batch_of(rows, 40)}, 10, exclude=batch_of(seen, 8_000), method="candidates")
        net.to("cuda")
        gpu = top_k(net, {"Input": batch_of(rows, 40).to("cuda")}, 10, exclude=batch_of(seen, 8_000).to("cuda"),
                    chunk=3000)
        assert gpu.fallback is not None  # auto chose the candidates
        check(TopK(gpu.scores.cpu(), gpu.items.cpu()), z, 10, seen, activation=lambda x: x)
        assert torch.equal(gpu.items.cpu(), cpu.items)
        print(f"fallback rows: GPU (TF32) {int(gpu.fallback.sum())}, CPU (bf16) {int(cpu.fallback.sum())} of 300")
    finally:
        candidates.TRANSPOSE_ELEMENTS = limit


if __name__ == "__main__":  # the device machine may have no pytest
    for activation in ["Sigmoid", "Relu", "SoftMax", "Linear"]:
        test_gpu_equals_cpu_and_the_brute_force(activation)
    test_gpu_memory_is_one_buffer()
    for transpose in (True, False):
        test_gpu_candidates_equal_the_float64_brute_force(transpose)
    print("GPU top-K checks passed")
