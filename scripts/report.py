"""Plots (PNG) and a Markdown table comparing PHF runs.

python scripts/report.py runs/pep8_mle runs/pep8_conditional --out reports/pep8
"""

import sys

from harness.cli import report_main

if __name__ == "__main__":
    sys.exit(report_main())
