# syntax=docker/dockerfile:1
# ingotd and the ingot CLI in a slim Debian 12 image, running as uid 10001.
#
#   docker build -t ingotd:0.1.0-cpu .                                   # CPU
#   docker build --build-arg VARIANT=cuda -t ingotd:0.1.0-cuda .         # + CUDA 13.0
#   docker build --build-arg FETCH_MODEL=1 -t ingotd:0.1.0-cpu .         # + default model
#   docker run -p 50051:50051 -p 9090:9090 -v "$PWD/models:/models:ro" ingotd:0.1.0-cpu
#
# Build-args:
#   VARIANT=cpu|cuda  cpu: the native backend only (-DINGOT_TORCH=OFF), a slim image.
#                     cuda: -DINGOT_CUDA=ON on the same Debian 12 stage with the CUDA 13.0
#                     toolkit from NVIDIA's devel image (CUDACXX, CUDAARCHS=80;90 for
#                     sm_80/sm_90) and libtorch 2.11.0 from the full PyPI torch wheel
#                     (scripts/setup_torch.sh --full: cuBLAS, cuDNN, NCCL...); its shared
#                     libraries ship in /opt/ingot/lib. Models load on cuda:N through the
#                     torch backend. The NVIDIA container runtime provides the driver
#                     (deploy/overlays/gpu).
#   FETCH_MODEL=0|1   1 bakes SmolLM2-135M-Instruct (Q4_1 GGUF, scripts/fetch_model.sh) into
#                     /opt/ingot/models; the Kubernetes init container copies it into the
#                     models volume. Otherwise mount models at /models.
#
# The default command serves /etc/ingot/ingotd.yaml (deploy/base/ingotd.yaml: smol from
# /models, gRPC on :50051, metrics on :9090); Kubernetes mounts its ConfigMap over it.
# No HEALTHCHECK: Kubernetes probes grpc.health.v1 directly (deploy/base/deployment.yaml).
# tests/deploy/dockerfile_test.py checks this file against scripts/setup.sh and the
# libraries the built binaries link.
ARG VARIANT=cpu

FROM nvidia/cuda:13.0.2-devel-ubuntu24.04 AS cuda-toolkit

# Build: the packages of scripts/setup.sh (the script itself runs, so the lists cannot
# drift), then scripts/build.sh.
FROM debian:12.12 AS build-cpu

ENV INGOT_CMAKE_ARGS="-DINGOT_TORCH=OFF" \
    INGOT_SETUP_TORCH=none

FROM build-cpu AS build-cuda
COPY --from=cuda-toolkit /usr/local/cuda-13.0 /usr/local/cuda-13.0
RUN ln -s cuda-13.0 /usr/local/cuda
ENV PATH=/usr/local/cuda/bin:$PATH \
    CUDACXX=/usr/local/cuda/bin/nvcc \
    CUDAARCHS="80;90" \
    INGOT_CMAKE_ARGS="-DINGOT_CUDA=ON" \
    INGOT_SETUP_TORCH=full

# build-cpu or build-cuda: a stage, not an image to tag (hadolint cannot tell).
# hadolint ignore=DL3006
FROM build-${VARIANT} AS build
ARG FETCH_MODEL=0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY scripts/setup.sh scripts/setup_torch.sh scripts/
RUN scripts/setup.sh --no-model && rm -rf /var/lib/apt/lists/*
COPY . .
# /out is the runtime image's tree: binaries, the default config, the libraries ingotd
# links from the torch wheel and the CUDA toolkit (none for cpu), the baked model (if
# asked).
RUN --mount=type=cache,target=/root/.cache/ccache \
    scripts/build.sh ingotd ingot \
    && install -D -m 0755 -t /out/usr/local/bin build/bin/ingotd build/bin/ingot \
    && install -D -m 0644 deploy/base/ingotd.yaml /out/etc/ingot/ingotd.yaml \
    && mkdir -p /out/usr/local/cuda/lib64 /out/opt/ingot/lib /out/opt/ingot/models \
    && { ldd build/bin/ingotd build/bin/ingot | awk '$3 ~ /^\/usr\/local\/cuda/ {print $3}' \
         | sort -u | xargs -r cp -L -t /out/usr/local/cuda/lib64; } \
    && if [ -d .venv-torch ]; then \
         cp -L .venv-torch/lib/python3*/site-packages/torch/lib/*.so* /out/opt/ingot/lib/ \
         && cp -L .venv-torch/lib/python3*/site-packages/nvidia/*/lib/*.so* /out/opt/ingot/lib/; \
       fi
RUN if [ "$FETCH_MODEL" = 1 ]; then \
      scripts/fetch_model.sh && cp models/SmolLM2-135M-Instruct.Q4_1.gguf /out/opt/ingot/models/; \
    fi

# Runtime: the shared libraries ingotd and ingot link (ldd -> dpkg -S, checked by
# tests/deploy/dockerfile_test.py; libcpp-httplib0.11 serves the HTTP API), plus
# libyaml-cpp0.7 for the config file parser.
# Versions are not pinned: Debian 12's point releases only take fixes, and pinning
# would hold back security updates (hadolint DL3008).
FROM debian:12.12-slim AS runtime-cpu
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libabsl20220623 libc-ares2 libcivetweb1 libfmt9 libgrpc++1.51 libgrpc29 \
       libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprotobuf32 libre2-9 \
       libspdlog1.10 libssl3 libstdc++6 zlib1g libcpp-httplib0.11 libbrotli1 \
       libyaml-cpp0.7 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ingot \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ingot \
    && mkdir -p /models \
    && chown 10001:10001 /models

FROM runtime-cpu AS runtime-cuda
ENV LD_LIBRARY_PATH=/opt/ingot/lib:/usr/local/cuda/lib64 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# hadolint ignore=DL3006
FROM runtime-${VARIANT} AS runtime
COPY --from=build /out/ /
USER 10001:10001
WORKDIR /
EXPOSE 50051 9090
VOLUME ["/models"]
ENTRYPOINT ["/usr/local/bin/ingotd"]
CMD ["--config", "/etc/ingot/ingotd.yaml"]
