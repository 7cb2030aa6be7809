"""An independent writer of DSSTNE network files, straight from reference/dsstne.md §4, and
the tiny networks the tests build with it (nothing here uses destiny.io). Imported by the
tests of this directory as ``dsstne_writer``."""

from __future__ import annotations

import numpy as np

f32, u32, i32, u64 = np.float32, np.uint32, np.int32, np.uint64


def network_attributes(name: str, layers: int, weights: int, **over) -> dict:
    """§4.1, with the values DSSTNE writes for a default network."""
    attrs = {
        "version": f32(0.9), "name": name, "kind": u32(0), "errorFunction": u32(2), "maxout_k": i32(2),
        "decay": f32(0.0), "LRN_k": f32(2.0), "LRN_n": i32(5), "LRN_alpha": f32(0.0001), "LRN_beta": f32(0.75),
        "bSparsenessPenalty": u32(0), "sparsenessPenalty_p": f32(0.0), "sparsenessPenalty_beta": f32(0.0),
        "bDenoising": u32(0), "denoising_p": f32(0.0), "deltaBoost_one": f32(1.0), "deltaBoost_zero": f32(1.0),
        "SMCE_oneScale": f32(1.0), "SMCE_zeroScale": f32(1.0), "SMCE_oneTarget": f32(0.9), "SMCE_zeroTarget": f32(0.1),
        "ShuffleIndices": u32(1), "checkpoint_name": "checkpoint", "checkpoint_interval": i32(0),
        "checkpoint_epochs": i32(0), "layers": u32(layers), "weights": u32(weights),
    }
    attrs.update(over)
    return attrs


def layer_attributes(i: int, name: str, kind: int, dims, *, type_: int = 0, sources=(), skips=(), **over) -> dict:
    """§4.2 for layer i, with DSSTNE's layer defaults."""
    p = f"layer{i}_"
    nx, ny, nz, nw = tuple(dims) + (1,) * (4 - len(dims))
    attrs = {
        "name": name, "kind": u32(kind), "type": u32(type_), "poolingfunction": u32(0), "dataSet": "",
        "Nx": u32(nx), "Ny": u32(ny), "Nz": u32(nz), "Nw": u32(nw), "dimensions": u32(len(dims)),
        "kernelX": u32(1), "kernelY": u32(1), "kernelZ": u32(1), "kernelDimensions": u32(1),
        "kernelStrideX": u32(1), "kernelStrideY": u32(1), "kernelStrideZ": u32(1),
        "kernelPaddingX": u32(0), "kernelPaddingY": u32(0), "kernelPaddingZ": u32(0),
        "pDropout": f32(0.0), "weightInit": u32(0), "weightInitScale": f32(1.0), "biasInit": f32(0.0),
        "weightNorm": f32(0.0), "deltaNorm": f32(0.0), "activation": u32(0),
        "sparsenessPenalty_p": f32(0.0), "sparsenessPenalty_beta": f32(0.0),
        "RELUSlope": f32(1.0), "ELUAlpha": f32(1.0), "SELULambda": f32(1.050701),
        "attributes": u32(0), "sources": u32(len(sources)),
    }
    attrs.update(over)
    attrs.update({f"source{k}": s for k, s in enumerate(sources)})
    attrs["skips"] = u32(len(skips))
    attrs.update({f"skip{k}": s for k, s in enumerate(skips)})
    return {p + key: value for key, value in attrs.items()}


def weight_attributes(j: int, inp: str, out: str, extent, *, locked: int = 0, norm: float = 0.0) -> dict:
    """§4.3 for an unshared matrix: (width, height, length, depth, breadth)."""
    p = f"weight{j}_"
    width, height, length, depth, breadth = tuple(extent) + (1,) * (5 - len(extent))
    return {p + "inputLayer": inp, p + "outputLayer": out, p + "width": u64(width), p + "height": u64(height),
            p + "length": u64(length), p + "depth": u64(depth), p + "breadth": u64(breadth),
            p + "bShared": u32(0), p + "bLocked": u32(locked), p + "norm": f32(norm)}


