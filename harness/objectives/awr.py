"""Advantage- and reward-weighted regression (AWR, Peng et al. 2019; RWR, Peters & Schaal 2007).

Paper section 3 and `AWR` in `apo/objectives.py` of the original code, per predicted token t:

    r_t = -score_{t+1}                   reward of the token being predicted
    V_t = -sigmoid(w . h_t)              value head on the LM's hidden state at t (`apo/models.py`)
    A_t = r_t - stopgrad(V_t)            advantage
    w_t = clamp(exp(A_t / beta), 0, clip_weight_max)                     (detached)
    loss = alpha * mean_t(w_t * CE_t) + (1 - alpha) * mean_t((V_t - r_t)^2)

The value of position t predicts the score of token t+1 (the original's `values[..., :-1]` vs
`token_scores[..., 1:]`); both means run over all predicted tokens. The value head is a linear
layer without bias, initialised to zero (so V starts at -0.5), as `ValueHead` in `apo/models.py`.
RWR is the original's AWR config with alpha = 1: the value loss has weight 0, the zero-initialised
head never moves, so V = -0.5 always and w = clamp(exp((r + 0.5) / beta)); we use that constant
instead of a head that would never train.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from harness.config import ObjectiveConfig
from harness.objectives.base import Stats, TokenObjective

RWR_VALUE = -0.5  # -sigmoid(0): the output of the zero-initialised value head


class ValueHead(nn.Module):
    """V(h) = -sigmoid(w . h), w zero-initialised; computed in fp32 whatever the training dtype."""

    def __init__(self, hidden_size: int, detached: bool = False):
        super().__init__()
        # A direct parameter (not an nn.Linear child) so that ZeRO-3 gathers it in *this* forward.
        self.weight = nn.Parameter(torch.zeros(1, hidden_size))
        self.detached = detached

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values [...] (fp32, or fp64 for fp64 input) for hidden states [..., H]."""
        if self.detached:  # the value loss then trains the head only, not the backbone
            hidden = hidden.detach()
        # DeepSpeed casts this module to bf16/fp16 in mixed-precision runs: upcast for the dot
        # product and the sigmoid, so values of order 1e-4 (toxicity scores) are resolved.
        dtype = torch.promote_types(hidden.dtype, torch.float32)  # fp64 stays fp64 (tests)
        logit = F.linear(hidden.to(dtype), self.weight.to(dtype)).squeeze(-1)
        return -torch.sigmoid(logit)


class AWR(TokenObjective):
    """Token weights exp(advantage / beta) from a learned value head; value head trained by MSE."""

    name = "awr"
    color = "#9467bd"

    @classmethod
    def problems(cls, cfg: ObjectiveConfig) -> list[str]:
        """alpha in [0, 1] (beta and clip_weight_max are checked with their section)."""
        if not 0.0 <= cfg.alpha <= 1.0:
            return [f"objective.alpha must be in [0, 1] for awr, got {cfg.alpha}"]
        return []

    @classmethod
    def describe(cls, cfg: ObjectiveConfig) -> str:
        """Name, alpha, beta and clip_weight_max."""
        return (
            f"{cfg.name} (alpha {cfg.alpha}, beta {cfg.beta}, clip_weight_max {cfg.clip_weight_max})"
        )

    def __init__(self, cfg: ObjectiveConfig | None = None, seed: int = 0):
        super().__init__(cfg, seed)
        c = self.cfg
        if c.beta <= 0 or c.clip_weight_max <= 0:  # the section's own check, for direct use
            raise ValueError(
                f"objective.beta and objective.clip_weight_max must be > 0, got {c.beta}, "
                f"{c.clip_weight_max}"
            )
        self.alpha, self.beta = float(c.alpha), float(c.beta)
        self.clip_weight_max = float(c.clip_weight_max)

    def build_value_head(self, hidden_size: int) -> nn.Module | None:
        """The zero-initialised value head (detached input when objective.value_head_detached)."""
        return ValueHead(hidden_size, detached=self.cfg.value_head_detached)

    def weights(
        self, next_scores: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, Stats]:
        """Detached token weights clamp(exp((r - V) / beta), 0, clip) and their stats."""
        reward = -next_scores.float()
        advantage = reward - values.detach()  # values are fp32 (fp64 in tests), never bf16
        raw = torch.exp(advantage / self.beta)  # may overflow to inf: the clamp catches it
        w = raw.clamp(min=0.0, max=self.clip_weight_max)
        p = self.name
        stats = {
            f"{p}_weight_mean": w.mean(),
            f"{p}_weight_max": w.max(),  # averaged over micro batches and ranks by the engine
            f"{p}_frac_clipped": (raw > self.clip_weight_max).float().mean(),
            f"{p}_advantage_mean": advantage.mean(),
        }
        return w, stats

    def coefficients(
        self, next_scores: torch.Tensor, values: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, Stats]:
        """a = alpha * w, b = 0."""
        if values is None:
            raise ValueError(
                f"objective {self.name}: no values; pass objective.build_value_head(hidden_size) "
                "as LossModel's value head"
            )
        w, stats = self.weights(next_scores, values)
        stats[f"{self.name}_value_mean"] = values.detach().mean()
        return self.alpha * w, torch.zeros_like(w), stats

    def extra_loss(
        self, values: torch.Tensor | None, next_scores: torch.Tensor
    ) -> tuple[torch.Tensor | None, Stats]:
        """(1 - alpha) * MSE(V, r) in fp32 (kept, times 0, when alpha = 1 so the head has a gradient)."""
        if values is None:
            return None, {}
        value_loss = F.mse_loss(values, -next_scores.to(values.dtype))  # both fp32 (ValueHead)
        return (1.0 - self.alpha) * value_loss, {f"{self.name}_value_loss": value_loss.detach()}


class RWR(AWR):
    """AWR with alpha = 1 and the untrained value head's constant V = -0.5: w = exp((r + 0.5) / beta)."""

    name = "rwr"
    color = "#ff7f0e"

    @classmethod
    def problems(cls, cfg: ObjectiveConfig) -> list[str]:
        """alpha must be 1 (RWR is AWR with alpha 1)."""
        if cfg.alpha != 1.0:
            return [f"objective.alpha must be 1 for rwr (AWR with alpha 1), got {cfg.alpha}"]
        return []

    @classmethod
    def describe(cls, cfg: ObjectiveConfig) -> str:
        """Name, beta and clip_weight_max."""
        return f"{cfg.name} (beta {cfg.beta}, clip_weight_max {cfg.clip_weight_max})"

    def build_value_head(self, hidden_size: int) -> nn.Module | None:
        """None: the value head would stay at its initial -0.5, so a constant replaces it."""
        return None

    def coefficients(
        self, next_scores: torch.Tensor, values: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, Stats]:
        """a = clamp(exp((r + 0.5) / beta), 0, clip), b = 0."""
        if values is None:
            values = torch.full_like(next_scores, RWR_VALUE, dtype=torch.float32)
        w, stats = self.weights(next_scores, values)
        return w, torch.zeros_like(w), stats

    def extra_loss(
        self, values: torch.Tensor | None, next_scores: torch.Tensor
    ) -> tuple[torch.Tensor | None, Stats]:
        """No value loss (its weight 1 - alpha is 0)."""
        return None, {}
