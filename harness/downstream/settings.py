"""The settings of the downstream commands: one dataclass each, a field per flag.

`scripts/humaneval.py` and `scripts/glue.py` add these fields as their flags (jsonargparse, the
docstrings as help) and hand the dataclass to `harness.downstream.humaneval` / `glue`. Nothing
here imports torch, so `--help` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from harness.downstream.sandbox import Limits


@dataclass
class HumanEvalSettings:
    """What to sample and how to check it: each field is the flag of scripts/humaneval.py of the
    same name (jsonargparse reads the docstrings as help)."""

    samples_per_problem: int = 200
    """Completions sampled per problem."""
    k: str = "1,10,100"
    """pass@k for these k (those <= samples)."""
    limit: int | None = None
    """Only the first P problems."""
    temperature: float = 0.8
    """Sampling temperature."""
    top_p: float = 0.95
    """Nucleus sampling mass."""
    max_new_tokens: int = 256
    """Tokens per completion."""
    min_new_tokens: int = 0
    """EOS banned until then."""
    batch_size: int = 50
    """Samples per forward, per rank."""
    seed: int | None = None
    """Default: the run's seed (run.seed of the checkpoint's config)."""
    timeout_s: float = 3.0
    """Wall clock per program."""
    memory_mb: int = 1024
    """Address space per program."""
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    """Programs checked at once, per rank."""

    @property
    def ks(self) -> list[int]:
        """`k` as sorted integers (`1,10,100` -> [1, 10, 100]); ValueError naming --k if it is not."""
        try:
            return sorted({int(part) for part in str(self.k).split(",") if part.strip()})
        except ValueError:
            raise ValueError(f"--k: expected comma-separated integers, got {self.k!r}") from None

    @property
    def limits(self) -> Limits:
        """What one generated program may use."""
        return Limits(timeout_s=self.timeout_s, memory_mb=self.memory_mb)

    def problems(self) -> list[str]:
        """What is wrong with the settings, one line each."""
        out = []
        if self.samples_per_problem < 1:
            out.append("--samples_per_problem must be at least 1")
        try:
            if not self.ks or min(self.ks) < 1:
                out.append(f"--k must list positive integers, got {self.k!r}")
        except ValueError as err:
            out.append(str(err))
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            out.append("--temperature must be > 0 and --top_p in (0, 1]")
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.workers < 1:
            out.append("--max_new_tokens, --batch_size and --workers must be at least 1")
        if self.limit is not None and self.limit < 1:
            out.append("--limit must be at least 1")
        if self.limits.timeout_s <= 0 or self.limits.memory_mb < 64:
            out.append("--timeout_s must be > 0 and --memory_mb at least 64")
        return out


@dataclass
class GlueSettings:
    """Finetuning settings: each field is the flag of scripts/glue.py of the same name."""

    tasks: str = "cola,sst2,mrpc,qqp,stsb,mnli,qnli,rte,wnli"
    """Comma-separated GLUE tasks."""
    epochs: int = 3
    """Finetuning epochs per task."""
    lr: float = 2e-5
    """Finetuning learning rate."""
    batch_size: int = 32
    """Examples per step."""
    max_length: int = 128
    """Tokens per example."""
    seed: int | None = None
    """Default: the run's seed (run.seed of the checkpoint's config)."""
    limit_train: int | None = None
    """First N train examples."""
    limit_eval: int | None = None
    """First N validation examples."""
    warmup_ratio: float = 0.06
    """Share of the steps with a linear learning-rate warmup."""
    weight_decay: float = 0.01
    """AdamW weight decay (not on biases and norms)."""

    def problems(self) -> list[str]:
        """What is wrong with the settings, one line each (unknown task names: `parse_tasks`)."""
        out = []
        if self.epochs < 1 or self.batch_size < 1:
            out.append("--epochs and --batch_size must be at least 1")
        if self.lr <= 0:
            out.append("--lr must be positive")
        if self.max_length < 8:
            out.append("--max_length must be at least 8")
        for name in ("limit_train", "limit_eval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                out.append(f"--{name} must be at least 1")
        return out
