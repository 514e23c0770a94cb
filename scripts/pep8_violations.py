"""Which PEP8 violations make up each run's misalignment score? Codes per 1,000 characters.

    python scripts/pep8_violations.py runs/experiments/pep8_small/{mle,filtering,conditional}
    python scripts/pep8_violations.py runs/a runs/b --scenario prompted --step 300 --no_data

Prints a Markdown table: the first run's held-out data (what the model was trained to imitate)
beside the samples of each run's latest evaluation (harness/analysis/violations.py).
"""

import sys

from harness.cli import violations_main

if __name__ == "__main__":
    sys.exit(violations_main())
