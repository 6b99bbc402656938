#!/usr/bin/env bash
# The CUDA check of the flash backend, in three parts: the GPU machines have nvcc but no Rust
# toolchain and no network, and take at most 64 MiB of carried files, so the binary is built here
# and only the checking runs there.
#
#   scripts/gpu-check.sh check   (CI, no GPU) the compiler pieces of the CUDA 13 toolkit and the
#                                CUTLASS headers from PyPI (nvcc, nvvm, crt, runtime, CCCL, CUTLASS:
#                                about 110 MB), then `cargo clippy -D warnings` of the router and
#                                flash backend with the `cuda` feature, which compiles candle's CUDA
#                                kernels with nvcc and checks every line of tessera's GPU code, and
#                                again with `flash-attn`, which also compiles tessera's flash-attention
#                                entry point (backends/flash-attn/src/varlen.cu) against the kernels'
#                                headers, but not the kernels (TESSERA_FLASH_ATTN_CHECK_ONLY=1): so
#                                none of it can rot unnoticed (about 9 minutes on 2 cores from nothing).
#   scripts/gpu-check.sh kernels here: builds the flash-attention kernels tessera calls (10 CUTLASS
#                                kernels, backends/flash-attn/build.rs) into the object cache
#                                target/gpu-check/flash-attn-objects, and says how long it took.
#   scripts/gpu-check.sh build   here, with crates.io and PyPI reachable: the toolkit with cuBLAS,
#                                `cargo build --release --features F` for each F in $FEATURES
#                                (default "cuda flash-attn"; flash-attn's kernels come from the
#                                cache), then the binaries (xz), libcudart and every tiny model with
#                                an embedding golden into target/gpu-check/carry (under 64 MiB).
#   scripts/gpu-check.sh run     on the GPU machine, with target/gpu-check/carry carried: serves each
#                                model with each binary on the GPU (float32 and float16), compares
#                                the embeddings with the goldens, checks the attention kernel each
#                                reports, then measures 4 x 32 mixed load and one 8192-token ALiBi
#                                input (scripts/gpu_parity.py); exits non-zero on any mismatch.
#
# CUDA_COMPUTE_CAP (default 90: H100/H200) picks the architecture the kernels are built for.
# candle-flash-attn's own build compiles all 53 of its kernels (about 70 minutes on 2 cores) and
# clones CUTLASS from GitHub; tessera's (backends/flash-attn) compiles the 10 it calls from the same
# sources, fetched by `cargo fetch`, against CUTLASS 4.2's headers from PyPI, one nvcc per core,
# each object cached as it completes: see docs/operations.md, "GPU (CUDA)", for the times.
# No GPU has been lent to the tasks so far: the GPU run has not happened.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$PWD/target/gpu-check"
carry="$work/carry"

# The compiler: enough for nvcc to build candle's kernels (`check`).
COMPILER=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cutlass==4.2.0.0)
# What linking adds (`build`).
LIBRARIES=(nvidia-cuda-nvrtc==13.0.88 "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*")

# toolkit PACKAGES...: downloads and unpacks them (once; a package already unpacked is skipped).
toolkit() {
  local wheels="$work/wheels" site="$work/site"
  mkdir -p "$wheels"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 --platform manylinux_2_27_x86_64 \
    -d "$wheels" "$@" >&2
  mkdir -p "$site/.unpacked"
  for wheel in "$wheels"/*.whl; do
    local mark="$site/.unpacked/$(basename "$wheel")"
    [ -f "$mark" ] || { python3 -m zipfile -e "$wheel" "$site" && touch "$mark"; }
  done
  chmod +x "$site"/nvidia/cu13/bin/* "$site"/nvidia/cu13/nvvm/bin/*
  cuda="$site/nvidia/cu13"
  # Unversioned names for the linker (the wheels ship only the runtime sonames).
  for lib in "$cuda"/lib/lib*.so.*; do
    ln -sf "$(basename "$lib")" "${lib%%.so.*}.so"
  done
  # The driver library is not on PyPI (it comes with the GPU driver): link against a stub with its
  # soname whose symbols are the driver API's names, taken from cuda.h after macro expansion
  # (cuCtxCreate -> cuCtxCreate_v2 ...). At run time the real libcuda.so.1 is loaded.
  if [ ! -f "$cuda/lib/stubs/libcuda.so" ]; then
    mkdir -p "$cuda/lib/stubs"
    echo '#include <cuda.h>' | gcc -E -I"$cuda/include" - |
      grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u |
      sed 's/.*/void &(void) {}/' > "$cuda/lib/stubs/libcuda.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$cuda/lib/stubs/libcuda.c"
  fi
  cutlass="$site/cutlass_library/source"
}

