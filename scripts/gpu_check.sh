#!/usr/bin/env bash
# The `cuda` checks of mlops-train, as one script (for a lent GPU machine; see README "GPU").
#   scripts/gpu_check.sh build   # here: the CUDA 13.4 compiler and libraries from PyPI into
#                                # /tmp/cuda13, a link-time stub of the driver (libcuda.so, the
#                                # role of the toolkit's lib/stubs), then the `cuda` feature's
#                                # trainer tests and a release train_bench in target-cuda/
#   scripts/gpu_check.sh run     # on the GPU machine: the trainer's cuda test and one epoch of
#                                # the seed's MLP on cuda:0 and on CPU (the binaries need the
#                                # driver and CUDA 13 cudart/cublas/curand/nvrtc at run time)
set -euo pipefail
cd "$(dirname "$0")/.."
nv=/tmp/cuda13/lib/python3.11/site-packages/nvidia/cu13
case "${1:-}" in
  build)
    if [ ! -x "$nv/bin/nvcc" ]; then
      python3 -m venv /tmp/cuda13
      # cudarc 0.19 knows CUDA up to 13.4; cccl has no 13.4 wheel (13.3 headers work).
      /tmp/cuda13/bin/pip install -q "nvidia-cuda-nvcc==13.4.*" "nvidia-cuda-runtime==13.4.*" \
        "nvidia-cuda-crt==13.4.*" "nvidia-nvvm==13.4.*" "nvidia-cuda-cccl==13.3.*" \
        "nvidia-cuda-nvrtc==13.4.*" "nvidia-cublas==13.*" "nvidia-curand==10.*"
    fi
    export PATH="$nv/bin:$PATH" CUDA_HOME="$nv" CUDA_PATH="$nv" CUDA_ROOT="$nv" CUDA_COMPUTE_CAP=90
    # Linking: unversioned names of the CUDA libraries, and a driver stub that defines every
    # cu* symbol the objects use (replaced by the real libcuda.so.1 at run time).
    link=/tmp/cuda13/linklib
    mkdir -p "$link"
    for f in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
      ln -sf "$nv/lib/lib$f" "$link/lib${f%.so.*}.so"
    done
    cargo build -p mlops-train --features cuda --target-dir target-cuda
    for f in target-cuda/debug/deps/libcudarc-*.rlib target-cuda/debug/deps/libcandle_*.rlib \
             target-cuda/debug/build/candle-kernels-*/out/*.a; do nm -u "$f" 2>/dev/null; done |
      awk '$1 == "U" && $2 ~ /^cu[A-Z]/ {print $2}' | sort -u |
      grep -vxF -f <(for f in "$nv"/lib/lib*.so.*; do nm -D --defined-only "$f" | awk '{print $3}'; done) |
      awk '{print "int " $1 "(void) { return 999; }"}' > "$link/stub.c"
    gcc -shared -fPIC -o "$link/libcuda.so" -Wl,-soname,libcuda.so.1 "$link/stub.c"
    export LIBRARY_PATH="$link"
    cargo test --no-run -p mlops-train --features cuda --test integration --target-dir target-cuda
    cargo build --release --features cuda --example train_bench --target-dir target-cuda
    ;;
  run)
    cargo test -p mlops-train --features cuda --test integration --target-dir target-cuda cuda_trains_on_a_gpu
    python3 - <<'PY'
import numpy as np
rng = np.random.default_rng(11); rows, cols = 200_000, 30
x = rng.normal(size=(rows, cols)).astype(np.float32); w = rng.normal(size=cols) / np.sqrt(cols)
y = (rng.random(rows) < 1 / (1 + np.exp(-(x @ w * 3 - 2)))).astype(np.float32)
np.concatenate([x.ravel(), y]).astype("<f4").tofile("/tmp/train.f32")
PY
    for device in cuda:0 cpu; do
      echo "== $device"
      target-cuda/release/examples/train_bench --data /tmp/train.f32 --rows 200000 --cols 30 \
        --epochs 3 --batch 512 --device "$device"
    done
    ;;
  *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
