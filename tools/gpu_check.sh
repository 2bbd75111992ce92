#!/usr/bin/env bash
# The conformance suite on an NVIDIA machine that has JAX or PyTorch with CUDA but no TensorFlow
# and no network. Two steps:
#
#   tools/gpu_check.sh prepare [WHEELS]            on a machine with network: wheels into WHEELS
#   tools/gpu_check.sh run [jax|torch] [WHEELS]    on the GPU machine: install them, run the suite
#   tools/gpu_check.sh bench [jax|torch] [WHEELS] [TABLE...]  there too: benchmark tables
#
# WHEELS defaults to .whl (git-ignored). `run` writes gpu-check-<backend>.txt into
# $OUT (or the current folder) and exits non-zero if any check failed. `bench` writes
# gpu-bench-<backend>-<table>.txt there (benchmarks/compare.py; tables dot, dot-bf16, additive).
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-}
case "$step" in
prepare)
    wheels=${2:-.whl}
    mkdir -p "$wheels"
    python3 -m pip wheel -q --no-deps -w "$wheels" . plugins/attnkit-cosine plugins/attnkit-dilated
    # The GPU image has numpy, attrs, pluggy, packaging, h5py, ml-dtypes, rich and absl-py;
    # it lacks Keras and two of its needs. Pin the versions this checkout is tested with.
    keras_version=$(python3 -c "import keras; print(keras.__version__)")
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$wheels" \
        "keras==$keras_version" namex optree
    ls "$wheels"
    ;;
run | bench)
    backend=${2:-jax}
    wheels=${3:-.whl}
    site=/tmp/attnkit-site
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" \
        "$wheels"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    export KERAS_BACKEND="$backend" XLA_PYTHON_CLIENT_PREALLOCATE=false
    out=${OUT:-.}
    if [ "$step" = bench ]; then
        # The backends' defaults (TF32 matmuls allowed), as a user's model would run. Tables:
        # dot (float32) and dot-bf16: attnkit against keras.layers.Attention,
        # dot_product_attention and its flash path (which wants bfloat16); additive: the
        # pairwise scorer's plans. Each takes a few minutes; name some to run only those.
        status=0
        tables=("${@:4}")
        [ ${#tables[@]} -gt 0 ] || tables=(dot dot-bf16 additive)
        for table in "${tables[@]}"; do
            case "$table" in
            dot) args=(--only dot --dtype float32 --lengths 1024 4096 16384) ;;
            dot-bf16) args=(--only dot --dtype bfloat16 --lengths 4096 16384 65536) ;;
            additive) args=(--only additive --dtype float32 --lengths 1024 4096 16384) ;;
            *) echo "unknown table $table (dot, dot-bf16, additive)" >&2; exit 2 ;;
            esac
            python3 -m benchmarks.compare --backend "$backend" "${args[@]}" --repeats 20 \
                --warmup 3 --timeout 300 | tee "$out/gpu-bench-$backend-$table.txt" || status=$?
        done
        exit $status
    fi
    # Compare in true float32: no TF32 in cuBLAS/cuDNN (torch) and full-precision JAX matmuls.
    export NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest
    python3 -c "import keras, attnkit; print('keras', keras.__version__, keras.backend.backend(), 'attnkit', attnkit.__version__)"
    status=0
    python3 -m attnkit.cli check --all --device all | tee "$out/gpu-check-$backend.txt" || status=$?
    python3 -m attnkit.cli check --all --device gpu --json > "$out/gpu-check-$backend.json" || true
    exit $status
    ;;
*)
    echo "usage: $0 prepare [WHEELS] | run [jax|torch] [WHEELS] | bench [jax|torch] [WHEELS] [TABLE...]" >&2
    exit 2
    ;;
esac
