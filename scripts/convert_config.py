"""Convert a config of the original PHF code (task + method files) into a native harness YAML.

    python scripts/convert_config.py --task configs/original/pep8/pretrain.yml \
        --method configs/original/pep8/awr.yml [--override training.learning_rate=5e-4 ...] \
        -o pep8_awr.yaml
    deepspeed scripts/train.py --config pep8_awr.yaml     # run.name original-pep8-awr
"""

import sys

from harness.cli import convert_main

if __name__ == "__main__":
    sys.exit(convert_main())
