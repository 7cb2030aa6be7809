"""Every kernel compiles to a Hopper (sm_90) binary, on any machine: Triton's interpreter runs
Python, so it misses what only the compiler rejects (a non-constexpr global, a type that does
not unify across a loop). Compilation needs no GPU; it runs in a child process without
TRITON_INTERPRET, which would replace the kernels by interpreted ones."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from destiny.backend import HAS_TRITON

SCRIPT = textwrap.dedent('''
    import itertools
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import destiny.ops.triton.dropout as dr
    import destiny.ops.triton.optimizer as op
    import destiny.ops.triton.output_loss as ol
    import destiny.ops.triton.rescore as rk
    import destiny.ops.triton.row_sparse as rs
    import destiny.ops.triton.sparse_linear as sl
    import destiny.ops.triton.sparse_weight_grad as wg
    import destiny.ops.triton.take as tk

    TARGET = GPUTarget("cuda", 90, 32)

    def build(fn, types, consts, num_warps=4):
        sig = {name: ("constexpr" if name in consts else types[name]) for name in fn.arg_names}
        aligned = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in types if types[n].startswith("*")}
        src = ASTSource(fn, sig, constexprs=consts, attrs=aligned)
        assert triton.compile(src, target=TARGET, options={"num_warps": num_warps}).asm["cubin"]

    f32 = dict.fromkeys
    gather = {"seg_ptr": "*i64", "count_ptr": "*i64", "H": "i32", "out_stride": "i32"}
    build(sl.gather_sum_kernel, {**f32(["out_ptr", "src_ptr", "val_ptr", "bias_ptr"], "*fp32"), **gather,
                                 "ids_ptr": "*i64", "src_stride": "i32"},
          dict(HAS_VALUES=True, HAS_BIAS=True, HAS_COUNT=False, BLOCK_K=32, BLOCK_H=128))
    build(sl.gather_sum_kernel, {**f32(["out_ptr", "src_ptr", "val_ptr", "bias_ptr"], "*bf16"), **gather,
                                 "ids_ptr": "*i32", "src_stride": "i64"},
          dict(HAS_VALUES=False, HAS_BIAS=False, HAS_COUNT=False, BLOCK_K=16, BLOCK_H=64))
    build(sl.gather_sum_kernel, {**f32(["out_ptr", "src_ptr", "val_ptr", "bias_ptr"], "*fp32"), **gather,
                                 "ids_ptr": "*i64", "src_stride": "i32"},
          dict(HAS_VALUES=True, HAS_BIAS=False, HAS_COUNT=True, BLOCK_K=4, BLOCK_H=512), num_warps=2)
    build(wg.segment_starts_kernel, {"keys_ptr": "*i32", **f32(["seg_ptr", "starts_ptr", "features_ptr",
                                                               "count_ptr"], "*i64"), "n": "i32", "sentinel": "i32"},
          dict(BLOCK=1024))
    for values in (True, False):
        build(tk.take_kernel, {**f32(["idx_out", "row_out", "starts_ptr", "off_ptr"], "*i64"), "idx_ptr": "*i32",
                               "val_out": "*fp32", "val_ptr": "*fp32", "B": "i32", "capacity": "i32",
                               "sentinel": "i32"}, dict(HAS_VALUES=values, BLOCK=128))
    build(rs.slot_kernel, {"slot_ptr": "*i32", "features_ptr": "*i64", "count_ptr": "*i64", "cap": "i32"},
          dict(BLOCK=1024))
    build(rs.add_rows_kernel, {"dense_ptr": "*fp32", "rows_ptr": "*fp32", "features_ptr": "*i64",
                               "count_ptr": "*i64", "H": "i32", "dense_stride": "i32", "rows_stride": "i32"},
          dict(BLOCK_H=256))
    loss_types = {**f32(["z_ptr", "d_ptr", "loss_ptr", "zt_ptr", "val_ptr", "wt_ptr", "gs_ptr"], "*fp32"),
                  "off_ptr": "*i64",
                  "idx_ptr": "*i64", "N": "i32", "z_stride": "i32", "d_stride": "i32",
                  **f32(["one_target", "zero_target", "one_scale", "zero_scale", "boost_one", "boost_zero"], "fp32")}
    combos = [(ol.SIGMOID.value, e) for e in range(5)]
    combos += [(ol.LINEAR.value, 0), (ol.LINEAR.value, 1), (ol.SOFTMAX.value, 2), (ol.SOFTMAX.value, ol.MULT.value)]
    for (act, err), flags in itertools.product(combos, [(False, False, False, True), (True, True, True, True),
                                                        (True, False, True, False)]):
        build(ol.output_loss_kernel, loss_types,
              dict(ACT=act, ERR=err, HAS_VALUES=flags[0], HAS_WEIGHTS=flags[1], IGNORE_ZERO=flags[2],
                   WRITE_DELTA=flags[3], HAS_SCALE=flags[0], BLOCK_N=ol.BLOCK_N, BLOCK_T=ol.BLOCK_T), num_warps=8)
    build(ol.output_loss_kernel, {**loss_types, "z_ptr": "*bf16", "d_ptr": "*bf16"},
          dict(ACT=1, ERR=3, HAS_VALUES=False, HAS_WEIGHTS=False, IGNORE_ZERO=False, WRITE_DELTA=False,
               HAS_SCALE=True, BLOCK_N=ol.BLOCK_N, BLOCK_T=ol.BLOCK_T), num_warps=8)
    drop_types = {"x_ptr": "*fp32", "y_ptr": "*fp32", "n": "i64", "seed": "i64", "seed_ptr": "*i64",
                  **f32(["p", "scale", "shift", "saturation"], "fp32")}
    for alpha, backward, from_ptr in [(False, False, False), (True, False, False), (True, True, True),
                                      (False, False, True)]:
        build(dr.dropout_kernel, drop_types, dict(ALPHA=alpha, BACKWARD=backward, SEED_PTR=from_ptr, BLOCK_C=256))
    build(dr.dropout_kernel, {**drop_types, "x_ptr": "*bf16", "y_ptr": "*bf16", "seed": "i32", "n": "i32"},
          dict(ALPHA=False, BACKWARD=False, SEED_PTR=False, BLOCK_C=256))
    for values, from_ptr in [(True, True), (False, False)]:
        build(dr.denoise_kernel, {"val_ptr": "*fp32", "out_ptr": "*fp32", "end_ptr": "*i64", "n": "i32", "p": "fp32",
                                  "scale": "fp32", "seed": "i64", "seed_ptr": "*i64"},
              dict(HAS_VALUES=values, SEED_PTR=from_ptr, BLOCK_C=256))
    for adam, override, schedule, warmup in [(True, False, 0, False), (False, False, 0, True), (False, True, 2, True),
                                             (True, False, 1, False), (True, False, 2, True), (False, False, 3, True)]:
        build(op.scalars_kernel, {"scal_ptr": "*fp32", "step_ptr": "*i64", "const_ptr": "*fp64"},
              dict(ADAM=adam, OVERRIDE=override, SCHEDULE=schedule, WARMUP=warmup), num_warps=1)
    scalars = f32(["lam", "lam1", "wd", "mu", "mu1", "one_minus_mu", "one_minus_mu1"], "fp32")
    for kind, name in enumerate(op.KINDS):
        build(op.dense_kernel, {**f32(["w_ptr", "g_ptr", "s1_ptr", "s2_ptr", "scal_ptr"], "*fp32"), "n": "i64",
                                **scalars},
              dict(KIND=kind, N_STATE=op.STATES[name], HAS_GRAD=kind % 2 == 0, L2=True, L1=kind > 3, WD=kind % 3 == 0,
                   BLOCK=1024))
        build(op.rows_kernel, {**f32(["w_ptr", "val_ptr", "s1_ptr", "s2_ptr", "scal_ptr"], "*fp32"),
                               "rows_ptr": "*i64", "count_ptr": "*i64", "slot_ptr": "*i32", "n_rows": "i32",
                               "H": "i32", **scalars},
              dict(KIND=kind, N_STATE=op.STATES[name], ALL_ROWS=kind % 2 == 1, L2=kind < 3, L1=False,
                   WD=kind % 2 == 1, BLOCK_R=4, BLOCK_H=256))
    build(rk.rescore_kernel, {"out_ptr": "*fp64", **f32(["h_ptr", "w_ptr", "b_ptr"], "*fp32"),
                              **f32(["items_ptr", "count_ptr"], "*i64"),
                              **f32(["n", "lo", "out_stride", "h_stride", "items_stride", "w_stride_i"], "i32"),
                              "w_stride_j": "i64"}, dict(BLOCK_C=rk.BLOCK_C, BLOCK_K=rk.BLOCK_K))
    print("compiled")
''')


@pytest.mark.skipif(not HAS_TRITON, reason="Triton is not importable")
def test_every_kernel_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "compiled" in run.stdout, run.stderr[-4000:]
