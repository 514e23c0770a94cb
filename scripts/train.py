"""Train (or resume) a PHF run.

deepspeed --num_gpus 2 scripts/train.py --config configs/pep8_mle.yaml --config configs/quickstart.yaml
python scripts/train.py --config ... --print_config
"""

import sys

from harness.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
