"""The red LM: a local causal LM folder or an OpenAI-compatible completions API.

Either writes `n` answers to one prompt (the original asked text-davinci-002 for n=20 answers at
temperature 1, top-p 1, max_tokens 1024). A local model samples with the evaluation's seeded
nucleus sampler (`harness.evaluation.sampling`), so a rerun writes the same answers; an API
cannot be seeded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.evaluation.openai_client import CompletionsClient, OpenAIError
from harness.evaluation.sampling import decode_samples, generate_batch, max_positions, sample_seed
from harness.red_team.options import RedTeamOptions

log = logging.getLogger(__name__)


class RedLM(Protocol):
    """Anything that writes `n` answers to a prompt."""

    def complete(self, prompt: str, n: int, key: str) -> list[str]:
        """`n` answers to `prompt`; `key` names the request (seeds a local model's samples)."""
        ...


@dataclass
class RedSampling:
    """How the red LM samples (the original: temperature 1, top-p 1, 1024 tokens)."""

    temperature: float = RedTeamOptions.red_temperature
    top_p: float = RedTeamOptions.red_top_p
    max_tokens: int = RedTeamOptions.red_max_tokens
    batch_size: int = 20  # answers per forward (local model)
    seed: int = 0


@dataclass
class LocalRedLM:
    """A causal LM of a local folder (transformers), sampled with per-answer seeds."""

    lm: nn.Module
    tokenizer: Any
    sampling: RedSampling

    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt's tokens; cut on the left, to no less than half the context, when the
        prompt and `max_tokens` new tokens do not fit (the sampler caps new tokens at the rest)."""
        ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        limit = max_positions(self.lm)
        if limit is None or len(ids) + self.sampling.max_tokens <= limit:
            return ids
        keep = max(limit - self.sampling.max_tokens, limit // 2)
        if len(ids) > keep:
            log.warning(
                "red LM prompt of %d tokens cut on the left to %d (context %d)",
                len(ids),
                keep,
                limit,
            )
            ids = ids[len(ids) - keep :]
        return ids

    def complete(self, prompt: str, n: int, key: str) -> list[str]:
        """`n` sampled answers; answer i is seeded by (seed, key, i), whatever the batch size."""
        s = self.sampling
        ids = self.prompt_ids(prompt)
        answers: list[str] = []
        for start in range(0, n, s.batch_size):
            indices = range(start, min(n, start + s.batch_size))
            generated = generate_batch(
                self.lm,
                [ids] * len(indices),
                [sample_seed(s.seed, key, i) for i in indices],
                s.max_tokens,
                s.temperature,
                s.top_p,
                self.tokenizer.eos_token_id,
            )
            answers += decode_samples(self.tokenizer, generated)
        return answers


def load_local_red_lm(path: str | Path, sampling: RedSampling, device: Any = "cpu") -> LocalRedLM:
    """A red LM from a transformers folder (model and tokenizer), offline, in eval mode."""

    lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"--red_model {path}: the tokenizer has no EOS token to stop answers at")
    return LocalRedLM(lm, tokenizer, sampling)


@dataclass
class ApiRedLM:
    """A model behind `POST <base_url>/completions` (harness.evaluation.openai_client)."""

    client: CompletionsClient
    sampling: RedSampling

    def complete(self, prompt: str, n: int, key: str) -> list[str]:
        """`n` answers in one request, as the original's openai.Completion.create(n=...)."""
        s = self.sampling
        answer = self.client.post(
            {
                "model": self.client.model,
                "prompt": prompt,
                "n": n,
                "max_tokens": s.max_tokens,
                "temperature": s.temperature,
                "top_p": s.top_p,
            }
        )
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise OpenAIError(f"{self.client.url}: expected {n} choices, got {len(choices)}")
        return [str(c.get("text", "")) for c in choices]
