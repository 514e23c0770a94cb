"""Prepare a corpus (score, tokenizer, pack) outside training: a local pool, SLURM or Ray.

    python scripts/prepare.py --config configs/pep8_awr.yaml --executor local --workers 16
    python scripts/prepare.py --config configs/pep8_awr.yaml --executor slurm --partition cpu
    python scripts/prepare.py --config configs/pep8_awr.yaml --executor ray --workers 64

Then `deepspeed scripts/train.py --config configs/pep8_awr.yaml` starts training in seconds.
"""

import sys

from harness.cli import prepare_main

if __name__ == "__main__":
    sys.exit(prepare_main())
