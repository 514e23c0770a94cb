"""The shared token loss: every objective is a choice of per-token coefficients (a_t, b_t).

    loss_t = a_t * (-log p_t) + b_t * (-log(1 - p_t))        (DESIGN.md, "One token loss")

Labels and scores are shifted together: the score of token t+1 weights the prediction made at t.
"""

from __future__ import annotations

import torch

from kernels import fused_linear_token_loss


class TokenObjective:
    """Base objective: subclasses choose coefficients (and optionally a data treatment)."""

    name = "base"
    needs_value_head = False
    control_tokens: tuple[str, ...] = ()

    def coefficients(
        self, next_scores: torch.Tensor, values: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Per predicted token: (a, b, stats) from the scores of the predicted tokens."""
        raise NotImplementedError

    def extra_loss(
        self, values: torch.Tensor | None, next_scores: torch.Tensor
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """A loss added to the token loss (AWR's value loss); none by default."""
        return None, {}

    def loss(
        self,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        input_ids: torch.Tensor,
        scores: torch.Tensor,
        values: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean over predicted tokens of the token loss, plus any extra loss; with stats to log."""
        h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        labels = input_ids[:, 1:].reshape(-1)
        next_scores = scores[:, 1:].reshape(-1).float()
        vals = values[:, :-1].reshape(-1) if values is not None else None
        a, b, stats = self.coefficients(next_scores, vals)
        n_tokens = labels.numel()
        token_loss = fused_linear_token_loss(h, weight, labels, a.detach(), b.detach(), reduction="sum") / n_tokens
        stats = {"token_loss": token_loss.detach(), **stats}
        extra, extra_stats = self.extra_loss(vals, next_scores)
        stats.update(extra_stats)
        total = token_loss if extra is None else token_loss + extra
        return total, stats


class MLE(TokenObjective):
    """Plain maximum likelihood: a = 1, b = 0."""

    name = "mle"

    def coefficients(self, next_scores, values):
        ones = torch.ones_like(next_scores)
        return ones, torch.zeros_like(next_scores), {}
