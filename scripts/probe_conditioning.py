"""Did a conditionally trained checkpoint learn its control tokens? Probes its run's held-out split.

    python scripts/probe_conditioning.py --checkpoint runs/experiments/pep8_small/conditional
    python scripts/probe_conditioning.py --checkpoint runs/x/checkpoints/step-00000275 --out probe.json

Prints (and with --out writes) the mean log-likelihood ratio of held-out segments behind
<|misaligned|> vs <|aligned|>, by true label, and AUCs (harness/evaluation/conditioning.py).
"""

import sys

from harness.evaluation.cli import probe_main

if __name__ == "__main__":
    sys.exit(probe_main())
