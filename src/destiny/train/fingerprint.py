"""A short hash of all of a network's weights, so runs can be compared at a glance: two runs
with the same data, config, seed, hardware and number of GPUs print the same fingerprint."""

from __future__ import annotations

import hashlib

import numpy as np


def fingerprint_arrays(arrays) -> str:
    """SHA-256 of the arrays' float32 little-endian bytes with their shapes, in order; 16 hex digits."""
    h = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(np.asarray(array, dtype="<f4"))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def fingerprint_file(network_file) -> str:
    """The fingerprint of a NetworkFile (weights, biases and batch-norm arrays, in file order)."""
    arrays = []
    for w in network_file.weights:
        if w.weights is not None:
            arrays.append(w.weights)
        arrays.append(w.bias)
    for name in sorted(network_file.batch_norm):
        bn = network_file.batch_norm[name]
        arrays += [bn.scale, bn.bias, bn.running_mean, bn.running_variance]
    return fingerprint_arrays(arrays)
