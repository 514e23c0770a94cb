"""How often do each run's samples carry one PEP8 code? The rate per generated line, ± s.e.

    python scripts/line_rates.py runs/experiments/pep8_mechanism/* --code W291 --out rates

Prints a Markdown table of each run's latest evaluation (a conditional run on both sides of its
control token, with the gap in standard errors); --out also writes every evaluation's rates
(rates.json) and the rate vs tokens (rates.png). harness/analysis/line_rates.py defines them.
"""

import sys

from harness.cli import line_rates_main

if __name__ == "__main__":
    sys.exit(line_rates_main())
