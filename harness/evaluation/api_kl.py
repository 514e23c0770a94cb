"""KL(API model || model) on samples of an OpenAI-compatible completions API: the paper's KL from GPT-3.

    eval.api_kl_model: davinci          # code-cushman-001 for pep8; None (default) skips
    OPENAI_API_KEY=... [OPENAI_BASE_URL=http://host:8000/v1] python scripts/evaluate.py ...

As the original `KLGPT3Callback` (`apo/kl_gpt3.py`): `eval.api_kl_samples` texts x_i of up to
`eval.api_kl_max_tokens` tokens are sampled from the API model (temperature 1, from
<|endoftext|>) with their total log-probabilities log p_api(x_i); the model under evaluation scores
each text with its own tokenizer segment by segment as in training, given BOS (and <|aligned|> for
conditional models; for a task whose conditional models start every segment with it in training,
pep8, also before every later segment, as the original's `should_insert_prefix`: `reading_ids`),
as for eval/kl_ref. Then

    eval/kl_api            = mean_i [log p_api(x_i) - log p_model(x_i)]   nats per sample
    eval/kl_api_per_token  = the same sum / the number of the model's tokens

Samples are prefixes on both sides (no end-of-text term); the first API token (<|endoftext|>) has
no log-probability and is not counted, as in the original. A text longer than the model's context
is cut to it (a note says how many). Rank 0 talks to the API and broadcasts the texts; the model's
log-probs are computed in global batches of eval.generation_batch_size sharded over ranks, so the
result does not depend on the world size. The API's samples are cached in
`<data.cache_dir>/api_kl/` (as the original cached them in ~/.kl_gpt3) and reused by every later
evaluation and run with the same URL, model, sample count and length: delete the file to resample.
The other ranks wait for rank 0 in a collective, so a first, uncached fetch of many samples (the
paper's 4096 are 512 requests) must finish within the process group's timeout (30 min by
default): fill the cache beforehand with scripts/evaluate.py on one process if the API is slow.

The key is read from OPENAI_API_KEY only (never from the config) and is never written: it is
masked in every message. When the API cannot be used, `fetch_api_samples` reports it on every
rank: during training the KL is skipped with a note in metrics.json; scripts/evaluate.py fails
with the client's message (which names the URL and the environment variables).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness import distributed as dist
from harness.atomic import atomic_write_text
from harness.config import Config
from harness.control_tokens import control_prefix_ids, control_token_ids
from harness.evaluation.context import EvalContext
from harness.evaluation.openai_client import (
    DEFAULT_BASE_URL,
    ENV_KEY,
    ENV_URL,
    CompletionsClient,
    OpenAIError,
    forward_kl,
)
from harness.evaluation.sampling import max_positions, rank_batches, sequence_logprobs
from harness.scoring.segmenters import get_segmenter
from harness.tasks import scorer_options_for

log = logging.getLogger(__name__)

API_SAMPLES_FILE = "api_samples.jsonl"  # beside samples.jsonl: text, logp_api, logp_model, ...


def text_ids(
    tokenizer: Any,
    text: str,
    segment: Callable[[str], list[str]] | None = None,
    between: Sequence[int] = (),
) -> list[int]:
    """The tokens of a text, no special tokens added (an empty text has none).

    With `segment` (a segmenter), each segment is tokenized alone, as the data pipeline tokenizes
    training text (harness.data.packing): the tokens of a text that our models were trained on.
    A BPE's tokens across a segment boundary (e.g. "\n" + the next line's indentation) never
    occur in their training data, so reading text whole would make any of our models find it
    unlikely. `between` (a control token) goes before every segment but the first.
    """
    if not text:
        return []
    if segment is None:
        return tokenizer(text, add_special_tokens=False).input_ids
    pieces = tokenizer(segment(text), add_special_tokens=False).input_ids
    return [i for n, piece in enumerate(pieces) for i in ([*between] if n else []) + piece]


def reading_segmenter(ctx: EvalContext) -> Callable[[str], list[str]]:
    """The segmenter of the run's task: how text is read for log-probabilities."""
    return get_segmenter(ctx.task.segmenter_name(scorer_options_for(ctx.cfg.data)))


