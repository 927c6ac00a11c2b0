#!/usr/bin/env bash
# Conformance tests and the benchmark report on a machine with a real GPU but no Rust toolchain.
#
#   scripts/gpu.sh pack         here (with cargo): build the release test binaries, the
#                               `quantnoise` binary and the examples, strip them and put them
#                               in one archive, .gpu/bundle.tar.xz (git-ignored)
#   scripts/gpu.sh run OUTDIR   there: unpack the archive, run every test binary with
#                               QUANTNOISE_REQUIRE_GPU=1, the examples, the benchmark report
#                               (OUTDIR/bench.json) and, where PyTorch with CUDA is installed,
#                               benches/cublas_compare.py (OUTDIR/cublas.json). OUTDIR gets
#                               summary.txt, device.txt (adapters), and every log in logs.tar.gz
#
# The tests run on the adapters of GPU_TEST_BACKEND (default vulkan; `auto` for every backend):
# on headless NVIDIA machines wgpu's GL backend finds the GPU through EGL but fails to open a
# device ("Parent device is lost"), which device.txt shows.
#
# `run` unpacks Vulkan/GL loader packages from .gl/*.deb when the system has no libvulkan.
# Time limits (seconds, from the environment): GPU_TEST_TIMEOUT per test binary (default 180;
# the binaries run concurrently), GPU_BENCH_TIMEOUT (240), and GPU_DEADLINE for the whole run
# (600): the benchmark report runs last and gets at most what is left of it. GPU_BENCH_ROUNDS
# (5) and GPU_BENCH_ARGS (e.g. `--filter fma`) shape the report. GPU_TEST_SKIP names test
# binaries not to run (e.g. `lib_quantnoise`); GPU_CUBLAS=0 skips the cuBLAS baseline.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
bundle=.gpu/bundle.tar.xz

