"""`scripts/red_team.py`: iterative adversarial prompting of a checkpoint (harness/red_team)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.cli.common import cli_parser, entry_point, parse_options

if TYPE_CHECKING:
    from harness.red_team.options import RedTeamOptions

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
    """The red-team command line: one flag per field of RedTeamOptions (jsonargparse; errors reach
    entry_point)."""
    from harness.red_team.options import RedTeamOptions

    p = cli_parser("red_team.py", RED_TEAM_HELP)
    p.add_class_arguments(RedTeamOptions, as_group=False)
    return p


def parse_args(argv: list[str]) -> RedTeamOptions:
    """The options; a bad or missing flag is one ValueError line (plan_red_team checks the values,
    with the checkpoint, all at once)."""
    from harness.red_team.options import RedTeamOptions

    return parse_options(build_parser(), argv, RedTeamOptions, check=False)[1]


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