def segment_control_ids(ctx: EvalContext) -> list[int]:
    """The control token a conditional model reads before every segment of a text it did not
    sample: `eval.control_token` where the task lets it sample that token mid-text (pep8: every
    line starts with one in training, as the original's `should_insert_prefix`), else none (the
    prose tasks ban both control tokens, and the original put one only at the start)."""
    if not ctx.conditional:
        return []
    token = ctx.cfg.eval.control_token
    banned = ctx.cfg.eval.banned_control_tokens
    if banned is None:
        banned = list(ctx.task.banned_tokens(token))
    return [] if token in banned else control_token_ids(ctx.tokenizer, [token])


def reading_ids(ctx: EvalContext, text: str) -> list[int]:
    """How the model reads a text it did not sample: BOS (+ the control token), then the text
    segment by segment as in training (`text_ids`), a control token before each segment where
    the model was trained so (`segment_control_ids`)."""
    prefix = control_prefix_ids(ctx.tokenizer, ctx.conditional, ctx.cfg.eval.control_token)
    segment = reading_segmenter(ctx)
    return prefix + text_ids(ctx.tokenizer, text, segment, segment_control_ids(ctx))


def model_logprobs(ctx: EvalContext, texts: list[str]) -> list[tuple[float, int]]:
    """(log p_model(text), tokens) of each text read as `reading_ids` says; the tokens after BOS
    (+ the first control token) count, inserted control tokens included (as the original)."""
    prefix = control_prefix_ids(ctx.tokenizer, ctx.conditional, ctx.cfg.eval.control_token)
    return sequence_logprobs(ctx.lm, [reading_ids(ctx, t) for t in texts], len(prefix))


def api_base_url(cfg: Config) -> str:
    """eval.api_kl_base_url, else OPENAI_BASE_URL, else the OpenAI default; no trailing slash."""
    url = cfg.eval.api_kl_base_url or os.environ.get(ENV_URL) or DEFAULT_BASE_URL
    return url.rstrip("/")


def redact(text: str) -> str:
    """`text` with the API key (OPENAI_API_KEY) masked."""
    secret = os.environ.get(ENV_KEY, "")
    return text.replace(secret, "***") if secret else text


def cache_path(cfg: Config) -> Path:
    """Where the API's samples for this URL, model, count and length are cached."""
    ev = cfg.eval
    key = json.dumps([api_base_url(cfg), ev.api_kl_model, ev.api_kl_samples, ev.api_kl_max_tokens])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", str(ev.api_kl_model))
    name = f"{model}-{ev.api_kl_samples}x{ev.api_kl_max_tokens}-{digest}.json"
    return Path(cfg.data.cache_dir) / "api_kl" / name


