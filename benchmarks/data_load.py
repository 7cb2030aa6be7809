"""Generate, write and load a MovieLens-20M-sized synthetic dataset (≈20M interactions).

Target (issue 3): generate + load under 60 s on a 2-core machine, peak memory under 3× the
CSR's own size (offsets + indices bytes). Each phase runs in a fresh Python process so its
peak RSS (VmHWM) is its own; "above baseline" subtracts the RSS after the imports (Python,
numpy, netCDF4, Destiny), which is the same whatever the data size.

    python benchmarks/data_load.py [--users 138493] [--items 27278] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _phase(args: argparse.Namespace) -> None:
    import netCDF4  # noqa: F401  (part of the baseline: every load imports it)
    import numpy as np  # noqa: F401

    from destiny.data import read_dataset, synthesize, write_netcdf

    baseline = _rss_kib("VmRSS")
    result: dict[str, float] = {"baseline_mib": baseline / 1024}
    if args.phase == "generate":
        start = time.perf_counter()
        dataset = synthesize(args.users, args.items, seed=args.seed)
        result["generate_s"] = time.perf_counter() - start
        start = time.perf_counter()
        write_netcdf(args.path, dataset)
        result["write_s"] = time.perf_counter() - start
    else:
        start = time.perf_counter()
        dataset = read_dataset(args.path, "input")
        result["load_s"] = time.perf_counter() - start
    result.update(nnz=dataset.nnz, examples=dataset.n_examples, width=dataset.width,
                  csr_mib=(dataset.offsets.nbytes + dataset.indices.nbytes) / 2**20,
                  peak_mib=_rss_kib("VmHWM") / 1024)
    print(json.dumps(result))


def _run(phase: str, path: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--path", path, "--users", str(args.users),
               "--items", str(args.items), "--seed", str(args.seed)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=138_493)
    parser.add_argument("--items", type=int, default=27_278)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phase", choices=("generate", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return _phase(args)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "synthetic.nc")
        made = _run("generate", path, args)
        size = os.path.getsize(path)
        loaded = _run("load", path, args)
    csr = loaded["csr_mib"]
    print(f"data: {made['examples']:,} users × {made['width']:,} items, {made['nnz']:,} interactions; "
          f"CSR (offsets + indices) {csr:.1f} MiB; file {size / 2**20:.1f} MiB; {os.cpu_count()} CPUs")
    print(f"generate {made['generate_s']:.2f} s, write {made['write_s']:.2f} s, load {loaded['load_s']:.2f} s; "
          f"generate + load {made['generate_s'] + loaded['load_s']:.2f} s (target < 60 s)")
    for name, phase in (("generate+write", made), ("load", loaded)):
        above = phase["peak_mib"] - phase["baseline_mib"]
        print(f"{name:>14}: peak RSS {phase['peak_mib']:.0f} MiB, baseline {phase['baseline_mib']:.0f} MiB, "
              f"above baseline {above:.0f} MiB = {above / csr:.2f}× CSR (target < 3×)")


if __name__ == "__main__":
    main()
