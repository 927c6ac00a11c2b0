#!/usr/bin/env python3
"""The vendor BLAS baseline for the matmul cases of `quantnoise bench`, on an NVIDIA GPU.

Not a dependency of the library: it needs PyTorch with CUDA (`scripts/gpu.sh run` calls it
when that is installed). It times cuBLAS through `torch.nn.functional.linear`, i.e. the same
product as quantnoise's `linear_forward` (Y = X · Wᵀ, W of shape (out, in)), at the shapes of
the report's cases:

* `matmul_f32_1024`: X 1024 × 1024, W 1024 × 1024;
* `matmul_f32_4096x4096_b32` / `_b512`: W 4096 × 4096, X 32 × 4096 / 512 × 4096;
* `dense_matvec_f32_4096_b1`: W 4096 × 4096, X 1 × 4096;
* the same in f16 (`matmul_f16_…`, `dense_matvec_f16_…`), accumulating as cuBLAS chooses.

fp32 runs with TF32 disabled (`torch.backends.cuda.matmul.allow_tf32 = False` and
`torch.backends.cudnn.allow_tf32 = False`), so it is true fp32 arithmetic. Inputs are uniform
in [-1, 1). Times come from CUDA events around `--iters` back-to-back products, after
`--warmup` products; each case is sampled `--samples` times and the median is reported.

    python3 benches/cublas_compare.py [--json FILE]
"""

import argparse
import json
import statistics
import sys
import time

import torch

CASES = [
    # (name, rows of X, out, in)
    ("matmul_{}_1024", 1024, 1024, 1024),
    ("matmul_{}_4096x4096_b32", 32, 4096, 4096),
    ("matmul_{}_4096x4096_b512", 512, 4096, 4096),
    ("dense_matvec_{}_4096_b1", 1, 4096, 4096),
]


def time_case(m, n, k, dtype, args):
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand(m, k, device="cuda", dtype=dtype, generator=gen) * 2 - 1
    w = torch.rand(n, k, device="cuda", dtype=dtype, generator=gen) * 2 - 1
    y = torch.nn.functional.linear(x, w)
    # Correctness against float64, so a misconfigured run cannot report a number.
    ref = torch.nn.functional.linear(x.double(), w.double())
    err = (y.double() - ref).abs().max().item() / ref.abs().max().item()
    for _ in range(args.warmup):
        torch.nn.functional.linear(x, w)
    samples = []
    for _ in range(args.samples):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(args.iters):
            torch.nn.functional.linear(x, w)
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / args.iters)
    median = statistics.median(samples)
    return {
        "m": m,
        "n": n,
        "k": k,
        "dtype": str(dtype).removeprefix("torch."),
        "median_s": median,
        "samples_s": samples,
        "gflops": 2 * m * n * k / median / 1e9,
        "max_rel_err_vs_f64": err,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--samples", type=int, default=7)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("cublas_compare.py: PyTorch sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    meta = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "warmup": args.warmup,
        "iters": args.iters,
        "samples": args.samples,
    }
    results = {"_meta": meta}
    print(f"{'case':34} {'median ms':>10} {'GFLOP/s':>10} {'rel err':>9}")
    for dtype, tag in ((torch.float32, "f32"), (torch.float16, "f16")):
        for pattern, m, n, k in CASES:
            name = "cublas_" + pattern.format(tag)
            r = time_case(m, n, k, dtype, args)
            results[name] = r
            print(f"{name:34} {r['median_s'] * 1e3:10.4f} {r['gflops']:10.1f} {r['max_rel_err_vs_f64']:9.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
