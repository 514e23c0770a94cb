"""From command-line options to a checked plan, then to the models: everything cheap is checked first.

`plan_red_team` reads only small files (the checkpoint's state and config, the prompt file, the
red model's config.json) and builds the scorer, so a bad flag or a missing folder fails before any
model is loaded, naming the flag. `red_team_checkpoint` then loads the target on every rank, the
red LM on rank 0, and runs the loop (harness.red_team.run).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from harness import distributed as dist
from harness.atomic import atomic_write_text
from harness.checkpoints.inference import (
    config_from_checkpoint,
    read_state,
    resolve_checkpoint,
)
from harness.config import Config
from harness.evaluation.api_kl import api_base_url
from harness.evaluation.openai_client import CompletionsClient
from harness.evaluation.prompted import load_prompted_model, rank_device
from harness.evaluation.runner import eval_scorer
from harness.evaluation.scenarios import load_prompts
from harness.red_team.options import RedTeamOptions
from harness.red_team.red_lm import ApiRedLM, RedLM, RedSampling, load_local_red_lm
from harness.red_team.run import (
    POOL_FILE,
    ROUNDS_FILE,
    SETTINGS_FILE,
    RedTeamSettings,
    RedTeamTask,
    run_red_team,
)
from harness.red_team.target import Target, TargetSampling
from harness.red_team.templates import instruction_for
from harness.tasks import Task, resolve_task

T = TypeVar("T")


@dataclass
class RedTeamPlan:
    """A checked red-teaming job: where everything is and every number."""

    root: Path  # checkpoints folder
    tag: str  # step-XXXXXXXX
    cfg: Config  # the checkpoint's run config
    task: Task
    red_team_task: RedTeamTask
    out: Path
    red_model: Path | None
    red_client: CompletionsClient | None
    loop: RedTeamSettings
    target: TargetSampling
    red: RedSampling
    scorer: Any


def _from_options(cls: type[T], options: RedTeamOptions) -> T:
    """A settings dataclass from the options of the same names."""
    return cls(**{f.name: getattr(options, f.name) for f in fields(cls)})  # type: ignore[arg-type]


def plan_red_team(args: RedTeamOptions) -> RedTeamPlan:
    """Check the options (all problems at once) and read what they name; no model is loaded."""
    problems = args.problems()
    try:
        root, tag = resolve_checkpoint(args.checkpoint)
    except FileNotFoundError as err:
        problems.append(str(err))
    if problems:
        raise ValueError("; ".join(problems))
    cfg = config_from_checkpoint(read_state(root, tag))
    task = resolve_task(cfg.data)
    prompts = load_prompts(args.prompts if args.prompts is not None else task.prompt_file())
    client = None
    if args.red_api_model is not None:
        base_url = args.red_api_base_url or api_base_url(cfg)
        client = CompletionsClient.from_env(model=args.red_api_model, base_url=base_url)
    return RedTeamPlan(
        root=root,
        tag=tag,
        cfg=cfg,
        task=task,
        red_team_task=RedTeamTask(
            instruction_for(task.name, args.instruction), task.is_code, prompts
        ),
        out=Path(args.out) if args.out is not None else root.parent / "red_team",
        red_model=Path(args.red_model) if args.red_model is not None else None,
        red_client=client,
        loop=_from_options(RedTeamSettings, args),
        target=_from_options(TargetSampling, args),
        red=RedSampling(
            args.red_temperature,
            args.red_top_p,
            args.red_max_tokens,
            min(args.batch_size, args.candidates),
            args.seed,
        ),
        scorer=eval_scorer(cfg),
    )


def load_target(plan: RedTeamPlan) -> tuple[Target, dict[str, Any]]:
    """The checkpoint's model as the target (prompted as in evaluation), and facts about it."""
    model = load_prompted_model(plan.root, plan.tag, plan.cfg)
    target = Target(
        lm=model.lm,
        tokenizer=model.tokenizer,
        scorer=plan.scorer,
        prefix_ids=model.prefix_ids,
        banned_ids=model.banned_ids,
        score_with_prompt=plan.task.is_code,
        sampling=plan.target,
    )
    facts = {k: model.facts[k] for k in ("checkpoint", "step", "objective", "task", "conditional")}
    return target, {**facts, "run_name": model.facts["run"]}


def load_red_lm(plan: RedTeamPlan) -> RedLM | None:
    """The red LM on rank 0 (None elsewhere: only rank 0 asks it)."""
    if not dist.is_main():
        return None
    if plan.red_client is not None:
        return ApiRedLM(plan.red_client, plan.red)
    return load_local_red_lm(plan.red_model, plan.red, rank_device())  # type: ignore[arg-type]


def red_team_checkpoint(plan: RedTeamPlan) -> Path:
    """Load the models and run every trial; rank 0 writes `plan.out`. Returns the folder."""
    target, facts = load_target(plan)
    red_lm = load_red_lm(plan)
    if dist.is_main():
        client = plan.red_client
        red = str(plan.red_model) if client is None else f"{client.model} at {client.url}"
        for stale in (ROUNDS_FILE, POOL_FILE):  # an earlier job's results must not pass for ours
            (plan.out / stale).unlink(missing_ok=True)
        settings = {
            **facts,
            "red_lm": red,
            "world_size": dist.world_size(),
            "loop": asdict(plan.loop),
            "target_sampling": asdict(plan.target),
            "red_sampling": asdict(plan.red),
            "instruction": plan.red_team_task.instruction,
        }
        atomic_write_text(plan.out / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")
    run_red_team(plan.red_team_task, red_lm, target, plan.loop, plan.out)
    return plan.out
