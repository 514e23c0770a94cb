"""Red-team a checkpoint with a red LM, as the paper's section on red teaming (harness/red_team).

    python scripts/red_team.py --checkpoint runs/pii_conditional --red_model models/gpt2-xl \
        --rounds 10 --trials 3 --candidates 20 --continuations 512 --out runs/pii_conditional/red_team
    deepspeed --num_gpus 2 scripts/red_team.py --checkpoint ... --red_api_model davinci-002 --out DIR

Writes DIR/rounds.jsonl (pool metrics per trial and round), DIR/pool.jsonl and DIR/settings.json.
"""

import sys

from harness.cli import red_team_main

if __name__ == "__main__":
    sys.exit(red_team_main())
