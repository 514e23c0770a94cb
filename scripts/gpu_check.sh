#!/usr/bin/env bash
# Entry point of benchmarks/gpu_check.sh (the GPU check, its options and report live there):
#   bash scripts/gpu_check.sh            # report: docs/benchmarks/gpu.md
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/benchmarks/gpu_check.sh" "$@"
