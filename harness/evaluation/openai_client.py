"""Log-probabilities of texts under an OpenAI-compatible completions API: the paper's KL from GPT-3.

The original code (`apo/kl_gpt3.py`, `KLGPT3Callback`) estimated KL(API model || LM) on samples
drawn from the API model (davinci for prose, code-cushman-001 for code):

    texts, logp_api = sample_completions(4096, max_tokens=64)   # the API model's own samples
    logp_lm = ...                                               # the LM's total log-prob of each text
    kl = forward_kl(logp_api, logp_lm)                          # mean(logp_api - logp_lm), nats

Both calls use the legacy completions endpoint (`POST <base>/completions`) with `echo=True`,
which returns the log-probability of every token of the prompt; `completion_logprobs` sends
`max_tokens=0` so nothing is generated. The first token has no log-probability (nothing precedes
it) and is skipped, as the original did (`token_logprobs[1:]`). The request asks for
`logprobs=1` and `temperature=1`, as the original's did.

Configuration: `OPENAI_API_KEY` (required), `OPENAI_BASE_URL` (default https://api.openai.com/v1;
any OpenAI-compatible server, e.g. vLLM's, works), `OPENAI_MODEL` (or the `model` argument).
Standard library only (urllib), no `openai` package. The evaluation uses it for eval/kl_api when
`eval.api_kl_model` is set (harness/evaluation/api_kl.py; the original's `kl_gpt3_callback`).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ENV_KEY, ENV_URL, ENV_MODEL = "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
ENDOFTEXT = "<|endoftext|>"  # the API's default prompt, from which the original sampled
_RETRY_STATUS = (429, 500, 502, 503, 504)


class OpenAIError(RuntimeError):
    """The completions API could not be reached, or answered with an error."""


@dataclass
class CompletionsClient:
    """A minimal client of `POST <base_url>/completions`."""

    model: str
    base_url: str = DEFAULT_BASE_URL
    api_key: str = ""
    timeout_s: float = 60.0
    max_retries: int = 3
    retry_wait_s: float = 30.0  # the original slept 30 s after a rate-limit error

    @classmethod
    def from_env(
        cls,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        **kw: Any,
    ) -> CompletionsClient:
        """Arguments win over OPENAI_MODEL, OPENAI_BASE_URL and OPENAI_API_KEY."""
        api_key = api_key or os.environ.get(ENV_KEY)
        if not api_key:
            raise OpenAIError(
                f"set the {ENV_KEY} environment variable (the key of the completions API)"
            )
        model = model or os.environ.get(ENV_MODEL)
        if not model:
            raise OpenAIError(
                f"no API model: pass model=... or set {ENV_MODEL} (the paper: davinci, code-cushman-001)"
            )
        base_url = base_url or os.environ.get(ENV_URL) or DEFAULT_BASE_URL
        return cls(model=model, base_url=base_url.rstrip("/"), api_key=api_key, **kw)

    @property
    def url(self) -> str:
        """The completions endpoint."""
        return f"{self.base_url}/completions"

    def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one request; retry on rate limits and server errors; OpenAIError says what failed."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
            method="POST",
        )
        for attempt in range(self.max_retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    body = response.read()
                break
            except urllib.error.HTTPError as err:
                detail = err.read()[:300].decode(errors="replace")
                if err.code in _RETRY_STATUS and attempt < self.max_retries:
                    time.sleep(self.retry_wait_s)
                    continue
                raise OpenAIError(f"{self.url}: HTTP {err.code} {err.reason}: {detail}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                reason = getattr(err, "reason", err)
                raise OpenAIError(
                    f"cannot reach the completions API at {self.url} ({reason}); set {ENV_URL} to an "
                    f"OpenAI-compatible server (default {DEFAULT_BASE_URL}), {ENV_KEY} to its key and "
                    f"{ENV_MODEL} to the model"
                ) from None
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise OpenAIError(f"{self.url}: the answer is not JSON: {body[:200]!r}") from None

    def _choices(self, answer: dict[str, Any], expected: int) -> list[dict[str, Any]]:
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != expected:
            raise OpenAIError(f"{self.url}: expected {expected} choices, got {len(choices)}")
        return choices

    def _total_logprob(self, choice: dict[str, Any]) -> float:
        try:
            token_logprobs = choice["logprobs"]["token_logprobs"]
            return float(sum(token_logprobs[1:]))  # the first token has none: nothing precedes it
        except (KeyError, TypeError) as err:
            raise OpenAIError(
                f"{self.url}: no usable logprobs.token_logprobs in the answer ({err!r}); does the "
                "server support echo=True with logprobs?"
            ) from None

    def logprobs(self, texts: Sequence[str], batch_size: int = 8) -> list[float]:
        """Total log-probability (nats) of each text under the API model, first token excluded."""
        if any(not t for t in texts):
            raise ValueError("completion_logprobs: every text must be non-empty")
        out: list[float] = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            answer = self.post(
                {
                    "model": self.model,
                    "prompt": batch,
                    "max_tokens": 0,
                    "temperature": 1,
                    "logprobs": 1,
                    "echo": True,
                }
            )
            out += [self._total_logprob(c) for c in self._choices(answer, len(batch))]
        return out

    def sample(
        self, num_samples: int, max_tokens: int = 64, batch_size: int = 8, prompt: str = ENDOFTEXT
    ) -> tuple[list[str], list[float]]:
        """`num_samples` unconditional samples (temperature 1) and their total log-probabilities."""
        texts: list[str] = []
        logprobs: list[float] = []
        while len(texts) < num_samples:
            n = min(batch_size, num_samples - len(texts))
            answer = self.post(
                {
                    "model": self.model,
                    "prompt": prompt,
                    "n": n,
                    "max_tokens": max_tokens,
                    "temperature": 1,
                    "logprobs": 1,
                    "echo": True,
                }
            )
            for choice in self._choices(answer, n):
                texts.append(str(choice.get("text", "")).removeprefix(prompt))
                logprobs.append(self._total_logprob(choice))
        return texts, logprobs


def completion_logprobs(
    texts: Sequence[str],
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    batch_size: int = 8,
    **client_options: Any,
) -> list[float]:
    """Total log-probability of each text under the API model (configured by argument or env)."""
    client = CompletionsClient.from_env(model, base_url, api_key, **client_options)
    return client.logprobs(texts, batch_size=batch_size)


def sample_completions(
    num_samples: int,
    *,
    max_tokens: int = 64,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    batch_size: int = 8,
    **client_options: Any,
) -> tuple[list[str], list[float]]:
    """Unconditional samples of the API model and their total log-probabilities (the original's GPT3.sample)."""
    client = CompletionsClient.from_env(model, base_url, api_key, **client_options)
    return client.sample(num_samples, max_tokens=max_tokens, batch_size=batch_size)


def forward_kl(reference_logprobs: Sequence[float], model_logprobs: Sequence[float]) -> float:
    """KL(reference || model) in nats per sample, estimated on the reference's own samples."""
    if len(reference_logprobs) != len(model_logprobs) or not reference_logprobs:
        raise ValueError(
            "forward_kl: need equally many (and some) reference and model log-probabilities"
        )
    diffs = [r - m for r, m in zip(reference_logprobs, model_logprobs, strict=True)]
    return sum(diffs) / len(diffs)
