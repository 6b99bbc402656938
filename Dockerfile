# syntax=docker/dockerfile:1
# tessera images. CPU (the default target):
#   docker build -t REGISTRY/tessera:cpu .
# NVIDIA GPUs (the `cuda` feature; CUDA_COMPUTE_CAP: 80 A100, 86 A10/RTX 30, 89 L4/L40, 90 H100/H200):
#   docker build --target cuda --build-arg CUDA_COMPUTE_CAP=90 -t REGISTRY/tessera:cuda .
# with flash attention for float16/bfloat16 (10 CUTLASS kernels: about 15 minutes more on 2 cores):
#   docker build --target cuda --build-arg FEATURES=flash-attn -t REGISTRY/tessera:cuda .
# deploy/kubernetes/ refers to both as the image `tessera` (tags `cpu`, `cuda`).

ARG RUST_VERSION=1.95
ARG CUDA_VERSION=12.8.1
ARG UBUNTU=ubuntu24.04

# --- build: the README's release build -------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build-cpu
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tessera \
    && cp target/release/tessera /tessera

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build-cuda
ARG RUST_VERSION
ARG CUDA_COMPUTE_CAP=90
# `cuda`, or `flash-attn` (cuda plus flash attention, which needs the CUTLASS headers).
ARG FEATURES=cuda
ARG CUTLASS_VERSION=v4.2.0
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates curl build-essential pkg-config git \
    && rm -rf /var/lib/apt/lists/*
RUN git clone --quiet --depth 1 --branch ${CUTLASS_VERSION} https://github.com/NVIDIA/cutlass /opt/cutlass
ENV CUTLASS_DIR=/opt/cutlass
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION}
WORKDIR /src
COPY . .
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo fetch --locked \
    && cargo build --release --locked -p tessera-router --bin tessera --features ${FEATURES} \
    && cp target/release/tessera /tessera

# --- runtime: the binary, CA certificates for the hub, a non-root user, nothing else ------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS cuda
COPY --from=build-cuda /tessera /usr/local/bin/tessera
# The model cache lives on a volume (deploy/kubernetes mounts one at /data).
ENV HUGGINGFACE_HUB_CACHE=/data/hub
USER 65532:65532
EXPOSE 3000 9000
ENTRYPOINT ["/usr/local/bin/tessera"]
# TEI's images' default: flags alone are `serve`'s, so a TEI container's arguments work as given.
CMD ["--json-output"]

FROM debian:bookworm-slim AS cpu
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build-cpu /tessera /usr/local/bin/tessera
ENV HUGGINGFACE_HUB_CACHE=/data/hub
USER 65532:65532
EXPOSE 3000 9000
ENTRYPOINT ["/usr/local/bin/tessera"]
# TEI's images' default: flags alone are `serve`'s, so a TEI container's arguments work as given.
CMD ["--json-output"]
