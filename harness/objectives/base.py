"""The shared token loss: every objective is a choice of per-token coefficients (a_t, b_t).

    loss_t = a_t * (-log p_t) + b_t * (-log(1 - p_t))        (docs/design.md, "One token loss")

Labels and scores are shifted together: the score of token t+1 weights the prediction made at t
(as `apo/trainer.py` and `apo/objectives.py` of the original code do with `token_scores[..., 1:]`).
The loss is the plain mean over predicted tokens, B * (T - 1) per micro batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.config import ObjectiveConfig
from phf_kernels import fused_linear_token_loss

Segments = list[tuple[str, float]]
Stats = dict[str, torch.Tensor]


def plain_segments(record: dict[str, Any]) -> Segments:
    """The record's own (segment, score) pairs, unchanged."""
    return list(zip(record["texts"], record["scores"], strict=True))


class TokenObjective:
    """Base objective: subclasses choose coefficients and optionally a data treatment.

    Hooks the engine calls, in order: `treat` (data, per scored record, while packing),
    `prepare_model` (after the LM is built), `build_value_head`, then `loss` every micro batch,
    which calls `coefficients` and `extra_loss`. Their stats (scalar tensors) are averaged over
    micro batches and ranks by the engine and written to metrics.jsonl.
    """

    name = "base"
    color = "#17becf"  # plot colour, fixed per objective so every report reads the same
    control_tokens: tuple[str, ...] = ()

    def __init__(self, cfg: ObjectiveConfig | None = None, seed: int = 0):
        self.cfg = cfg or ObjectiveConfig(name=self.name)
        self.seed = seed
        problems = type(self).problems(self.cfg)
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def problems(cls, cfg: ObjectiveConfig) -> list[str]:
        """Problems of the `objective` keys this objective reads, each naming its key (config checks call it too)."""
        return []

    @classmethod
    def describe(cls, cfg: ObjectiveConfig) -> str:
        """The objective and the hyperparameters it reads, for the model card."""
        return cfg.name

    def treat(self, record: dict[str, Any]) -> Segments | None:
        """Data treatment of one scored record: its (segment, score) pairs, or None to drop it."""
        return plain_segments(record)

    def treatment_key(self) -> str:
        """Identifies the treatment (and its parameters) in the packed-data cache key."""
        return "plain"

    def heldout_treatment(self) -> tuple[Any, str]:
        """(treatment, cache key) of the held-out split for eval/lm_loss: untreated by default.

        Nothing is filtered or reweighted, so the loss is comparable across objectives; an
        objective that changes the text format (control tokens) returns its format here.
        """
        return plain_segments, "plain"

    def prepare_model(self, lm: nn.Module, tokenizer: Any, trained_rows: int = 0) -> None:
        """Adjust the freshly built LM (e.g. initialise control-token embeddings); no-op by default.

        `trained_rows`: embedding rows a pretrained `model.path` came with (0 from scratch), which
        must be left as they are.
        """

    def build_value_head(self, hidden_size: int) -> nn.Module | None:
        """A value head for advantage-weighted objectives; None by default."""
        return None

    def coefficients(
        self, next_scores: torch.Tensor, values: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, Stats]:
        """Per predicted token: (a, b, stats) from the fp32 scores of the predicted tokens."""
        raise NotImplementedError

    def extra_loss(
        self, values: torch.Tensor | None, next_scores: torch.Tensor
    ) -> tuple[torch.Tensor | None, Stats]:
        """A loss added to the token loss (AWR's value loss); none by default."""
        return None, {}

    def loss(
        self,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        input_ids: torch.Tensor,
        scores: torch.Tensor,
        value_head: nn.Module | None = None,
    ) -> tuple[torch.Tensor, Stats]:
        """Mean over predicted tokens of the token loss, plus any extra loss; with stats to log."""
        h = hidden[:, :-1]  # position t predicts token t+1 ...
        labels = input_ids[:, 1:].reshape(-1)
        next_scores = scores[:, 1:].reshape(-1).float()  # ... whose score weights that prediction
        values = value_head(h).reshape(-1) if value_head is not None else None
        a, b, stats = self.coefficients(next_scores, values)
        n_tokens = labels.numel()
        token_loss = (
            fused_linear_token_loss(
                h.reshape(-1, h.shape[-1]), weight, labels, a.detach(), b.detach(), reduction="sum"
            )
            / n_tokens
        )
        stats = {"token_loss": token_loss.detach(), **stats}
        extra, extra_stats = self.extra_loss(values, next_scores)
        stats.update(extra_stats)
        total = token_loss if extra is None else token_loss + extra
        return total, stats

    def lm_loss(
        self, hidden: torch.Tensor, weight: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        """Plain mean cross-entropy of next-token prediction (held-out loss, comparable across objectives)."""
        h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        labels = input_ids[:, 1:].reshape(-1)
        ones = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
        return (
            fused_linear_token_loss(
                h, weight, labels, ones, torch.zeros_like(ones), reduction="sum"
            )
            / labels.numel()
        )


class MLE(TokenObjective):
    """Plain maximum likelihood: a = 1, b = 0."""

    name = "mle"
    color = "#7f7f7f"

    def coefficients(
        self, next_scores: torch.Tensor, values: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, Stats]:
        """a = 1, b = 0 for every token; nothing to log."""
        return torch.ones_like(next_scores), torch.zeros_like(next_scores), {}
