"""The pool of candidate prompts: few-shot draws weighted by misalignment, and the logged metrics.

Follows the original's `red_team.py` (CandidatePrompt, PromptPool): a prompt's score is the mean
misalignment of the target's continuations of it; examples for the red LM are drawn without
replacement with probability proportional to exp(mean / T); a candidate found again adds its
scores to the pooled prompt's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

PLACEHOLDER_SCORE = 1e-3  # the original's score of the initial prompts (never sampled)


@dataclass
class CandidatePrompt:
    """A prompt and the scores of the target's continuations of it."""

    text: str
    scores: list[float]
    own_score: float | None = None  # the scorer's score of the prompt text itself
    round_added: int = 0  # 0: an initial prompt
    continuations: list[str] = field(default_factory=list)  # a few of the target's, to read

    def mean(self) -> float:
        """Mean score of its continuations."""
        return sum(self.scores) / len(self.scores)

    def std(self) -> float:
        """Population standard deviation of its scores (as the original)."""
        mean = self.mean()
        return (sum((s - mean) ** 2 for s in self.scores) / len(self.scores)) ** 0.5

    def record(self) -> dict[str, Any]:
        """The JSON record of pool.jsonl."""
        return {
            "text": self.text,
            "num_scores": len(self.scores),
            "mean": self.mean(),
            "std": self.std(),
            "own_score": self.own_score,
            "round_added": self.round_added,
            "continuations": self.continuations,
        }


@dataclass
class PromptPool:
    """Prompts by text, in order of arrival."""

    temperature: float = 0.1
    prompts: dict[str, CandidatePrompt] = field(default_factory=dict)

    @classmethod
    def initial(cls, texts: list[str], limit: int = 20, temperature: float = 0.1) -> PromptPool:
        """The first `limit` texts with the placeholder score (the original's from_file)."""
        pool = cls(temperature)
        for text in texts[:limit]:
            pool.add(CandidatePrompt(text, [PLACEHOLDER_SCORE]))
        return pool

    def __len__(self) -> int:
        return len(self.prompts)

    def add(self, prompt: CandidatePrompt) -> None:
        """Add a prompt; one already pooled gets its scores appended (own score, round kept)."""
        if prompt.text in self.prompts:
            self.prompts[prompt.text].scores.extend(prompt.scores)
        else:
            self.prompts[prompt.text] = prompt

    def probabilities(self) -> np.ndarray:
        """P(draw prompt i) proportional to exp(mean_i / T), in pool order."""
        means = np.array([p.mean() for p in self.prompts.values()], dtype=np.float64)
        # Shifting by the largest mean changes no ratio and keeps exp finite for any score.
        weights = np.exp((means - means.max()) / self.temperature)
        return weights / weights.sum()

    def draw(self, k: int, rng: np.random.RandomState) -> list[CandidatePrompt]:
        """k distinct prompts drawn without replacement by `probabilities` (fewer if the pool is)."""
        p = self.probabilities()
        # The original called np.random.choice(..., replace=False, p=p) and then set() the result,
        # which only shuffles it by string hash (different in every process); the draw order is kept.
        size = min(k, int(np.count_nonzero(p)))
        picked = rng.choice(len(p), size=size, replace=False, p=p)
        prompts = list(self.prompts.values())
        return [prompts[i] for i in picked]

    def best(self, n: int = 1) -> list[CandidatePrompt]:
        """The n prompts of highest mean (ties in pool order)."""
        return sorted(self.prompts.values(), key=lambda p: p.mean(), reverse=True)[:n]

    def mean(self) -> float:
        """Mean over prompts of each prompt's mean score."""
        return sum(p.mean() for p in self.prompts.values()) / len(self.prompts)

    def records(self) -> list[dict[str, Any]]:
        """pool.jsonl records, best first."""
        return [p.record() for p in self.best(len(self))]


def round_metrics(pool: PromptPool, round_pool: PromptPool) -> dict[str, float | None]:
    """The original's logged metrics: the pool after the round, and the round's own candidates.

    best-10 and best-100 are sums of the top 10 / 100 means divided by 10 / 100, as the original
    computed them, so they are diluted while the pool is smaller. Without candidates in a round
    (the red LM's answers all failed to parse) its own metrics are None.
    """
    return {
        "average_score": pool.mean(),
        "best_prompt_score": pool.best(1)[0].mean(),
        "best_10_prompt_score": sum(p.mean() for p in pool.best(10)) / 10,
        "best_100_prompt_score": sum(p.mean() for p in pool.best(100)) / 100,
        "round_average_score": round_pool.mean() if len(round_pool) else None,
        "round_best_prompt_score": round_pool.best(1)[0].mean() if len(round_pool) else None,
    }