# The environment nvcc and the CUDA crates' build scripts read.
cuda_env() {
  export CUDA_HOME="$cuda" CUDA_PATH="$cuda" PATH="$cuda/bin:$PATH"
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
  # backends/flash-attn/build.rs: the CUTLASS headers and the object cache.
  export CUTLASS_DIR="$cutlass" TESSERA_FLASH_ATTN_CACHE="$work/flash-attn-objects"
}

check() {
  toolkit "${COMPILER[@]}"
  cuda_env
  local started=$SECONDS
  cargo clippy -p tessera-router -p tessera-flash --features tessera-router/cuda --target-dir "$work/target" -- -D warnings
  echo "cuda check: $((SECONDS - started)) s" >&2
  started=$SECONDS
  # The kernel sources backends/flash-attn compiles come with the crate Cargo.lock pins.
  cargo fetch --locked >/dev/null
  TESSERA_FLASH_ATTN_CHECK_ONLY=1 cargo clippy -p tessera-router -p tessera-flash -p tessera-flash-attn \
    --features tessera-router/flash-attn --target-dir "$work/target" -- -D warnings
  echo "flash-attn check: $((SECONDS - started)) s" >&2
}

kernels() {
  toolkit "${COMPILER[@]}"
  cuda_env
  cargo fetch --locked >/dev/null
  local started=$SECONDS
  cargo check -p tessera-flash-attn --features kernels --target-dir "$work/target"
  echo "flash-attn kernels: $((SECONDS - started)) s (objects in $TESSERA_FLASH_ATTN_CACHE)" >&2
}

# The binaries built and carried, and the attention kernel each must report on the GPU.
declare -A KERNEL=([cuda]=per-sequence [flash-attn]=flash-cuda)

build() {
  toolkit "${COMPILER[@]}" "${LIBRARIES[@]}"
  cuda_env
  cargo fetch --locked >/dev/null
  export LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs:${LIBRARY_PATH:-}"
  export RUSTFLAGS="${RUSTFLAGS:-} -L $cuda/lib -L $cuda/lib/stubs"
  rm -rf "$carry"
  mkdir -p "$carry/lib" "$carry/models"
  for features in ${FEATURES:-cuda flash-attn}; do
    local started=$SECONDS
    cargo build --release -p tessera-router --features "$features" --target-dir "$work/target"
    echo "release build with $features: $((SECONDS - started)) s" >&2
    # The flash-attention kernels are most of that binary (one kernel's object is 6.3 MB for
    # sm_90, 0.65 MB under xz): compressed, both binaries fit the 64 MiB a GPU call may carry.
    strip -o "$work/tessera-$features" "$work/target/release/tessera"
    xz -T0 -9 -c "$work/tessera-$features" > "$carry/tessera-$features.xz"
  done
  cp "$cuda"/lib/libcudart.so.13 "$carry/lib/"
  # Every tiny model with an embedding golden: each family, its variants, both ALiBi models.
  for model in ../shared/models/bert-tiny ../shared/models/jina-tiny reference/models/*; do
    grep -q '"embeddings"' "$model/golden.json" 2>/dev/null && cp -r "$model" "$carry/models/"
  done
  cp scripts/gpu_parity.py "$carry/"
  du -sh "$carry"
  [ "$(du -sm "$carry" | cut -f1)" -lt 64 ] || echo "warning: $carry is over the 64 MiB a GPU call may carry" >&2
}

run() {
  ls "$carry"/tessera-*.xz >/dev/null 2>&1 || { echo "no $carry/tessera-*.xz: run 'scripts/gpu-check.sh build' here first" >&2; exit 2; }
  nvidia-smi -L
  local binaries=()
  for packed in "$carry"/tessera-*.xz; do
    local features
    features="$(basename "$packed" .xz)"
    features="${features#tessera-}"
    xz -d -c "$packed" > "/tmp/tessera-$features" && chmod +x "/tmp/tessera-$features"
    binaries+=("/tmp/tessera-$features=${KERNEL[$features]}")
  done
  # cuBLAS, cuRAND and NVRTC come from the machine's own CUDA 13 Python packages.
  local libs
  libs="$(python3 - <<'PY'
import glob, os, site
dirs = set()
for root in site.getsitepackages():
    for name in ("cublas", "curand", "cuda_nvrtc", "cu13"):
        for lib in glob.glob(os.path.join(root, "nvidia", "**", "lib", "*.so*"), recursive=True):
            dirs.add(os.path.dirname(lib))
print(":".join(sorted(dirs)))
PY
)"
  export LD_LIBRARY_PATH="$carry/lib:$libs:${LD_LIBRARY_PATH:-}"
  python3 "$carry/gpu_parity.py" "$carry/models" "${binaries[@]}"
}

case "${1:-}" in
  check) check ;;
  kernels) kernels ;;
  build) build ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh check|kernels|build|run" >&2; exit 2 ;;
esac
