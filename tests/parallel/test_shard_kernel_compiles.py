"""The model-parallel dropout kernel (a shard's slice of the whole layer's mask) compiles to a
Hopper (sm_90) binary without a GPU, in a child process without TRITON_INTERPRET — what the
interpreter cannot check (tests/ops/test_triton_compile.py does the same for the other kernels)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from destiny.backend import HAS_TRITON

SCRIPT = textwrap.dedent('''
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import destiny.ops.triton.dropout as dr

    types = {"x_ptr": "*fp32", "y_ptr": "*fp32", "n": "i64", "seed": "i64", "seed_ptr": "*i64", "cols": "i32",
             "row_stride": "i64", "col_offset": "i64", **dict.fromkeys(["p", "scale", "shift", "saturation"], "fp32")}
    fn = dr.dropout_shard_kernel
    for alpha, backward, from_ptr, x in [(False, False, True, "*fp32"), (True, False, False, "*bf16"),
                                         (True, True, True, "*fp32")]:
        consts = dict(ALPHA=alpha, BACKWARD=backward, SEED_PTR=from_ptr, BLOCK=1024)
        typed = {**types, "x_ptr": x, "y_ptr": x}
        sig = {name: ("constexpr" if name in consts else typed[name]) for name in fn.arg_names}
        aligned = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in typed if typed[n].startswith("*")}
        src = ASTSource(fn, sig, constexprs=consts, attrs=aligned)
        assert triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4}).asm["cubin"]
    print("compiled")
''')


@pytest.mark.skipif(not HAS_TRITON, reason="Triton is not importable")
def test_the_shard_dropout_kernel_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "compiled" in run.stdout, run.stderr[-4000:]
