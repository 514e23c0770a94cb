"""HumanEval pass@k of a checkpoint; samples are sharded over the ranks of the launch.

    deepspeed --num_gpus 8 scripts/humaneval.py --checkpoint runs/pep8_mle \
        --samples_per_problem 200 --k 1,10,100 --temperature 0.8 --out reports/humaneval/pep8_mle
    python scripts/humaneval.py --samples_file samples.jsonl --out reports/humaneval/given

Writes OUT/humaneval.json and OUT/samples.jsonl (harness/downstream/humaneval.py; docs/downstream.md).
"""

import sys

from harness.cli import humaneval_main

if __name__ == "__main__":
    sys.exit(humaneval_main())
