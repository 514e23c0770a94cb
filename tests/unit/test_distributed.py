"""harness.distributed: a finished command tears its process group down before the interpreter does."""

from __future__ import annotations

import subprocess
import sys

# Init first, then import a model (as scripts/humaneval.py does), then shut down: no Gloo or
# TCPStore thread may be left for interpreter finalisation, where a rank can abort with
# "terminate called without an active exception" after its work is done.
SCRIPT = """
import os
from harness import distributed as dist
dist.init_distributed()
from transformers import GPT2LMHeadModel
dist.shutdown_distributed()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(sorted(n for n in names if "gloo" in n or "tcpstore" in n))
"""


def test_shutdown_leaves_no_gloo_thread_after_a_late_model_import():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
