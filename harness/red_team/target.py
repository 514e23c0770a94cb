"""The target model's continuations of candidate prompts, sharded over ranks, and their scores.

As the original's generate_completions_from_target_lm: each candidate gets `continuations`
samples (512) at temperature 0.7, top-p 0.9, of at most `max_length` tokens in all (64) and at
least `min_length` (10), counting BOS, a conditional model's `<|aligned|>` and the prompt, as
transformers' max_length/min_length did; a prompt of `max_length` tokens or more still gets one
new token (transformers generated one before its length check). The task's scorer scores each
continuation (code: prompt + continuation), and a candidate's score is their mean.

Sample i of candidate c is seeded by (seed, "<key>/<c>", i). The work is cut into global batches
of `batch_size` samples of one candidate (so a batch needs no padding), batch g runs on rank
g mod W and is scored there, and every rank gathers all scores: the scores do not depend on the
world size (on one kind of device).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn
from tqdm import tqdm

from harness import distributed as dist
from harness.evaluation.sampling import (
    decode_samples,
    generate_batch,
    max_positions,
    rank_batches,
    sample_seed,
)
from harness.red_team.options import RedTeamOptions

log = logging.getLogger(__name__)

EXAMPLE_CONTINUATIONS = 3  # continuations kept per candidate for pool.jsonl (the original logged 3)


@dataclass
class TargetSampling:
    """How the target model continues a candidate (defaults: the flags', RedTeamOptions)."""

    continuations: int = RedTeamOptions.continuations
    temperature: float = RedTeamOptions.temperature
    top_p: float = RedTeamOptions.top_p
    max_length: int = RedTeamOptions.max_length
    min_length: int = RedTeamOptions.min_length
    batch_size: int = RedTeamOptions.batch_size
    seed: int = RedTeamOptions.seed


@dataclass
class CandidateResult:
    """The scores of a candidate's continuations (by sample index) and a few of their texts."""

    scores: list[float]
    examples: list[str]


@dataclass
class Target:
    """The model under red-teaming and its task's scorer."""

    lm: nn.Module
    tokenizer: Any
    scorer: Any  # score_texts(list[str]) -> list[float]
    prefix_ids: list[int]  # BOS (+ <|aligned|>): harness.control_tokens.control_prefix_ids
    banned_ids: list[int]  # never sampled: Task.banned_token_ids
    score_with_prompt: bool  # code tasks score prompt + continuation
    sampling: TargetSampling

    def prompt_ids(self, text: str) -> list[int]:
        """Prefix + the prompt's tokens, the prompt cut on the left to leave one position free."""
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        limit = max_positions(self.lm)
        if limit is not None and len(self.prefix_ids) + len(ids) >= limit:
            keep = max(0, limit - 1 - len(self.prefix_ids))
            log.warning("a candidate of %d tokens is cut to its last %d", len(ids), keep)
            ids = ids[len(ids) - keep :] if keep else []
        return self.prefix_ids + ids

    def token_budget(self, prompt_len: int) -> tuple[int, int]:
        """(max_new_tokens, min_new_tokens) for a prompt of `prompt_len` tokens."""
        s = self.sampling
        return max(1, s.max_length - prompt_len), max(0, s.min_length - prompt_len)

    def global_batches(self, num_candidates: int) -> list[tuple[int, range]]:
        """(candidate, sample indices) of every global batch, in a fixed order."""
        n, size = self.sampling.continuations, self.sampling.batch_size
        return [
            (c, range(start, min(n, start + size)))
            for c in range(num_candidates)
            for start in range(0, n, size)
        ]

    def _run_batch(self, text: str, ids: list[int], key: str, indices: range) -> list[Any]:
        """Sample and score one batch: (sample index, score, text) per sample."""
        s = self.sampling
        max_new, min_new = self.token_budget(len(ids))
        generated = generate_batch(
            self.lm,
            [ids] * len(indices),
            [sample_seed(s.seed, key, i) for i in indices],
            max_new,
            s.temperature,
            s.top_p,
            self.tokenizer.eos_token_id,
            self.banned_ids,
            min_new_tokens=min_new,
        )
        texts = decode_samples(self.tokenizer, generated)
        scored = [text + t for t in texts] if self.score_with_prompt else texts
        scores = self.scorer.score_texts(scored)
        return [
            (i, float(score), t if i < EXAMPLE_CONTINUATIONS else None)
            for i, score, t in zip(indices, scores, texts, strict=True)
        ]

    def score_candidates(self, texts: list[str], key: str) -> list[CandidateResult]:
        """Every candidate's scores on every rank (all ranks call it with the same texts)."""
        batches = self.global_batches(len(texts))
        mine = rank_batches(len(batches), 1, dist.rank(), dist.world_size(), sync=False)
        ids = [self.prompt_ids(t) for t in texts]
        local: list[tuple[int, list[Any]]] = []
        for one in tqdm(mine, desc=key, disable=not dist.is_main(), leave=False):
            c, indices = batches[one[0]]  # type: ignore[index]
            local.append((c, self._run_batch(texts[c], ids[c], f"{key}/{c}", indices)))
        by_candidate: list[dict[int, tuple[float, str | None]]] = [{} for _ in texts]
        for part in dist.all_gather_object(local):
            for c, samples in part:
                by_candidate[c].update({i: (score, text) for i, score, text in samples})
        return [_result(samples) for samples in by_candidate]

    def own_scores(self, texts: list[str]) -> list[float]:
        """The scorer's score of each prompt text itself (the original's own_score)."""
        return [float(s) for s in self.scorer.score_texts(list(texts))] if texts else []


def _result(samples: dict[int, tuple[float, str | None]]) -> CandidateResult:
    """Scores in sample order, and the kept texts."""
    order = sorted(samples)
    return CandidateResult(
        [samples[i][0] for i in order],
        [text for i in order if (text := samples[i][1]) is not None],
    )
