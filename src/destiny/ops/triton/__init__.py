"""Destiny's fused Triton kernels, one file per op, each checked against its pure-torch
reference (``destiny.ops.reference``, ``DsstneOptimizer``'s formula):

- ``take``: a batch of examples gathered into a padded CSR batch of static capacity;
- ``sparse_linear``: the sparse input layer, out[b] = Σ_k v_k · W[idx_k] (+ bias);
- ``sparse_weight_grad``: its weight gradient for the batch's features only (a RowSparseGrad);
- ``row_sparse``: slot maps and dense sums of row-sparse gradients;
- ``output_loss``: loss and delta of an output layer against sparse targets, fused;
- ``dropout``: dropout, alpha dropout and denoising with Philox masks recomputed in backward;
- ``optimizer``: DSSTNE's seven updates in one pass, dense and row-sparse.
- ``rescore``: exact float64 scores of chosen output columns (top-K candidates), per row.

Nothing here waits for the host: counts (a batch's nonzeros, a gradient's distinct rows),
seeds and the optimizer's learning rate and step are read from device memory, and every grid
is sized by a static capacity, so a training step can be captured in a CUDA graph.

Everything is deterministic (no floating-point atomics, sums in a fixed order) and uses int64
offsets wherever rows × width can pass 2^31. The modules import Triton (this package file
does not, except to repair the interpreter below); the ops are reached through
``destiny.ops.functional`` (CUDA, or ``kernels(True)`` under ``TRITON_INTERPRET=1``) and
``DsstneOptimizer``.
"""

from destiny.backend import HAS_TRITON, TRITON_INTERPRET


def _fix_interpreter_scalars() -> None:
    """Triton ≤ 3.6's interpreter turns a scalar into int with int(array of shape (1,)), which
    NumPy ≥ 2.4 refuses ("only 0-dimensional arrays can be converted to Python scalars"), so a
    kernel loop whose bounds were loaded from memory fails on CPU tensors
    (triton-lang/triton#9171). Apply the upstream fix (squeeze first), once."""
    import numpy as np
    from triton.runtime import interpreter

    if getattr(interpreter, "_destiny_scalar_fix", False) or np.lib.NumpyVersion(np.__version__) < "2.4.0":
        return
    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    interpreter._patch_lang_tensor = patched
    interpreter._destiny_scalar_fix = True


if TRITON_INTERPRET and HAS_TRITON:
    _fix_interpreter_scalars()
