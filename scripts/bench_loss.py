#!/usr/bin/env python
"""Entry point of benchmarks/bench_loss.py (the benchmark and its usage live there)."""

import os
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_loss.py"

if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, str(TARGET), *sys.argv[1:]])
