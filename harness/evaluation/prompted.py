"""A checkpoint's language model, ready to be sampled the way evaluation prompts it.

    model = load_prompted_model(root, tag)     # resolve_checkpoint(path) gives (root, tag)
    generate_batch(model.lm, [model.prefix_ids + prompt], seeds, ..., banned_ids=model.banned_ids)

Every sampler of a trained model (scripts/red_team.py, scripts/humaneval.py) prompts it as
scripts/evaluate.py does: BOS, then `eval.control_token` for a conditionally trained model, with
the task's control tokens banned (`harness.evaluation.scenarios`), on this rank's GPU if any.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.checkpoints.inference import load_checkpoint_model
from harness.config import Config
from harness.control_tokens import control_prefix_ids
from harness.tasks import Task, resolve_task


@dataclass
class PromptedModel:
    """A loaded checkpoint's LM with the tokens every prompt starts with and the banned ones."""

    lm: Any
    tokenizer: Any
    prefix_ids: list[int]
    """BOS, then the control token for a conditionally trained model."""
    banned_ids: list[int]
    task: Task
    facts: dict[str, Any] = field(default_factory=dict)
    """checkpoint, step, run, objective, task, conditional, seed: what outputs record about it."""


def rank_device() -> torch.device:
    """This rank's GPU, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def prompted_model(lm: Any, tokenizer: Any, cfg: Config, conditional: bool) -> PromptedModel:
    """`lm` prompted as the run's evaluation prompts it (its eval section and task)."""
    ev, task = cfg.eval, resolve_task(cfg.data)
    return PromptedModel(
        lm,
        tokenizer,
        control_prefix_ids(tokenizer, conditional, ev.control_token),
        task.banned_token_ids(tokenizer, conditional, ev.banned_control_tokens, ev.control_token),
        task,
    )


def load_prompted_model(root: Path, tag: str, cfg: Config | None = None) -> PromptedModel:
    """The checkpoint `root/tag` (eval mode, on this rank's device), prompted as in evaluation."""
    loaded = load_checkpoint_model(root, tag, cfg)
    conditional = bool(getattr(loaded.model.objective, "control_tokens", ()))
    lm = loaded.model.lm.to(rank_device()).eval()
    model = prompted_model(lm, loaded.tokenizer, loaded.cfg, conditional)
    model.facts = {
        "checkpoint": str(Path(root) / tag),
        "step": loaded.step,
        "run": loaded.cfg.run.name,
        "objective": loaded.cfg.objective.name,
        "task": model.task.name,
        "conditional": conditional,
        "seed": loaded.cfg.run.seed,
    }
    return model
