"""Score a corpus into deterministic Parquet shards (paper schema), on one or many ranks.

    python scripts/score.py --config configs/pep8_mle.yaml --config configs/quickstart.yaml
    deepspeed --num_gpus 2 scripts/score.py --config configs/pep8_mle.yaml --config configs/quickstart.yaml

Rerunning skips finished shards; the output loads with datasets.load_dataset("parquet", data_dir=...).
"""

import sys

from harness.cli import score_main

if __name__ == "__main__":
    sys.exit(score_main())
