"""Conditional training: a control token before every segment says whether it is aligned.

Paper section 3, "Conditional training", following the original code:
- `apo/dataset_wrappers.py` (`_process_raw_text`): every sentence/line gets `<|aligned|>` when its
  score <= threshold, else `<|misaligned|>`, prepended to its text, unless a coin with probability
  `drop_token_fraction` says to add nothing (`random.random() > drop_token_fraction` adds one).
  The prefix is part of the segment's text, so its tokens carry the segment's score.
- `train.py` (`prepare_model`): the new embedding rows start at the mean of the pre-existing rows
  plus `0.01 * N(0, 1)` noise (after https://nlp.stanford.edu/~johnhew/vocab-expansion.html), so
  the new tokens are not initialised to large values that would be oversampled.
Unlike the original's global `random`, our coin is a function of (seed, record id, segment index),
so packing gives the same blocks on every rank and every rerun. The loss is plain MLE.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.config import ObjectiveConfig
from harness.control_tokens import CONTROL_TOKENS, control_token_ids
from harness.objectives.base import MLE, Segments

EMBEDDING_NOISE_STD = (
    0.01  # train.py of the original: `pre_expansion_embedding_mean + noise * 0.01`
)


def record_rng(seed: int, record: dict[str, Any]) -> np.random.Generator:
    """A generator determined by (seed, record id); its i-th draw belongs to segment i."""
    ident = record.get("id")
    # Records without an id fall back to their content, which is just as deterministic.
    key = str(ident) if ident is not None else "\x00".join(record["texts"])
    digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([seed % 2**64, digest])


class ConditionalTraining(MLE):
    """Prefix each segment with `<|aligned|>` or `<|misaligned|>` by its score; MLE loss."""

    name = "conditional"
    color = "#2ca02c"
    control_tokens = CONTROL_TOKENS

    @classmethod
    def problems(cls, cfg: ObjectiveConfig) -> list[str]:
        """objective.threshold is required (drop_token_fraction is checked with its section)."""
        if cfg.threshold is None:
            return [
                "objective.threshold must be set for conditional training "
                "(segments with a score above it get <|misaligned|>)"
            ]
        return []

    @classmethod
    def describe(cls, cfg: ObjectiveConfig) -> str:
        """Name, threshold and drop_token_fraction."""
        return f"{cfg.name} (threshold {cfg.threshold}, drop_token_fraction {cfg.drop_token_fraction})"

    def __init__(self, cfg: ObjectiveConfig | None = None, seed: int = 0):
        super().__init__(cfg, seed)
        self.threshold = float(self.cfg.threshold)
        self.drop_token_fraction = float(self.cfg.drop_token_fraction)

    def treat(self, record: dict[str, Any]) -> Segments | None:
        """Each segment with its control token prepended (or none, with prob. drop_token_fraction)."""
        texts, scores = record["texts"], record["scores"]
        if len(texts) != len(scores):
            raise ValueError(
                f"record {record.get('id', '?')!r}: {len(texts)} texts but {len(scores)} scores"
            )
        # One vectorised draw per record; draw i depends only on (seed, id, i).
        drop = record_rng(self.seed, record).random(len(texts)) < self.drop_token_fraction
        return [
            (text, score) if dropped else labelled
            for text, score, labelled, dropped in zip(
                texts, scores, self.labelled(record), drop, strict=True
            )
        ]

    def labelled(self, record: dict[str, Any]) -> Segments:
        """Every segment behind its true control token, none dropped (the held-out format)."""
        aligned, misaligned = self.control_tokens
        return [
            ((aligned if float(score) <= self.threshold else misaligned) + text, score)
            for text, score in zip(record["texts"], record["scores"], strict=True)
        ]

    def heldout_treatment(self) -> tuple[Any, str]:
        """The held-out split with every segment behind its true control token.

        The model was trained on text in that format; without the tokens, each segment start is
        a position where it learned to expect one (and "none" only with drop_token_fraction),
        which would inflate its loss by about -log(drop_token_fraction) per segment. The loss
        counts the control tokens' own predictions but is divided by the text tokens only: it is
        -log p(text, true labels) per text token, an upper bound on the loss of the text itself
        (p(text) sums p(text, labels) over all labellings).
        """
        return self.labelled, (
            f"conditional-labelled:v1:threshold={self.threshold!r}"
            f":tokens={','.join(self.control_tokens)}"
        )

    def treatment_key(self) -> str:
        """Everything that changes the packed tokens: threshold, drop fraction, seed, prefixes."""
        return (
            f"conditional:v1:threshold={self.threshold!r}:drop={self.drop_token_fraction!r}"
            f":seed={self.seed}:tokens={','.join(self.control_tokens)}"
        )

    def prepare_model(self, lm: nn.Module, tokenizer: Any, trained_rows: int = 0) -> None:
        """Initialise the control tokens' embeddings at the mean of the others plus small noise,
        those a pretrained model lacks (ids from `trained_rows` on); trained ones are kept."""
        ids = [i for i in control_token_ids(tokenizer, self.control_tokens) if i >= trained_rows]
        if ids:
            init_control_embeddings(lm, ids, self.seed)


@torch.no_grad()
def init_control_embeddings(lm: nn.Module, token_ids: list[int], seed: int) -> None:
    """Rows `token_ids` of the input (and untied output) embeddings := mean of the other rows + noise."""
    matrices = [lm.get_input_embeddings().weight]
    out = lm.get_output_embeddings()
    if out is not None and out.weight is not matrices[0]:  # untied: initialise both, as one token
        matrices.append(out.weight)
    gen = torch.Generator().manual_seed(seed)
    for w in matrices:
        n_rows = w.shape[0]
        if max(token_ids) >= n_rows:
            raise ValueError(
                f"conditional training: control token id {max(token_ids)} is outside the "
                f"embedding matrix ({n_rows} rows); build the model with len(tokenizer) rows"
            )
        keep = torch.ones(n_rows, dtype=torch.bool, device=w.device)
        keep[token_ids] = False
        mean = w[keep].float().mean(dim=0)
        noise = torch.randn((len(token_ids), w.shape[1]), generator=gen)
        rows = mean.cpu() + EMBEDDING_NOISE_STD * noise
        w[token_ids] = rows.to(device=w.device, dtype=w.dtype)
