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
does not); the ops are reached through ``destiny.ops.functional`` (CUDA, or ``kernels(True)``
under ``TRITON_INTERPRET=1``) and ``DsstneOptimizer``.
"""
