"""Unlikelihood training (Welleck et al. 2019) on misaligned tokens (paper section 3, "Unlikelihood").

Per predicted token with score s (the score of the token being predicted), after `Unlikelihood`
in `apo/objectives.py` of the original code:

    hard threshold:  a = [s <= thr],  b = alpha * [s > thr]
    soft (no thr):   a = 1 - s,       b = alpha * s

The original treats a threshold of 0 as "no threshold" (`if self.score_threshold:`), so its PII
and PEP8 runs used the soft form; here `score_threshold: null` selects it and every number,
0 included, is a hard threshold. The original clamps 1 - p at 1e-20; the fused kernel instead
computes -log(1 - p) exactly as softplus(logit margin), which is finite without a clamp.
Scores are used as given (no clipping to [0, 1]), as in the original.
"""

from __future__ import annotations

import torch

from harness.config import ObjectiveConfig
from harness.objectives.base import Stats, TokenObjective


class Unlikelihood(TokenObjective):
    """Likelihood on aligned tokens, alpha-weighted unlikelihood on misaligned ones."""

    name = "ul"
    color = "#d62728"

    @classmethod
    def describe(cls, cfg: ObjectiveConfig) -> str:
        """Name, score_threshold and alpha."""
        return f"{cfg.name} (score_threshold {cfg.score_threshold} (null: soft form), alpha {cfg.alpha})"

    @classmethod
    def problems(cls, cfg: ObjectiveConfig) -> list[str]:
        """alpha must be >= 0."""
        if cfg.alpha < 0:
            return [f"objective.alpha must be >= 0 for unlikelihood, got {cfg.alpha}"]
        return []

    def __init__(self, cfg: ObjectiveConfig | None = None, seed: int = 0):
        super().__init__(cfg, seed)
        thr = self.cfg.score_threshold
        self.score_threshold = None if thr is None else float(thr)
        self.alpha = float(self.cfg.alpha)

    def coefficients(
        self, next_scores: torch.Tensor, values: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, Stats]:
        """(a, b) of the hard or soft unlikelihood form; logs mean score, unlikely fraction, mean b."""
        s = next_scores.float()
        if self.score_threshold is None:
            a, b = 1.0 - s, self.alpha * s
            unlikely = s > 0
        else:
            unlikely = s > self.score_threshold
            above = unlikely.float()
            a, b = 1.0 - above, self.alpha * above
        stats = {
            "ul_score_mean": s.mean(),
            "ul_frac_unlikely": unlikely.float().mean(),  # tokens with an unlikelihood share
            "ul_b_mean": b.mean(),
        }
        return a, b, stats
