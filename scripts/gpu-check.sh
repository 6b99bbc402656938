#!/usr/bin/env bash
# The CUDA check of the flash backend, in three parts: the GPU machines have nvcc but no Rust
# toolchain and no network, and take at most 64 MiB of carried files, so the binary is built here
# and only the checking runs there.
#
#   scripts/gpu-check.sh check   (CI, no GPU) the compiler pieces of the CUDA 13 toolkit from PyPI
#                                (nvcc, nvvm, crt, runtime and CCCL headers: about 100 MB), then
#                                `cargo clippy -D warnings` of the router and flash backend with the
#                                `cuda` feature, which compiles candle's CUDA kernels with nvcc and
#                                checks every line of tessera's GPU code, so none of it can rot
#                                unnoticed (about 9 minutes on 2 cores from nothing).
#   scripts/gpu-check.sh build   here, with crates.io and PyPI reachable: the toolkit with cuBLAS and
#                                CUTLASS headers from PyPI (candle-flash-attn's build script would
#                                clone CUTLASS from GitHub), `cargo build --release --features
#                                $FEATURES` (default `cuda`; `flash-attn` adds flash attention),
#                                then the binary (xz), libcudart and two small shared models into
#                                target/gpu-check/carry (under 64 MiB).
#   scripts/gpu-check.sh run     on the GPU machine, with target/gpu-check/carry carried: serves each
#                                model on the GPU (float32 and float16) and compares the embeddings
#                                with the goldens; exits non-zero on any mismatch. Well under 8 minutes.
#
# CUDA_COMPUTE_CAP (default 90: H100/H200) picks the architecture the kernels are built for.
# candle-flash-attn builds 53 CUTLASS kernels, about 2.5 CPU-minutes and 1.6 GB each; its build
# script runs one nvcc per two cores unless CUDAFORGE_THREADS says otherwise, which this script sets
# to every core: about 70 minutes on the 2-core development machine. cudaforge records finished objects only when all are done, so a stopped
# build starts over. Seen working on the 2-core machine: the PyPI toolkit, the libcuda stub and the
# CUTLASS 4.2 headers build cudarc, candle-kernels, candle-core (cuda) and the first flash-attention
# kernels for sm_90a (CUTLASS 3.5.1 does not compile against CUDA 13). Not yet done: the whole
# build (so tessera's CUDA kernel has never been compiled) and the GPU run; no GPU was lent to the
# task that wrote this.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$PWD/target/gpu-check"
carry="$work/carry"

# The compiler: enough for nvcc to build candle's kernels (`check`).
COMPILER=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
# What linking and flash attention add (`build`).
LIBRARIES=(nvidia-cuda-nvrtc==13.0.88 "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*" nvidia-cutlass==4.2.0.0)

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
  [ -d "$site/cutlass_library" ] || return 0
  # cudaforge accepts a CUTLASS checkout when it has include/ and `git rev-parse HEAD` names the
  # commit candle-flash-attn pins; the headers here are CUTLASS 4.2 from PyPI, at that name.
  local pinned=7d49e6c7e2f8896c47f586706e67e1fb215529dc
  cutlass="$work/cudaforge/git/checkouts/cutlass-${pinned:0:16}"
  if [ ! -d "$cutlass/include" ]; then
    mkdir -p "$cutlass/tools/util"
    cp -r "$site/cutlass_library/source/include" "$cutlass/include"
    cp -r "$site/cutlass_library/source/tools/util/include" "$cutlass/tools/util/include"
    git -C "$cutlass" init -q
    echo "$pinned" > "$cutlass/.git/HEAD"
  fi
}

# The environment nvcc and the CUDA crates' build scripts read.
cuda_env() {
  export CUDA_HOME="$cuda" CUDA_PATH="$cuda" PATH="$cuda/bin:$PATH"
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
}

check() {
  toolkit "${COMPILER[@]}"
  cuda_env
  local started=$SECONDS
  cargo clippy -p tessera-router -p tessera-flash --features tessera-router/cuda --target-dir "$work/target" -- -D warnings
  echo "cuda check: $((SECONDS - started)) s" >&2
}

build() {
  toolkit "${COMPILER[@]}" "${LIBRARIES[@]}"
  cuda_env
  mkdir -p "$work/flash-attn"
  export CUDAFORGE_HOME="$work/cudaforge" CANDLE_FLASH_ATTN_BUILD_DIR="$work/flash-attn"
  export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
  export LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs:${LIBRARY_PATH:-}"
  export RUSTFLAGS="${RUSTFLAGS:-} -L $cuda/lib -L $cuda/lib/stubs"
  cargo build --release -p tessera-router --features "${FEATURES:-cuda}" --target-dir "$work/target"
  rm -rf "$carry"
  mkdir -p "$carry/lib" "$carry/models"
  # The flash-attention kernels are most of the binary (one kernel's object is 6.3 MB for sm_90a,
  # 0.65 MB under xz): compressed, it has a chance to fit the 64 MiB a GPU call may carry.
  strip -o "$work/tessera" "$work/target/release/tessera"
  xz -T0 -9 -c "$work/tessera" > "$carry/tessera.xz"
  cp "$cuda"/lib/libcudart.so.13 "$carry/lib/"
  for model in bert-tiny jina-tiny; do
    cp -r "../shared/models/$model" "$carry/models/"
  done
  cp scripts/gpu_parity.py "$carry/"
  du -sh "$carry"
  [ "$(du -sm "$carry" | cut -f1)" -lt 64 ] || echo "warning: $carry is over the 64 MiB a GPU call may carry" >&2
}

run() {
  [ -f "$carry/tessera.xz" ] || { echo "no $carry/tessera.xz: run 'scripts/gpu-check.sh build' here first" >&2; exit 2; }
  xz -d -c "$carry/tessera.xz" > /tmp/tessera-gpu && chmod +x /tmp/tessera-gpu
  nvidia-smi -L
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
  python3 "$carry/gpu_parity.py" /tmp/tessera-gpu "$carry/models"
}

case "${1:-}" in
  check) check ;;
  build) build ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh check|build|run" >&2; exit 2 ;;
esac
