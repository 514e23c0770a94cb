"""How likely do checkpoints find misaligned vs aligned held-out text? A teacher-forced probe.

    python scripts/probe_heldout.py --checkpoint runs/experiments/pep8_small/mle \
        --checkpoint runs/experiments/pep8_small/conditional --out probe.json

Prints a Markdown table, one row per checkpoint: mean log p per token of the held-out split's
misaligned and aligned segments in context, their gap, and for conditional models the AUCs of
the control tokens' effect (harness/analysis/probe.py). Any objective; all runs are probed on
the same segments when they share data and tokenizer.
"""

import sys

from harness.cli import probe_main

if __name__ == "__main__":
    sys.exit(probe_main())