pack() {
    set -e
    local stage
    stage=$(mktemp -d)
    mkdir -p "$stage/tests" "$stage/examples" .gpu
    cargo build --release --bin quantnoise --examples
    strip -o "$stage/quantnoise" target/release/quantnoise
    for f in examples/*.rs; do
        f=$(basename "$f" .rs)
        strip -o "$stage/examples/$f" "target/release/examples/$f"
    done
    # Every test target, the library's unit tests included, by target name.
    cargo test --release --no-run --lib --tests --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        kind = m["target"]["kind"][0]
        if kind in ("test", "lib"):
            print(kind, m["target"]["name"], m["executable"])
' | while read -r kind name exe; do
            case $kind in
                lib) strip -o "$stage/tests/lib_$name" "$exe" ;;
                *) strip -o "$stage/tests/$name" "$exe" ;;
            esac
        done
    git rev-parse HEAD >"$stage/commit"
    git status --porcelain --untracked-files=no | grep -q . && echo dirty >>"$stage/commit"
    tar -C "$stage" -cf - . | xz -9e -T0 >"$bundle"
    rm -rf "$stage"
    ls -la "$bundle"
}

step() { printf '\n==> %s\n' "$*"; }

run() {
    local out=${1:?usage: scripts/gpu.sh run OUTDIR}
    mkdir -p "$out/logs"
    out=$(cd "$out" && pwd)
    local logs=$out/logs
    local deadline=$((SECONDS + ${GPU_DEADLINE:-600}))
    local bin=/tmp/quantnoise-gpu
    rm -rf "$bin" && mkdir -p "$bin"
    tar -C "$bin" -xJf "$bundle" || python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle" "$bin" || return 1
    step "bundle built at commit $(tr '\n' ' ' <"$bin/commit")"

    if ! ldconfig -p | grep -q libvulkan.so.1; then
        step "no Vulkan loader: unpacking .gl/*.deb"
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [[ -e $icd && -z ${VK_DRIVER_FILES:-} ]] && export VK_DRIVER_FILES=$icd
    local egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    [[ -e $egl && -z ${__EGL_VENDOR_LIBRARY_FILENAMES:-} ]] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
    # tests/shaders.rs reads the WGSL sources from the directory it was built in.
    local built_in=/work/main
    if [[ ! -e $built_in/shaders ]]; then mkdir -p "$(dirname "$built_in")" && ln -sfn "$root" "$built_in"; fi

    {
        date -u +%Y-%m-%dT%H:%M:%SZ
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
        "$bin/quantnoise" info 2>&1
    } | tee "$out/device.txt"

    export QUANTNOISE_REQUIRE_GPU=1
    local backend=${GPU_TEST_BACKEND:-vulkan}
    step "tests and examples on backend $backend"
    local failed=() t name
    # All test binaries at once (a GPU machine has the cores, and the cold pipeline compiles
    # of one binary then overlap the others'), each with its own time limit.
    local skip=" ${GPU_TEST_SKIP:-} "
    for t in "$bin"/tests/*; do
        name=$(basename "$t")
        [[ $skip == *" $name "* ]] && rm "$t" && continue
        (
            start=$(date +%s%N)
            QUANTNOISE_BACKEND=$backend timeout "${GPU_TEST_TIMEOUT:-180}" "$t" --test-threads 4 \
                >"$logs/test_$name.log" 2>&1
            rc=$?
            echo "$rc" >"$logs/test_$name.rc"
            printf '%-16s rc=%-3s %6d ms  %s\n' "$name" "$rc" "$((($(date +%s%N) - start) / 1000000))" \
                "$(grep -E '^test result:' "$logs/test_$name.log" | tail -1)"
        ) &
    done
    wait
    for t in "$bin"/tests/*; do
        name=$(basename "$t")
        printf '%-16s rc=%-3s %s\n' "$name" "$(cat "$logs/test_$name.rc")" \
            "$(grep -E '^test result:' "$logs/test_$name.log" | tail -1)" >>"$out/summary.txt"
        [[ $(cat "$logs/test_$name.rc") == 0 ]] || failed+=("$name")
    done
    for t in "$bin"/examples/*; do
        QUANTNOISE_BACKEND=$backend timeout 60 "$t" >"$logs/example_$(basename "$t").log" 2>&1
        rc=$?
        printf 'example %-16s rc=%s  %s\n' "$(basename "$t")" "$rc" "$(grep -v "^\s*$" "$logs/example_$(basename "$t").log" | tail -1)" |
            tee -a "$out/summary.txt"
        ((rc == 0)) || failed+=("example_$(basename "$t")")
    done
    if [[ ${GPU_CUBLAS:-1} != 0 ]] && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        step "vendor BLAS (cuBLAS through PyTorch, TF32 off)"
        timeout 60 python3 benches/cublas_compare.py --json "$out/cublas.json" 2>&1 | tee "$logs/cublas.txt"
    fi
    step "benchmark report"
    local bench_limit=$((deadline - SECONDS))
    ((bench_limit > ${GPU_BENCH_TIMEOUT:-240})) && bench_limit=${GPU_BENCH_TIMEOUT:-240}
    QUANTNOISE_TUNE_LOG=1 timeout "$bench_limit" "$bin/quantnoise" bench --backend vulkan \
        --rounds "${GPU_BENCH_ROUNDS:-5}" --cpu-rounds 1 ${GPU_BENCH_ARGS:-} --json "$out/bench.json" >"$logs/bench.txt" 2>"$logs/bench.log"
    rc=$?
    echo "bench rc=$rc" | tee -a "$out/summary.txt"
    ((rc == 0)) || failed+=(bench)
    step "summary"
    cat "$out/summary.txt"
    tar -C "$out" -czf "$out/logs.tar.gz" logs && rm -rf "$logs"
    if ((${#failed[@]})); then
        echo "FAILED: ${failed[*]}"
        return 1
    fi
    echo "all passed"
}

case ${1:-} in
    pack) pack ;;
    run) run "${2:-}" ;;
    *)
        sed -n '2,15p' "${BASH_SOURCE[0]}"
        exit 2
        ;;
esac
