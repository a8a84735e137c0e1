#!/usr/bin/env bash
# One call on a lent GPU: exp3, exp3_center and exp3_softmax on real FER2013 (data/fer2013,
# carried with the call), fast pipeline, each validated on val; prints one JSON object.
# `--smoke` runs it on tiny synthetic data on the CPU; `--epochs N` sizes the recipe down.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/device_env.sh
python3 benchmarks/gpu_reproduce.py "$@"
