#!/usr/bin/env python3
"""Compare quantnoise's PQ kernels with faiss (CPU) on the same data.

Not a dependency of the library: run it by hand after

    pip install faiss-cpu numpy

It generates the data of the `quantnoise bench` PQ cases bit for bit (N x 8 float32 from the
counter-based generator `quantnoise::bench::pq_values`, checked against the report's
`_meta.pq.data_sum`), times with faiss (median of `--runs` runs):

* `assign`: `IndexFlatL2` nearest-centroid search (k = 1) of the N subvectors against the
  bench's codebook (rows i * floor(N / K) of the data);
* `kmeans_1iter`, `kmeans_20iter`: `faiss.Kmeans(d=8, k=256, niter=1 / 20,
  max_points_per_centroid=1_000_000` (so no subsampling), `seed=--seed`), i.e. random
  initialisation and `niter` Lloyd iterations;
* `kmeans_20iter_blobs` (when the report has that case and the clustered data's checksum
  `blobs_sum`): the same 20 iterations on `quantnoise::bench::pq_blobs`, regenerated here;
* `kmeans_20iter_assigned`: the 20 iterations, then the nearest centroid of every subvector
  (`km.index.search`);

then runs `cargo run --release --bin quantnoise -- bench --json FILE --filter assign_,kmeans_`
(or reads the report given with `--json`) and prints both side by side.

What is compared: faiss's training alone (`kmeans_1iter`, `kmeans_20iter`,
`kmeans_20iter_blobs`) with the report's `…_laststep` cases (`KmeansAssignments::LastStep`:
niter E-steps and M-steps, the assignments of the last E-step), and
`kmeans_20iter_assigned` with the report's `kmeans_20iter_…` case (the default
`KmeansAssignments::Final`: one more E-step, the final codebook's assignments). quantnoise's
k-means op also checks the data for non-finite values. Both initialise by sampling K distinct
subvectors, with different generators, so their objectives differ slightly.

Examples:

    python3 benches/faiss_compare.py                      # N = 1,000,000 (full bench, slow)
    python3 benches/faiss_compare.py --quick              # N = 100,000
    python3 benches/faiss_compare.py --json report.json   # reuse a `quantnoise bench --json`
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import faiss
except ImportError:  # pragma: no cover - a hint for the user
    sys.exit("faiss is not installed: pip install faiss-cpu numpy")

# Constants of src/bench.rs.
PQ_DIM = 8
PQ_K = 256
PQ_DATA_SEED = 0x0051_AB5E_ED00


def pq_values(n, seed):
    """`quantnoise::bench::pq_values`: SplitMix64 of seed + (i + 1) * golden gamma, top 24 bits
    scaled to [0, 1), times 2, minus 1 (all in float32, so bit-identical)."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    z = np.uint64(seed) + i * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    top = (z >> np.uint64(40)).astype(np.float32)
    return (top / np.float32(1 << 24)) * np.float32(2.0) - np.float32(1.0)


def pq_blobs(n, seed):
    """`quantnoise::bench::pq_blobs`: subvector i is centre i·7919 mod 400 of 400 centres from
    pq_values(400·d, seed), plus per component 0.05 × the sum of 3 values of
    pq_values(3·n·d, seed + 1) (float32 throughout, summed in the same order)."""
    d = PQ_DIM
    centres = pq_values(400 * d, seed).reshape(400, d)
    noise = pq_values(3 * n * d, seed + 1).reshape(n * d, 3)
    jitter = (noise[:, 0] + noise[:, 1]) + noise[:, 2]
    rows = (np.arange(n, dtype=np.uint64) * np.uint64(7919)) % np.uint64(400)
    return centres[rows] + np.float32(0.05) * jitter.reshape(n, d)


def median_time(fn, runs):
    times = []
    result = None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, result


def faiss_kmeans(x, niter, seed):
    km = faiss.Kmeans(x.shape[1], PQ_K, niter=niter, max_points_per_centroid=1_000_000,
                      seed=seed, verbose=False)
    km.train(x)
    return km


