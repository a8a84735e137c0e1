#!/usr/bin/env bash
# The one script to run when a GPU is lent: exp3 training images/s (fast vs reference
# pipeline, bf16, compile on and off), peak GPU memory, and one full epoch on real FER2013
# when data/fer2013 is present. Prints one JSON object (last line).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/gpu_check.py "$@"