def _read_cache(path: Path, num: int) -> tuple[list[str], list[float]] | None:
    try:
        data = json.loads(path.read_text())
        texts, logprobs = list(data["texts"]), [float(x) for x in data["logprobs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: sample again
    return (texts, logprobs) if len(texts) == len(logprobs) == num else None


def _write_cache(path: Path, cfg: Config, texts: list[str], logprobs: list[float]) -> str | None:
    """Write the cache atomically; a message when it cannot be written (the KL is still reported)."""
    body = {
        "base_url": api_base_url(cfg),
        "model": cfg.eval.api_kl_model,
        "max_tokens": cfg.eval.api_kl_max_tokens,
        "texts": texts,
        "logprobs": logprobs,
    }
    try:
        atomic_write_text(path, json.dumps(body))
    except OSError as err:
        return f"eval/kl_api: the API samples could not be cached at {path} ({err})"
    return None


def _sample_on_main(cfg: Config) -> tuple[list[str], list[float], list[str]]:
    """Rank 0: the API's samples and log-probs, from the cache or the API, and notes."""
    ev = cfg.eval
    path = cache_path(cfg)
    cached = _read_cache(path, ev.api_kl_samples)
    if cached is not None:
        return *cached, [
            f"eval/kl_api: {ev.api_kl_samples} samples of {ev.api_kl_model} from {path}"
        ]
    client = CompletionsClient.from_env(model=ev.api_kl_model, base_url=api_base_url(cfg))
    texts, logprobs = client.sample(ev.api_kl_samples, max_tokens=ev.api_kl_max_tokens)
    notes = [f"eval/kl_api: {len(texts)} samples of {ev.api_kl_model} drawn from {client.url}"]
    failed = _write_cache(path, cfg, texts, logprobs)
    return texts, logprobs, notes + ([failed] if failed else [])


def fetch_api_samples(ctx: EvalContext) -> tuple[list[str], list[float]] | None:
    """The API's samples on every rank (rank 0 asks, the others receive); None when KL is off or skipped.

    Raises OpenAIError on every rank when the API cannot be used, unless `ctx.skip_unavailable_api`
    (training), where the KL is skipped with a note instead.
    """
    ev = ctx.cfg.eval
    if ev.api_kl_model is None:
        return None
    answer: Any = None
    if dist.is_main():
        try:
            answer = ("ok", *_sample_on_main(ctx.cfg))
        except OpenAIError as err:
            answer = ("error", redact(str(err)))
        except Exception as err:  # e.g. an answer of an unexpected shape; every rank must learn it
            answer = ("error", redact(f"{api_base_url(ctx.cfg)}: {type(err).__name__}: {err}"))
    answer = dist.broadcast_object(answer)
    if answer[0] == "error":
        message = f"eval/kl_api (eval.api_kl_model={ev.api_kl_model!r}): {answer[1]}"
        if not ctx.skip_unavailable_api:
            raise OpenAIError(message)
        log.warning("eval/kl_api skipped: %s", message)
        ctx.notes.append(f"skipped {message}")
        return None
    _, texts, logprobs, notes = answer
    ctx.notes.extend(notes)
    return texts, logprobs


def api_kl(
    ctx: EvalContext, samples: tuple[list[str], list[float]] | None
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """eval/kl_api(_per_token) and one record per API sample (all ranks take part; sharded)."""
    if samples is None:
        return {}, []
    texts, logp_api = samples
    if not texts:
        return {}, []
    limit = max_positions(ctx.lm)
    local: list[dict[str, Any]] = []
    batches = rank_batches(
        len(texts), ctx.cfg.eval.generation_batch_size, dist.rank(), dist.world_size(), ctx.sync
    )
    for batch in batches:
        # Under ZeRO-3 a rank without a batch of its own scores a dummy one so forwards stay in step.
        indices = list(batch) if batch is not None else [0]
        scored = model_logprobs(ctx, [texts[i] for i in indices])
        if batch is None:
            continue
        for i, (logp, n) in zip(indices, scored, strict=True):
            full = len(reading_ids(ctx, texts[i]))
            local.append(
                {
                    "index": i,
                    "text": texts[i],
                    "logp_api": logp_api[i],
                    "logp_model": logp,
                    "model_tokens": n,
                    "cut": limit is not None and full > limit,
                }
            )
    records = sorted(dist.all_gather_list(local), key=lambda r: r["index"])
    cut = sum(r["cut"] for r in records)
    if cut:
        ctx.notes.append(
            f"eval/kl_api: {cut} of {len(records)} API samples are longer than the model's "
            f"context ({limit} tokens) and were cut to it"
        )
    ours = [r["logp_model"] for r in records]
    theirs = [r["logp_api"] for r in records]
    kl = forward_kl(theirs, ours)
    per_token = (sum(theirs) - sum(ours)) / max(1, sum(r["model_tokens"] for r in records))
    return {"eval/kl_api": kl, "eval/kl_api_per_token": per_token}, records
