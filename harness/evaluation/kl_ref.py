"""eval/kl_ref: KL(p_model || p_ref) on the model's unconditional samples (see runner's docstring)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.control_tokens import control_prefix_ids
from harness.evaluation.api_kl import model_logprobs, reading_segmenter, text_ids
from harness.evaluation.context import EvalContext
from harness.evaluation.sampling import (
    decode_samples,
    generate_batch,
    sample_seed,
    sequence_logprobs,
)


@functools.lru_cache(maxsize=2)
def reference_model(path: str, device: str):
    """The reference model and its tokenizer, from a local folder (cached)."""

    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).to(device).eval()
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True)


def kl_samples(
    ctx: EvalContext,
    indices: list[int],
    prompt_ids: list[list[int]],
    max_new: int,
    banned: list[int],
    reuse: tuple[list[str], list[list[int]]],
    min_new: int = 0,
) -> tuple[list[str], list[list[int]]]:
    """(texts, prompt + generated ids) of the samples that estimate eval/kl_ref.

    The KL is an expectation under the model, so its samples are drawn at temperature 1 without
    top-p: mean log p_model - log p_ref over eval.temperature/top_p samples is not a KL (tempered
    samples favour the model's likeliest tokens, it can be far from it, even below zero). At
    temperature 1 and top-p 1 the scenario's own samples (`reuse`) are such samples.
    """
    ev = ctx.cfg.eval
    if ev.temperature == 1.0 and ev.top_p == 1.0 and min_new == 0:
        return reuse
    seeds = [sample_seed(ctx.cfg.run.seed, "kl_ref", i) for i in indices]
    tok = ctx.tokenizer
    generated = generate_batch(
        ctx.lm, prompt_ids, seeds, max_new, 1.0, 1.0, tok.eos_token_id, banned, sync=ctx.sync
    )
    return decode_samples(tok, generated), [
        p + g for p, g in zip(prompt_ids, generated, strict=True)
    ]


def kl_terms(
    ctx: EvalContext,
    texts: list[str],
    device: str,
    sampled: list[list[int]],
    banned: Sequence[int] = (),
) -> list[dict[str, float]]:
    """log p_model and log p_ref of each sample, each with its own tokenizer (module docstring).

    `sampled` are the prompt + generated ids. A conditionally trained model is scored on those,
    control tokens included, under the distribution it samples from (`banned` tokens excluded):
    its decoded text has the control tokens dropped, and text without a control token at each
    segment is not what it samples (nor what it was trained on), so scoring the text would
    understate log p_model and bias the KL low, even below zero.
    """
    ref, ref_tok = reference_model(ctx.cfg.eval.reference_model, device)
    if ctx.conditional:
        prefix_len = len(control_prefix_ids(ctx.tokenizer, True, ctx.cfg.eval.control_token))
        ours = sequence_logprobs(ctx.lm, sampled, prefix_len, banned)
    else:
        ours = model_logprobs(ctx, texts)
    ref_start = ref_tok.bos_token_id if ref_tok.bos_token_id is not None else ref_tok.eos_token_id
    segment = reading_segmenter(ctx)
    theirs = sequence_logprobs(ref, [[ref_start] + text_ids(ref_tok, t, segment) for t in texts], 1)
    return [
        {"logp_model": lp, "model_tokens": n, "logp_ref": rp}
        for (lp, n), (rp, _) in zip(ours, theirs, strict=True)
    ]
