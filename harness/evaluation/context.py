"""What one evaluation needs: the model, its tokenizer, the held-out split and how ranks agree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from harness.config import Config
from harness.tasks import Task, resolve_task


@dataclass
class EvalContext:
    """What an evaluation needs; built by `evaluate_during_training` or `evaluate_checkpoint`."""

    cfg: Config
    lm: nn.Module  # the causal LM that generates (eval mode)
    tokenizer: Any
    conditional: (
        bool  # prompt with eval.control_token, ban control tokens (Task.banned_token_ids)
    )
    loss_fn: Callable[..., Any] | None = None  # (input_ids=, scores=) -> (loss, stats), eval mode
    heldout: Any = None  # PackedBlocks of the held-out split (heldout_treatment), or None
    sync: bool = False  # ZeRO-3: every rank must run the same forwards
    notes: list[str] = field(default_factory=list)
    # During training an unreachable or failing completions API (eval.api_kl_model) skips
    # eval/kl_api with a note; scripts/evaluate.py fails with the client's message instead.
    skip_unavailable_api: bool = False
    task: Task = field(init=False)
    """The run's task (scorer, thresholds, banned tokens, prompts), resolved once from cfg.data."""

    def __post_init__(self) -> None:
        self.task = resolve_task(self.cfg.data)
