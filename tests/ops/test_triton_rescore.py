"""Exact re-scoring of top-K candidates (``candidate_scores_``): the kernel against the torch
reference and both against a float64 GEMM, for a row-major W and a column-contiguous one,
per-row slot counts, a first slot past 0, inputs not a multiple of the block, and additions
into what the output held."""

from __future__ import annotations

import torch

from destiny.ops import functional as F


def case(device, rows=7, slots=37, n=781, width=1000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(rows, n, generator=gen)
    w = torch.randn(n, width, generator=gen)
    b = torch.randn(width, generator=gen)
    items = torch.randint(0, width, (rows, slots), generator=gen)
    counts = torch.randint(0, slots + 1, (rows,), generator=gen)
    counts[0] = slots
    return [t.to(device) for t in (h, w, b, items, counts)]


def test_kernel_equals_reference_and_float64(device):
    h, w, b, items, counts = case(device)
    lo = 3
    start = torch.randn(items.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(device)
    truth = torch.gather(h.double() @ w.double(), 1, items) + b.double()[items]
    live = (torch.arange(items.shape[1], device=device)[None] >= lo) & (torch.arange(items.shape[1], device=device)[None]
                                                                          < counts[:, None])
    want = torch.where(live, start + truth, start)
    for weight in (w, w.t().contiguous().t()):  # strides (width, 1) and (1, n)
        outs = []
        for force in (False, True):
            out = start.clone()
            with F.kernels(force):
                F.candidate_scores_(out, h, weight, b, items, lo, counts)
            outs.append(out)
        for out in outs:
            torch.testing.assert_close(out, want, rtol=1e-13, atol=1e-12)
        assert torch.equal(outs[0][~live], start[~live]) and torch.equal(outs[1][~live], start[~live])
        assert torch.equal(outs[0].float(), outs[1].float())  # the same float32 scores


def test_kernel_repeats_itself_and_skips_dead_rows(device):
    h, w, b, items, counts = case(device, rows=5, slots=20, n=64, width=50, seed=2)
    counts.zero_()
    out = torch.zeros(items.shape, dtype=torch.float64, device=device)
    with F.kernels(True):
        F.candidate_scores_(out, h, w, b, items, 0, counts)
        assert not out.any()
        counts.fill_(20)
        first = F.candidate_scores_(out, h, w, b, items, 0, counts).clone()
        out.zero_()
        assert torch.equal(F.candidate_scores_(out, h, w, b, items, 0, counts), first)
