"""Export a checkpoint as a Hugging Face folder that plain transformers loads.

python scripts/export.py --checkpoint runs/pep8_mle            # -> runs/pep8_mle/hf/
python scripts/export.py --checkpoint runs/pep8_mle/checkpoints/step-00005000 --out exports/x
"""

import sys

from harness.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main())