def faiss_cases(x, runs, seed, blobs=None):
    n, d = x.shape
    stride = n // PQ_K
    codebook = np.ascontiguousarray(x[np.arange(PQ_K) * stride])
    out = {}

    def assign():
        index = faiss.IndexFlatL2(d)
        index.add(codebook)
        return index.search(x, 1)

    med, times, (dist, idx) = median_time(assign, runs)
    out["assign"] = {"median_s": med, "times": times, "items": n, "unit": "subvectors"}

    runs_of = [(f"kmeans_{niter}iter", x, niter) for niter in (1, 20)]
    if blobs is not None:
        runs_of.append(("kmeans_20iter_blobs", blobs, 20))
    for case, data, niter in runs_of:
        med, times, km = median_time(lambda: faiss_kmeans(data, niter, seed), runs)
        out[case] = {
            "median_s": med,
            "times": times,
            "items": n * niter,
            "unit": "subvector_iterations",
            "objective": float(km.obj[-1]) if len(km.obj) else None,
        }

    def train_and_assign():
        km = faiss_kmeans(x, 20, seed)
        return km.index.search(x, 1)

    med, times, _ = median_time(train_and_assign, runs)
    out["kmeans_20iter_assigned"] = {"median_s": med, "times": times, "items": n * 20,
                                     "unit": "subvector_iterations"}
    return out


def quantnoise_case(case, tag):
    """The quantnoise report case that does the work of faiss's `case`."""
    if case == "kmeans_20iter_assigned":
        return f"kmeans_20iter_{tag}"
    if case.startswith("kmeans_"):
        return f"{case}_{tag}_laststep"
    return f"{case}_{tag}"


