"""Sample, score and measure a checkpoint; samples are sharded over the ranks of the launch.

    deepspeed --num_gpus 2 scripts/evaluate.py --checkpoint runs/pep8_mle --eval.num_samples 4096
    python scripts/evaluate.py --checkpoint runs/pep8_mle/checkpoints/step-00005000

Writes <run folder>/eval/step-XXXXXXXX/samples.jsonl and metrics.json (harness/evaluation).
"""

import sys

from harness.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
