#!/usr/bin/env bash
# The whole quantnoise test suite.
#
# On Debian/Ubuntu, first installs (with apt-get, via sudo when not root) what the suite uses
# when it is missing: Mesa's software Vulkan driver (lavapipe) and GL driver (llvmpipe), the
# Vulkan loader and vulkaninfo, and the shader validators spirv-val and glslangValidator.
# Once the validators are known to be installed it sets QUANTNOISE_REQUIRE_VALIDATORS=1, so a
# validator that cannot run fails the shader tests instead of skipping them.
#
# QUANTNOISE_REQUIRE_GPU is left to the caller: set it to 1 to make a missing GPU adapter a
# test failure (CI does); unset, GPU tests without an adapter are skipped with a notice.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(
    mesa-vulkan-drivers libvulkan1 vulkan-tools
    libegl1 libegl-mesa0 libgl1-mesa-dri
    spirv-tools glslang-tools
)

have() { command -v "$1" >/dev/null 2>&1; }

have_lavapipe() {
    local d f
    for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        for f in "$d"/lvp_icd*.json; do
            [[ -e "$f" ]] && return 0
        done
    done
    return 1
}

missing_tools() {
    local missing=()
    have vulkaninfo || missing+=(vulkaninfo)
    have_lavapipe || missing+=("lavapipe ICD (lvp_icd*.json)")
    have spirv-val || missing+=(spirv-val)
    have glslangValidator || missing+=(glslangValidator)
    [[ -e /usr/share/glvnd/egl_vendor.d/50_mesa.json ]] || missing+=("Mesa EGL (50_mesa.json)")
    if ((${#missing[@]})); then
        local IFS=,
        echo "${missing[*]}"
    fi
}

is_debian_like() {
    [[ -r /etc/os-release ]] || return 1
    local id id_like
    id=$(. /etc/os-release && echo "${ID:-}")
    id_like=$(. /etc/os-release && echo "${ID_LIKE:-}")
    [[ "$id" == debian || "$id" == ubuntu || " $id_like " == *" debian "* || " $id_like " == *" ubuntu "* ]]
}

install_tools() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! have sudo; then
            echo "test.sh: not root and no sudo: cannot install ${APT_PACKAGES[*]}" >&2
            return 1
        fi
        sudo=(sudo)
    fi
    echo "==> installing ${APT_PACKAGES[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
}

missing=$(missing_tools)
if [[ -n "$missing" ]]; then
    echo "==> missing: $missing"
    if is_debian_like && have apt-get; then
        install_tools || echo "test.sh: continuing without them; tests that need them will skip" >&2
    else
        echo "test.sh: not Debian/Ubuntu: install a Vulkan or GL driver, spirv-val and glslangValidator yourself;" >&2
        echo "          tests that need them will skip" >&2
    fi
fi

if have spirv-val && have glslangValidator; then
    export QUANTNOISE_REQUIRE_VALIDATORS="${QUANTNOISE_REQUIRE_VALIDATORS:-1}"
fi

echo "==> QUANTNOISE_REQUIRE_GPU=${QUANTNOISE_REQUIRE_GPU:-<unset>}" \
    "QUANTNOISE_REQUIRE_VALIDATORS=${QUANTNOISE_REQUIRE_VALIDATORS:-<unset>}" \
    "QUANTNOISE_BACKEND=${QUANTNOISE_BACKEND:-<unset>}"
if have vulkaninfo; then
    echo "==> Vulkan devices:"
    vulkaninfo --summary 2>/dev/null | grep -E '^\s*(deviceName|driverName)' || echo "    (none)"
fi

echo "==> cargo test --release --all-targets --no-fail-fast"
cargo test --release --all-targets --no-fail-fast

echo "==> cargo test --release --doc"
cargo test --release --doc

# The examples check their own results (non-zero exit on a mismatch); noisy_linear and
# adopt_device run on a device created with wgpu's default limits, as a framework's may be.
for example in examples/*.rs; do
    example=$(basename "$example" .rs)
    echo "==> cargo run --release --example $example"
    cargo run --release --example "$example"
done

echo "==> all tests passed"
