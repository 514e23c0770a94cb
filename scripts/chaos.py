"""Kill a run anywhere, many times, and check that it ends where an uninterrupted run does.

    python scripts/chaos.py --config configs/chaos.yaml --out runs/chaos --kills 20 --seed 0

Runs the config once uninterrupted (training on 2 ranks; the data stage with 2 workers), then
again while SIGKILLing it at seeded random moments (the whole process group, one rank, wandb's
service process), rerunning the same command after every kill until it completes, and compares
the two: every logged loss, the final weights, metrics.jsonl, eval/, hf/, the data cache, and
no stray temporary files. Writes <out>/chaos_report.json; exit code 0 when nothing differs.
"""

import sys

from harness.cli import chaos_main

if __name__ == "__main__":
    sys.exit(chaos_main())