def write_dsstne(path, attrs: dict, variables: dict) -> None:
    """Global attributes (text as NC_CHAR, as netcdf-cxx4 writes it) and 1-D float variables
    {name: (dimension name, values)}."""
    import netCDF4

    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        for name, value in attrs.items():
            ds.setncattr(name, value.encode() if isinstance(value, str) else value)
        for name, (dim, values) in variables.items():
            ds.createDimension(dim, len(values))
            ds.createVariable(name, np.asarray(values).dtype, (dim,))[:] = values


# sparse Input (6, "input") → Hidden (3, Relu) → Output (6, Sigmoid, "output"), SMCE, denoising
W0 = (np.arange(18, dtype=np.float32) - 9) / 4  # Input → Hidden, flat [i * 3 + o]
W1 = np.arange(18, dtype=np.float32)[::-1] / 8  # Hidden → Output, flat [i * 6 + o]
B0 = np.array([0.5, -0.25, 0.125], dtype=np.float32)
B1 = np.linspace(-1, 1, 6, dtype=np.float32)


def tiny_network() -> tuple[dict, dict]:
    attrs = network_attributes("tiny", 3, 2, errorFunction=u32(3), bDenoising=u32(1), denoising_p=f32(0.2),
                               SMCE_oneScale=f32(30.0), ShuffleIndices=u32(0))
    attrs |= layer_attributes(0, "Input", 0, (6,), dataSet="input", attributes=u32(3))
    attrs |= layer_attributes(1, "Hidden", 1, (3,), sources=["Input"], activation=u32(2), pDropout=f32(0.37),
                              attributes=u32(1), sparsenessPenalty_p=f32(0.1), sparsenessPenalty_beta=f32(3.0))
    attrs |= layer_attributes(2, "Output", 2, (6,), sources=["Hidden"], dataSet="output", attributes=u32(1),
                              weightInit=u32(2), weightInitScale=f32(0.01), biasInit=f32(-10.2))
    attrs |= weight_attributes(0, "Input", "Hidden", (3, 6))
    attrs |= weight_attributes(1, "Hidden", "Output", (6, 3), locked=1)
    variables = {"weight0_bias": ("weight0_biasDim", B0), "weight0_weights": ("weight0_weightDim", W0),
                 "weight1_bias": ("weight1_biasDim", B1), "weight1_weights": ("weight1_weightDim", W1)}
    return attrs, variables


# Input image 5×4×1 → 3×2 convolution to 2 channels (Relu) → FullyConnected Output of 2
CONV_W = np.arange(12, dtype=np.float32)  # cuDNN filter (out 2, in 1, ky 2, kx 3), row-major
CONV_FC = np.arange(80, dtype=np.float32) / 80


def conv_network() -> tuple[dict, dict]:
    attrs = network_attributes("conv", 3, 2)
    attrs |= layer_attributes(0, "image", 0, (5, 4, 1), type_=1, dataSet="input")
    attrs |= layer_attributes(1, "conv", 1, (5, 4, 2), type_=1, sources=["image"], activation=u32(2),
                              kernelX=u32(3), kernelY=u32(2), kernelDimensions=u32(2),
                              kernelPaddingX=u32(1), kernelPaddingY=u32(1))
    attrs |= layer_attributes(2, "Output", 2, (2,), sources=["conv"], dataSet="output", activation=u32(7))
    attrs |= weight_attributes(0, "image", "conv", (2, 1, 2, 3))
    attrs |= weight_attributes(1, "conv", "Output", (2, 40))
    variables = {"weight0_bias": ("weight0_biasDim", np.array([1, 2], "f4")), "weight0_weights": ("weight0_weightDim", CONV_W),
                 "weight1_bias": ("weight1_biasDim", np.array([3, 4], "f4")), "weight1_weights": ("weight1_weightDim", CONV_FC)}
    return attrs, variables
