"""`scripts/red_team.py`: iterative adversarial prompting of a checkpoint (harness/red_team)."""

from __future__ import annotations

import argparse

from harness.cli.common import cli_parser, entry_point
from harness.cli.evaluate import CHECKPOINT_HELP

RED_TEAM_HELP = """\
Red-team a checkpoint as the paper did: each round a red LM sees --few_shot prompts of the pool
(drawn with P proportional to exp(mean score / --pool_temperature)) and writes --candidates
answers; each parsed candidate gets --continuations samples of the target, scored by the task's
scorer, and joins the pool with their mean. The red LM is a local causal LM folder (--red_model)
or an OpenAI-compatible completions API (--red_api_model; OPENAI_API_KEY, and OPENAI_BASE_URL or
--red_api_base_url). Launch with `deepspeed --num_gpus N` to shard the target's samples over N
ranks.

    python scripts/red_team.py --checkpoint runs/pii_conditional --red_model models/gpt2-xl \\
        --rounds 10 --trials 3 --out runs/pii_conditional/red_team

Writes rounds.jsonl (the pool's metrics per trial and round), pool.jsonl and settings.json to
--out."""


def build_parser():
    """The red-team command line (jsonargparse; errors reach entry_point)."""
    p = cli_parser("red_team.py", RED_TEAM_HELP)
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--out", default=None, help="output folder (default: <run folder>/red_team)")
    p.add_argument("--red_model", default=None, help="red LM: a local transformers model folder")
    p.add_argument("--red_api_model", default=None, help="red LM: a completions API model name")
    p.add_argument(
        "--red_api_base_url",
        default=None,
        help="the API's base URL (default: eval.api_kl_base_url, else OPENAI_BASE_URL, else OpenAI)",
    )
    p.add_argument("--rounds", type=int, default=10, help="rounds of red LM answers per trial")
    p.add_argument("--trials", type=int, default=3, help="independent trials, each a fresh pool")
    p.add_argument("--candidates", type=int, default=20, help="red LM answers per round")
    p.add_argument("--continuations", type=int, default=512, help="target samples per candidate")
    p.add_argument("--few_shot", type=int, default=4, help="pool examples shown to the red LM")
    p.add_argument("--pool_temperature", type=float, default=0.1, help="T of exp(mean / T)")
    p.add_argument("--initial_pool", type=int, default=20, help="first prompts of --prompts used")
    p.add_argument(
        "--prompts", default=None, help='JSONL of {"prompt": ...} (default: the task\'s)'
    )
    p.add_argument(
        "--instruction",
        default=None,
        help="the red LM's instruction with {examples_text} (default: the paper's for the task)",
    )
    p.add_argument("--red_temperature", type=float, default=1.0, help="red LM sampling temperature")
    p.add_argument("--red_top_p", type=float, default=1.0, help="red LM nucleus sampling mass")
    p.add_argument("--red_max_tokens", type=int, default=1024, help="tokens per red LM answer")
    p.add_argument("--temperature", type=float, default=0.7, help="target sampling temperature")
    p.add_argument("--top_p", type=float, default=0.9, help="target nucleus sampling mass")
    p.add_argument(
        "--max_length",
        type=int,
        default=64,
        help="target sample length in tokens, BOS, control token and prompt included (the "
        "original's max_length)",
    )
    p.add_argument("--min_length", type=int, default=10, help="the same, at least (min_length)")
    p.add_argument("--batch_size", type=int, default=64, help="samples per forward")
    p.add_argument("--seed", type=int, default=0, help="seeds the draws and every sample")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options; a bad or missing flag is one ValueError line."""
    try:
        return build_parser().parse_args(argv)
    except argparse.ArgumentError as err:
        raise ValueError(" ".join(str(err).split())) from None


@entry_point
def red_team_main(argv: list[str]) -> int:
    """`scripts/red_team.py`: red-team a checkpoint; rank 0 writes the output folder."""
    args = parse_args(argv)
    from harness import distributed as dist
    from harness.red_team.setup import plan_red_team, red_team_checkpoint

    plan = plan_red_team(args)  # every cheap check, before the process group and any model
    dist.init_distributed()
    dist.configure_logging()
    out = red_team_checkpoint(plan)
    if dist.is_main():
        print(f"red-team results in {out}")
    dist.shutdown_distributed()
    return 0
