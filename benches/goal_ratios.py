#!/usr/bin/env python3
"""The issues' speed goals as ratios, read from one `quantnoise bench --json` report (and, for a
GPU run, the `benches/cublas_compare.py --json` file of the same run).

    python3 benches/goal_ratios.py bench-results/2026-11-27-h200-2.json \
        [--cublas bench-results/2026-11-27-h200-2-cublas.json]

Prints one line per goal whose cases are in the report: the two medians and their ratio, and,
where the report has per-round samples (`samples_s`), the median of the per-round ratios. Where
the report has device times (`device_median_s`, GPU timestamps), a second line gives the same
from device time: on a fast GPU the wall-clock time of a small op measures the host's submission
path, the device time the kernel. Only the standard library is needed.
"""

import argparse
import json


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report", help="a `quantnoise bench --json` file")
    ap.add_argument("--cublas", help="a `benches/cublas_compare.py --json` file of the same run")
    args = ap.parse_args()
    with open(args.report) as f:
        r = json.load(f)
    blas = {}
    if args.cublas:
        with open(args.cublas) as f:
            blas = json.load(f)
    meta = r["_meta"]
    print(f"{meta['adapter']} ({meta['driver']}), {meta['date_utc']}")
    host = meta.get("host")
    if host:
        simd = " ".join(host["simd"]) or "no SIMD extension detected"
        print(f"host CPU: {host['cpu_model'] or 'unknown model'}, {host['logical_cpus']} "
              f"logical CPUs, {simd}")
    ceiling = meta.get("compute_baseline")

    # Cases that failed validation hold only `error`: as if absent.
    r = {name: case for name, case in r.items() if name == "_meta" or "median_s" in case}

    def ms(name, key="median_s"):
        v = r.get(name, {}).get(key)
        return v * 1e3 if v is not None else None

    def paired(num, den, key="samples_s"):
        """Median over the rounds of the two cases' per-round ratio (reports with `samples_s`):
        a drift of the machine between rounds cancels out."""
        a = r.get(num, {}).get(key)
        b = r.get(den, {}).get(key)
        if not a or not b or len(a) != len(b):
            return None
        ratios = sorted(x / y for x, y in zip(a, b))
        mid = len(ratios) // 2
        return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2

    def line(what, num, den, goal, num_ms=None, den_ms=None):
        a = num_ms if num_ms is not None else ms(num)
        b = den_ms if den_ms is not None else ms(den)
        if a is None or b is None:
            return
        p = paired(num, den)
        extra = f"   paired by round {p:6.3f}" if p is not None else ""
        print(f"{what:58} {a:10.4f} / {b:10.4f} ms = {a / b:7.3f}   goal {goal}{extra}")
        da, db = ms(num, "device_median_s"), ms(den, "device_median_s")
        if num_ms is None and da is not None and db is not None:
            p = paired(num, den, "device_samples_s")
            extra = f"   paired by round {p:6.3f}" if p is not None else ""
            print(f"{'  (device time)':58} {da:10.4f} / {db:10.4f} ms = {da / db:7.3f}{' ' * (8 + len(goal))}{extra}")

    def device_gflops(name):
        d = r[name].get("device_median_s")
        return r[name]["flops"] / d / 1e9 if d else None

    if ceiling in r:
        for case in ("matmul_f32_1024", "assign_1000000x8_k256"):
            if case in r:
                frac = r[case]["gflops"] / r[ceiling]["gflops"]
                print(f"{case + ' / FMA ceiling (GFLOP/s)':58} {frac:7.3f}   goal >= 0.5 (lavapipe)")
    for shape in ("1024", "4096x4096_b32", "4096x4096_b512"):
        ours, theirs = f"matmul_f32_{shape}", f"cublas_matmul_f32_{shape}"
        if ours in r and theirs in blas:
            frac = r[ours]["gflops"] / blas[theirs]["gflops"]
            print(f"{ours + ' / cuBLAS fp32 (GFLOP/s)':58} {frac:7.3f}   goal >= 0.5 (GPU)")
            if device_gflops(ours):
                frac = device_gflops(ours) / blas[theirs]["gflops"]
                print(f"{'  (device time)':58} {frac:7.3f}")
    line("fused noisy forward / plain forward", "noisy_linear_fwd_1024", "matmul_f32_1024", "<= 1.03")
    line("unfused noisy forward / plain forward", "noisy_linear_unfused_fwd_1024", "matmul_f32_1024", "(reported)")
    line("fused noisy backward / plain backward", "noisy_linear_bwd_1024", "matmul_bwd_f32_1024", "<= 1.03")
    if "matmul_int8_dp4a_1024" in r and "matmul_f32_1024" in r:
        x = r["matmul_int8_dp4a_1024"]["gflops"] / r["matmul_f32_1024"]["gflops"]
        print(f"{'int8 dp4a / f32 matmul at 1024^3 (ops/s)':58} {x:7.3f}   goal >= 2 (GPU)")
    line("dense f32 matvec / PQ LUT matvec, batch 1", "dense_matvec_f32_4096_b1", "pq_matvec_lut_4096_b1", ">= 4 (lavapipe)")
    line("dense f16 matvec / PQ LUT matvec, batch 1", "dense_matvec_f16_4096_b1", "pq_matvec_lut_4096_b1", ">= 4 (GPU)")
    line("PQ matmul / dense f32 matmul, batch 16", "pq_matmul_4096_b16", "matmul_f32_4096x4096_b16", "<= 1.2")
    line("PQ matmul / dense f32 matmul, batch 32", "pq_matmul_4096_b32", "matmul_f32_4096x4096_b32", "<= 1.2")
    line("PQ matmul / dense f32 matmul, batch 512", "pq_matmul_4096_b512", "matmul_f32_4096x4096_b512", "<= 1.2")
    if "kmeans_20iter_1000000x8_k256" in r:
        print(f"{'k-means 20 iterations, 1M x 8, K = 256 (s)':58} {ms('kmeans_20iter_1000000x8_k256') / 1e3:7.3f}")


if __name__ == "__main__":
    main()