def run_quantnoise(quick, rounds, cpu_rounds, backend):
    fd, path = tempfile.mkstemp(suffix=".json", prefix="quantnoise-bench-")
    os.close(fd)
    cmd = ["cargo", "run", "--release", "--bin", "quantnoise", "--", "bench", "--json", path,
           "--filter", "assign_,kmeans_"]
    if quick:
        cmd.append("--quick")
    if rounds:
        cmd += ["--rounds", str(rounds)]
    if cpu_rounds:
        cmd += ["--cpu-rounds", str(cpu_rounds)]
    if backend:
        cmd += ["--backend", backend]
    here = os.path.dirname(os.path.abspath(__file__))
    print("running:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=os.path.dirname(here))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="N = 100,000 (the `bench --quick` size) instead of 1,000,000")
    ap.add_argument("--json", help="read this `quantnoise bench --json` report instead of "
                    "running the bench")
    ap.add_argument("--runs", type=int, default=3, help="faiss runs per case (median)")
    ap.add_argument("--seed", type=int, default=1234, help="faiss k-means seed")
    ap.add_argument("--rounds", type=int, default=5,
                    help="--rounds of the quantnoise bench run (default 5)")
    ap.add_argument("--cpu-rounds", type=int, default=1,
                    help="--cpu-rounds of the quantnoise bench run (default 1)")
    ap.add_argument("--backend", help="--backend of the quantnoise bench run")
    ap.add_argument("--out", help="also write the comparison as JSON to this file")
    args = ap.parse_args()

    if args.json:
        report_path = args.json
    else:
        report_path = run_quantnoise(args.quick, args.rounds, args.cpu_rounds, args.backend)
    with open(report_path) as f:
        report = json.load(f)
    meta = report["_meta"]
    pq = meta.get("pq")
    if pq is None:
        sys.exit(f"{report_path}: no PQ cases in this report (quantnoise too old?)")
    n = pq["n"]
    if pq["dim"] != PQ_DIM or pq["k"] != PQ_K:
        sys.exit(f"{report_path}: d = {pq['dim']}, K = {pq['k']}; this script knows d = 8, K = 256")

    x = pq_values(n * PQ_DIM, pq.get("data_seed", PQ_DATA_SEED)).reshape(n, PQ_DIM)
    data_sum = float(np.sum(x.astype(np.float64)))
    if "data_sum" in pq and abs(data_sum - pq["data_sum"]) > 1e-6 * max(1.0, abs(data_sum)):
        sys.exit(f"data differ from the report's: sum {data_sum!r} vs {pq['data_sum']!r}")

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP thread(s); "
          f"N = {n} x {PQ_DIM}, K = {PQ_K}; data sum {data_sum:.6f} "
          f"(report: {pq.get('data_sum', 'not recorded')})", flush=True)
    tag = f"{n}x{PQ_DIM}_k{PQ_K}"
    cases = ["assign", "kmeans_1iter", "kmeans_20iter", "kmeans_20iter_assigned"]
    blobs = None
    if quantnoise_case("kmeans_20iter_blobs", tag) in report and "blobs_sum" in pq:
        blobs = pq_blobs(n, pq.get("data_seed", PQ_DATA_SEED))
        blobs_sum = float(np.sum(blobs.astype(np.float64)))
        if abs(blobs_sum - pq["blobs_sum"]) > 1e-6 * max(1.0, abs(blobs_sum)):
            sys.exit(f"clustered data differ from the report's: sum {blobs_sum!r} vs "
                     f"{pq['blobs_sum']!r}")
        cases.append("kmeans_20iter_blobs")
    fa = faiss_cases(x, args.runs, args.seed, blobs)

    rows = []
    for case in cases:
        q = report.get(quantnoise_case(case, tag))
        f = fa[case]
        row = {
            "case": case,
            "faiss_s": f["median_s"],
            "faiss_items_per_s": f["items"] / f["median_s"],
            "faiss_objective": f.get("objective"),
            "quantnoise_s": None,
            "quantnoise_items_per_s": None,
            "quantnoise_gflops": None,
            "time_ratio_quantnoise_over_faiss": None,
            "unit": f["unit"],
        }
        if q and "median_s" in q:
            row["quantnoise_s"] = q["median_s"]
            row["quantnoise_items_per_s"] = q.get(f"{f['unit']}_per_s")
            row["quantnoise_gflops"] = q.get("gflops")
            row["time_ratio_quantnoise_over_faiss"] = q["median_s"] / f["median_s"]
        elif q:
            row["quantnoise_error"] = q.get("error")
        rows.append(row)

    print(f"\n{meta['adapter']} ({meta['backend']}) vs faiss-cpu {faiss.__version__} "
          f"({faiss.omp_get_max_threads()} threads), N = {n} x {PQ_DIM}, K = {PQ_K}")
    print(f"quantnoise report: {report_path} ({meta['date_utc']}, {meta['rounds']} rounds)")
    host = meta.get("host")
    if host:
        simd = " ".join(host["simd"]) or "no SIMD extension detected"
        print(f"host CPU of the report: {host['cpu_model'] or 'unknown model'}, "
              f"{host['logical_cpus']} logical CPUs, {simd}")
    head = f"{'case':<22} {'faiss s':>10} {'quantnoise s':>13} {'qn / faiss':>11} " \
           f"{'faiss M/s':>10} {'qn M/s':>10} {'qn GFLOP/s':>11}"
    print(head)
    for r in rows:
        def fmt(v, spec):
            return format(v, spec) if v is not None else "-"
        print(f"{r['case']:<22} {r['faiss_s']:>10.4f} {fmt(r['quantnoise_s'], '>13.4f')} "
              f"{fmt(r['time_ratio_quantnoise_over_faiss'], '>11.2f')} "
              f"{r['faiss_items_per_s'] / 1e6:>10.3f} "
              f"{fmt(r['quantnoise_items_per_s'] and r['quantnoise_items_per_s'] / 1e6, '>10.3f')} "
              f"{fmt(r['quantnoise_gflops'], '>11.2f')}")
    print("(M/s: millions of subvectors per second for assign, of subvector-iterations for "
          "k-means; qn / faiss > 1: quantnoise is slower)")
    for r in rows:
        if r["faiss_objective"] is not None:
            q = report.get(quantnoise_case(r["case"], tag), {})
            print(f"{r['case']}: faiss final objective {r['faiss_objective']:.6e}; quantnoise: "
                  f"{q.get('validation', '-')}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"n": n, "faiss_version": faiss.__version__,
                       "faiss_threads": faiss.omp_get_max_threads(),
                       "quantnoise_report": report_path, "rows": rows,
                       "faiss_runs": {k: v["times"] for k, v in fa.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
