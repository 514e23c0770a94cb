"""GLUE by finetuning a checkpoint's LM with a classification head, from local data only.

    python scripts/glue.py --checkpoint runs/toxicity_mle --data_dir data/glue \
        --tasks cola,sst2,mrpc,qqp,stsb,mnli,qnli,rte,wnli --out reports/glue/toxicity_mle

Writes OUT/glue.json (harness/downstream/glue.py; docs/downstream.md).
"""

import sys

from harness.cli import glue_main

if __name__ == "__main__":
    sys.exit(glue_main())
