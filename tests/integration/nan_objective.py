"""A user objective (loaded by class path) that poisons chosen optimizer steps with NaN, to test fault handling."""

import torch

from harness.objectives.base import MLE


class NaNAtSteps(MLE):
    """MLE, except the token coefficients are NaN during the listed (1-based) optimizer steps."""

    def __init__(self, cfg, seed, bad_steps=(), micro_per_step=1):
        super().__init__(cfg, seed)
        self.bad_steps = set(bad_steps)
        self.micro_per_step = micro_per_step
        self.calls = 0

    def coefficients(self, next_scores, values):
        a, b, stats = super().coefficients(next_scores, values)
        step = self.calls // self.micro_per_step + 1
        self.calls += 1
        if step in self.bad_steps:
            a = torch.full_like(a, float("nan"))
        return a, b, stats
