"""Seeded nucleus sampling whose result does not depend on how samples are sharded over ranks.

Sample i of a scenario draws every token with its own `torch.Generator`, seeded from
(run seed, scenario, i). Samples are grouped into *global* batches by index (batch b holds samples
[b*B, (b+1)*B)) and batch b runs on rank b mod W. Each sample therefore sees the same batch
companions, padding and generator on any number of ranks, so sharding over 2 ranks reproduces the
single-rank samples token for token (on the same kind of device).

Under ZeRO-3 every forward gathers the partitioned weights collectively, so all ranks must run the
same number of forwards: with `sync=True` ranks pad their share of batches to the same count with
dummy batches and keep stepping until every rank's batch is finished (as `synced_gpus` does in
transformers' `generate`).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from harness import distributed as dist

log = logging.getLogger(__name__)


def sample_seed(run_seed: int, scenario: str, index: int) -> int:
    """The seed of sample `index` of `scenario` (63 bits, from a hash of all three)."""
    digest = hashlib.blake2b(f"{run_seed}:{scenario}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def rank_batches(
    num: int, batch_size: int, rank: int, world: int, sync: bool
) -> list[range | None]:
    """This rank's global batches of sample indices (batch b on rank b mod W); None pads when `sync`."""
    n_batches = -(-num // batch_size)
    mine: list[range | None] = [
        range(b * batch_size, min(num, (b + 1) * batch_size)) for b in range(rank, n_batches, world)
    ]
    if sync:
        mine += [None] * (-(-n_batches // world) - len(mine))
    return mine


def max_positions(lm: nn.Module) -> int | None:
    """The model's context length, when its config says."""
    cfg = lm.config
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _forward_kwargs(lm: nn.Module) -> tuple[str, bool]:
    # transformers renamed `past_key_values` to `cache` (5.x); old versions lack `logits_to_keep`.
    params = inspect.signature(lm.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


def nucleus_sample(
    logits: torch.Tensor, temperature: float, top_p: float, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """One token per row from softmax(logits / T) restricted to the smallest set of mass >= top_p."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
        before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the more likely tokens
        sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)  # the first token always stays
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    rows = [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)]
    return torch.cat(rows)


def _left_padded(
    prompts: Sequence[Sequence[int]], width: int, pad_id: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of the prompts padded on the left to `width`."""
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate_batch(
    lm: nn.Module,
    prompts: Sequence[Sequence[int]],
    seeds: Sequence[int],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    eos_token_id: int,
    banned_ids: Sequence[int] = (),
    sync: bool = False,
    min_new_tokens: int = 0,
    stop: Callable[[list[int]], bool] | None = None,
) -> list[list[int]]:
    """Sample a continuation of each prompt (left-padded together) until EOS or `max_new_tokens`.

    EOS cannot be sampled before `min_new_tokens` tokens (the original's `min_length`, which
    transformers' MinLengthLogitsProcessor enforces the same way). A row also ends when `stop` of
    its tokens so far is true (e.g. a stop sequence in its text): each row draws from its own
    generator, so ending one early changes no other. Returns the generated token ids of each row,
    EOS excluded.
    """
    device = next(lm.parameters()).device
    width = max(len(p) for p in prompts)
    limit = max_positions(lm)
    if limit is not None and width + max_new_tokens > limit:
        max_new_tokens = max(0, limit - width)  # the model has no positions beyond its context
    ids, mask = _left_padded(prompts, width, eos_token_id, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    cache_key, keep_arg = _forward_kwargs(lm)
    extra: dict = {"logits_to_keep": 1} if keep_arg else {}
    cache = None
    out: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for position in range(max_new_tokens):
        if cache is not None:
            extra[cache_key] = cache
        result = lm(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra
        )
        cache = result.get(cache_key)
        logits = result.logits[:, -1, :].float()
        if banned_ids:
            logits[:, list(banned_ids)] = float("-inf")
        if position < min_new_tokens:
            logits[:, eos_token_id] = float("-inf")
        nxt = nucleus_sample(logits, temperature, top_p, gens)
        for i, tok in enumerate(nxt.tolist()):
            if not done[i]:
                if tok == eos_token_id:
                    done[i] = True
                else:
                    out[i].append(tok)
                    done[i] = stop is not None and stop(out[i])
        finished = all(done)
        if dist.all_true(finished, device) if sync else finished:
            break
        ids = nxt[:, None]
        mask = torch.cat([mask, mask.new_ones((len(prompts), 1))], dim=1)
        positions = positions[:, -1:] + 1
    return out


def decode_samples(tokenizer: Any, generated: Sequence[Sequence[int]]) -> list[str]:
    """The text of each generated sequence: special (control) tokens dropped, spacing as sampled."""
    return [
        tokenizer.decode(g, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        for g in generated
    ]


@torch.no_grad()
def token_logprobs(
    lm: nn.Module, sequences: Sequence[Sequence[int]], banned_ids: Sequence[int] = ()
) -> list[torch.Tensor]:
    """Per sequence (right-padded into one batch): float64 log p(token j+1 | tokens <= j) for each j.

    With `banned_ids`, p is the distribution that generate_batch samples from with them banned
    (renormalised over the other tokens). Sequences longer than the model's context are cut to it.
    """
    device = next(lm.parameters()).device
    limit = max_positions(lm)
    seqs = [list(s)[:limit] if limit else list(s) for s in sequences]
    width = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    ids, mask = ids.to(device), mask.to(device)
    logits = lm(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    if banned_ids:
        logits[..., list(banned_ids)] = float("-inf")
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return [logp[i, : max(0, len(s) - 1)].double().cpu() for i, s in enumerate(seqs)]


def sequence_logprobs(
    lm: nn.Module,
    sequences: Sequence[Sequence[int]],
    prefix_len: int,
    banned_ids: Sequence[int] = (),
) -> list[tuple[float, int]]:
    """Per sequence: sum of log p(token) over tokens after the first `prefix_len`, and their count.

    `banned_ids` as for token_logprobs. Sequences longer than the model's context are cut to it
    (the cut tokens are not counted).
    """
    out = []
    for logp in token_logprobs(lm, sequences, banned_ids):
        n = max(0, len(logp) + 1 - prefix_len)
        out.append((float(logp[prefix_len - 1 :].sum()) if n else 0.0, n))
    return out
