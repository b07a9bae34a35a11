#!/usr/bin/env bash
# The GPU subset of the scale benchmark (benchmarks/README.md, "Scale"), under 8 minutes on one
# NVIDIA GPU: full-batch gradients of the MLP and the paper CNN, N = 1k ... 64k, P ≈ 1e4 ... 1e6,
# float32 and float64, beside PyTorch on CUDA when it has CUDA (else JAX alone).
#
#   pip install -e ".[gpu]"             # jax[cuda12]; torch with CUDA is optional
#   bash benchmarks/device.sh           # -> benchmarks/results/scale_gpu.json
#   bash benchmarks/device.sh --tiny    # seconds on any machine, CPU included: checks that it runs
#
# OUT=<folder> writes the JSON (and the `gradflow info` report) there instead.
set -euo pipefail
cd "$(dirname "$0")/.."
tiny=()
suffix=""
if [[ "${1:-}" == "--tiny" ]]; then
    tiny=(--tiny)
    suffix="_tiny"
fi
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
python -c "import sys; from gradflow._cli import main; sys.exit(main(['info']))" | tee "$out/device_info${suffix}.txt"
# GPU: every thread setting left to the libraries (--threads 0); 7 min of points at most
timeout 470 python benchmarks/scale.py --device gpu "${tiny[@]}" --threads 0 --repeats 5 \
    --cap-s 60 --budget-s 400 --out "$out/scale_gpu${suffix}.json"
