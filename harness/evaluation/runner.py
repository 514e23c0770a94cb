"""Evaluate a model: samples per scenario, scored in shards across ranks, plus held-out loss and KL.

    deepspeed --num_gpus 2 scripts/evaluate.py --checkpoint runs/pep8_mle --eval.num_samples 4096

Every rank generates, scores and (for KL) log-scores its own global batches of samples
(`harness.evaluation.sampling`); the records are gathered on every rank, and rank 0 computes the
metrics (`harness.evaluation.metrics`) and writes `<output_dir>/eval/step-XXXXXXXX/samples.jsonl`
and `metrics.json` atomically. Metric keys (also logged to metrics.jsonl/wandb during training):

    eval/<scenario>/score_mean, score_max, expected_max_score, num_hits, frac_above_threshold,
                    length_tokens_mean, length_chars_mean, compile_rate (code), num_samples;
                    diversity: distinct_{1,2,3}, entropy_{1,2,3}, self_bleu_5 (the paper's) and/or
                    distinct_corpus_{1,2,3}, self_bleu_4_words (the harness's); see
                    harness.evaluation.metrics
    eval/lm_loss, eval/lm_ppl      next-token loss (nats per text token) on eval.batches x
                                   train.micro_batch_size blocks spread evenly over the held-out
                                   split, nothing filtered or reweighted, so all objectives are
                                   comparable. Conditional models read it in their own format:
                                   every segment behind its true control token, whose prediction
                                   counts in the loss but not in the number of tokens
                                   (ConditionalTraining.heldout_treatment)
    eval/kl_ref                    KL(p_model || p_ref) in nats per sample, estimated as
                                   mean_i [log p_model(x_i) - log p_ref(x_i)] on eval.num_samples
                                   unconditional samples x_i ~ p_model drawn for it at temperature 1
                                   without top-p (the scenario's own samples when eval.temperature
                                   and top_p are 1); each model scores the decoded text with its own
                                   tokenizer given BOS, segment by segment (the task's segments, as
                                   training text is tokenized), so tokenizers may differ; a conditional
                                   model scores the tokens it sampled, its control tokens included
                                   (the scored text has them dropped). Samples are prefixes (no
                                   end-of-text term).
    eval/kl_ref_per_token          the same sum divided by the number of the model's tokens
    eval/kl_api, kl_api_per_token  KL(API model || p_model) on samples of an OpenAI-compatible
                                   completions API (eval.api_kl_model; the paper's KL from GPT-3),
                                   scored by the model as for kl_ref; see harness.evaluation.api_kl.
                                   The API's samples go to api_samples.jsonl beside samples.jsonl.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import distributed as dist
from harness.atomic import atomic_write_dir
from harness.config import Config
from harness.control_tokens import CONTROL_TOKENS, control_prefix_ids, control_token_ids, swapped
from harness.evaluation import metrics as M
from harness.evaluation.api_kl import API_SAMPLES_FILE, api_kl, fetch_api_samples
from harness.evaluation.context import EvalContext
from harness.evaluation.kl_ref import kl_samples, kl_terms
from harness.evaluation.sampling import (
    decode_samples,
    generate_batch,
    max_positions,
    rank_batches,
    sample_seed,
)
from harness.evaluation.scenarios import Scenario, build_scenarios
from harness.faults import stop_requested
from harness.scoring import build_scorer
from harness.tasks import Task, resolve_task

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _scorer(name: str, options_json: str):
    return build_scorer(name, **json.loads(options_json))


def is_partitioned(module: nn.Module) -> bool:
    """True when ZeRO-3 partitions the module's weights (its forwards are collective)."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


def _prompt_ids(
    ctx: EvalContext, scenario: Scenario, index: int, cap: int | None = None
) -> list[int]:
    """BOS (+ <|aligned|>) + the prompt's tokens, the prompt cut on the left to fit `cap` tokens."""
    prefix = control_prefix_ids(ctx.tokenizer, ctx.conditional, ctx.cfg.eval.control_token)
    text = scenario.prompt(index)
    ids = ctx.tokenizer(text, add_special_tokens=False).input_ids if text else []
    if cap is not None and len(prefix) + len(ids) > cap:
        ids = ids[len(prefix) + len(ids) - cap :]
    return prefix + ids


def _token_budget(ctx: EvalContext, scenario: Scenario) -> tuple[int, int | None]:
    """(new tokens per sample, prompt cap): the longest prompt plus the new tokens fit the context.

    Prompts longer than half the context are cut on the left to half of it. One answer per
    scenario, the same on every rank (ZeRO-3 ranks must step together).
    """
    limit = max_positions(ctx.lm)
    wanted = ctx.cfg.eval.scenario_value(scenario.name, "max_new_tokens")
    if limit is None:
        return wanted, None
    longest = max(len(_prompt_ids(ctx, scenario, i)) for i in range(len(scenario.prompts)))
    cap = None
    if longest + wanted > limit and longest > limit // 2:
        cap = longest = limit // 2
        ctx.notes.append(
            f"{scenario.name}: prompts cut on the left to {cap} tokens (context {limit})"
        )
    budget = min(wanted, limit - longest)
    if budget < wanted:
        ctx.notes.append(
            f"{scenario.name}: max_new_tokens cut to {budget} (context {limit}, longest prompt {longest})"
        )
    return budget, cap


def run_scenario(
    ctx: EvalContext, scenario: Scenario, scorer, with_kl: bool = True
) -> list[dict[str, Any]]:
    """Generate, score (and log-score for KL) this rank's samples; gather all records, by index."""
    ev = ctx.cfg.eval
    tok = ctx.tokenizer
    banned = ctx.task.banned_token_ids(
        tok, ctx.conditional, ev.banned_control_tokens, ev.control_token
    )
    with_kl = with_kl and scenario.name == "unconditional" and ev.reference_model is not None
    device = str(next(ctx.lm.parameters()).device)
    max_new, cap = _token_budget(ctx, scenario)
    min_new = min(ev.scenario_value(scenario.name, "min_new_tokens"), max_new)
    num = ev.scenario_value(scenario.name, "num_samples")
    local: list[dict[str, Any]] = []
    batches = rank_batches(num, ev.generation_batch_size, dist.rank(), dist.world_size(), ctx.sync)
    for batch in batches:
        # Under ZeRO-3 a rank without a batch of its own runs a dummy one so forwards stay in step.
        indices = list(batch) if batch is not None else [0]
        seeds = [sample_seed(ctx.cfg.run.seed, scenario.name, i) for i in indices]
        prompt_ids = [_prompt_ids(ctx, scenario, i, cap) for i in indices]
        generated = generate_batch(
            ctx.lm,
            prompt_ids,
            seeds,
            max_new,
            ev.temperature,
            ev.top_p,
            tok.eos_token_id,
            banned,
            sync=ctx.sync,
            min_new_tokens=min_new,
        )
        texts = decode_samples(tok, generated)
        sampled = [p + g for p, g in zip(prompt_ids, generated, strict=True)]
        kl = [{} for _ in texts]
        if with_kl:
            reuse = (texts, sampled)
            kl_texts, kl_ids = kl_samples(ctx, indices, prompt_ids, max_new, banned, reuse, min_new)
            kl = kl_terms(ctx, kl_texts, device, kl_ids, banned)
        if batch is not None:
            local += _scored_records(scenario, scorer, indices, seeds, texts, generated, kl)
    return sorted(dist.all_gather_list(local), key=lambda r: r["index"])


def _scored_records(
    scenario: Scenario,
    scorer,
    indices: list[int],
    seeds: list[int],
    texts: list[str],
    generated: list[list[int]],
    kl: list[dict[str, float]],
) -> list[dict[str, Any]]:
    """One record per sample of a batch, scored by the task's scorer (code: with its prompt)."""
    prompts = [scenario.prompt(i) for i in indices]
    scored = [
        p + t if scenario.score_with_prompt else t for p, t in zip(prompts, texts, strict=True)
    ]
    scores = scorer.score_texts(scored)
    return [
        {
            "scenario": scenario.name,
            "index": i,
            "seed": seed,
            "prompt": prompt,
            "text": text,
            "num_tokens": len(toks),
            "score": float(score),
            **extra,
        }
        for i, seed, prompt, text, toks, score, extra in zip(
            indices, seeds, prompts, texts, generated, scores, kl, strict=True
        )
    ]


def spread_block_ids(n_available: int, n_blocks: int) -> list[int]:
    """`n_blocks` block indices spread evenly over `n_available` (all of them when fewer).

    The held-out split is packed in document order, so its first blocks come from a few documents
    (in the stdlib, alphabetically adjacent modules such as the encodings tables); an even spread
    samples the whole split.
    """
    if n_blocks >= n_available:
        return list(range(n_available))
    return [i * n_available // n_blocks for i in range(n_blocks)]


@torch.no_grad()
def heldout_lm_loss(ctx: EvalContext) -> dict[str, float]:
    """Next-token loss per text token on eval.batches x micro_batch held-out blocks spread evenly
    over the split (module docstring). Control tokens' predictions count in the sum, not the count.

    The same blocks whatever the world size: they are strided over ranks, and every rank runs the
    same number of forwards (a rank short of blocks repeats a block with weight 0), as ZeRO-3 needs.
    """
    if ctx.loss_fn is None or ctx.heldout is None:
        return {}
    micro = ctx.cfg.train.micro_batch_size
    world = dist.world_size()
    n_blocks = min(ctx.cfg.eval.batches * micro, len(ctx.heldout))
    if n_blocks == 0:
        ctx.notes.append("eval/lm_loss skipped: the held-out split has no full block")
        return {}
    ids = spread_block_ids(len(ctx.heldout), n_blocks)[dist.rank() :: world]
    n_forwards = math.ceil(math.ceil(n_blocks / world) / micro)  # the same on every rank
    device = next(ctx.lm.parameters()).device
    control = _control_ids(ctx)
    total = text_tokens = 0.0
    for k in range(n_forwards):
        chunk = ids[k * micro : (k + 1) * micro]
        tokens, scores = ctx.heldout[chunk or ids[:1] or [0]]
        loss, _ = ctx.loss_fn(
            input_ids=torch.from_numpy(tokens).to(device),
            scores=torch.from_numpy(scores).to(device),
        )
        if not chunk:
            continue  # a dummy forward, for ZeRO-3's collectives
        targets = tokens[:, 1:]
        total += float(loss.float()) * targets.size  # loss is the mean over predicted tokens
        text_tokens += targets.size - int(np.isin(targets, control).sum())
    total, text_tokens = dist.all_reduce_sum([total, text_tokens], device)
    loss = total / text_tokens
    return {"eval/lm_loss": loss, "eval/lm_ppl": math.exp(min(loss, 50.0))}


def _control_ids(ctx: EvalContext) -> list[int]:
    """Ids of the control tokens of a conditionally trained model (none otherwise)."""
    if not ctx.conditional:
        return []
    return control_token_ids(ctx.tokenizer)


def scenario_metrics(
    ctx: EvalContext, scenario: Scenario, records: list[dict[str, Any]]
) -> dict[str, float]:
    """Metrics of one scenario's gathered records, keyed `eval/<scenario>/<metric>` (and KL).

    The paper's self-BLEU-5 (nltk, ~0.1 s per hypothesis) is computed in shards over the ranks.
    """
    ev, task = ctx.cfg.eval, ctx.task
    threshold = ev.threshold if ev.threshold is not None else task.eval_threshold
    hits = ev.hit_threshold if ev.hit_threshold is not None else task.hit_threshold
    texts = [r["text"] for r in records]
    scored = [r["prompt"] + r["text"] if scenario.score_with_prompt else r["text"] for r in records]
    values = M.sample_metrics(
        [r["score"] for r in records],
        texts,
        scored,
        [r["num_tokens"] for r in records],
        threshold,
        task.is_code,
        hits,
    )
    self_bleu_5 = None
    if "paper" in ev.diversity_metrics:
        hypotheses = range(min(len(texts), ev.self_bleu_samples))
        mine = M.self_bleu_5_scores(texts, hypotheses[dist.rank() :: dist.world_size()])
        every = dist.all_gather_list(mine)
        self_bleu_5 = sum(every) / len(every) if every else float("nan")
    values.update(
        M.diversity_metrics(texts, ev.diversity_metrics, self_bleu_5, ev.self_bleu_samples)
    )
    out = {f"eval/{scenario.name}/{k}": v for k, v in values.items()}
    if records and "logp_ref" in records[0]:
        diffs = [r["logp_model"] - r["logp_ref"] for r in records]
        out["eval/kl_ref"] = sum(diffs) / len(diffs)
        out["eval/kl_ref_per_token"] = sum(diffs) / max(1, sum(r["model_tokens"] for r in records))
    return out


def _write_results(
    folder: Path,
    records: list[dict[str, Any]],
    summary: dict[str, Any],
    extra: dict[str, list[dict[str, Any]] | None] | None = None,
) -> None:
    """samples.jsonl, metrics.json (and the other samples: behind <|misaligned|>, the API's)
    of one evaluation, published as one folder."""
    files = {"samples.jsonl": records}
    files.update({name: rows for name, rows in (extra or {}).items() if rows})

    def write(tmp: Path) -> None:
        for name, rows in files.items():
            with (tmp / name).open("w") as fh:
                for r in rows:
                    fh.write(json.dumps(r) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(summary, indent=2))

    atomic_write_dir(folder, write)


MISALIGNED_SAMPLES_FILE = "samples_misaligned_token.jsonl"


def other_side(ctx: EvalContext) -> EvalContext | None:
    """The context that samples a conditional model behind `<|misaligned|>` (bans swapped), for
    `eval.controllability`; None when it does not apply."""
    ev = ctx.cfg.eval
    misaligned = CONTROL_TOKENS[1]
    if not (ctx.conditional and ev.controllability) or ev.control_token == misaligned:
        return None
    bans = ev.banned_control_tokens
    if bans is not None:  # swap the two tokens in an explicit list
        bans = list(swapped(bans))
    other = replace(ev, control_token=misaligned, banned_control_tokens=bans)
    return replace(ctx, cfg=replace(ctx.cfg, eval=other))


def controllability(
    name: str, results: dict[str, float], behind: list[dict[str, Any]]
) -> dict[str, float]:
    """The mean score behind `<|misaligned|>` and its gap to the usual (`<|aligned|>`) one."""
    scores = [float(r["score"]) for r in behind]
    mean = sum(scores) / len(scores) if scores else float("nan")
    return {
        f"eval/{name}/score_misaligned_token": mean,
        f"eval/{name}/score_gap_misaligned": mean - results[f"eval/{name}/score_mean"],
    }


def eval_scorer(cfg: Config, task: Task | None = None):
    """The scorer of the samples (built once per options); a ValueError saying what to change if it cannot be built."""
    options = (task or resolve_task(cfg.data)).scorer_options(
        cfg.eval.scorer_options if cfg.eval.scorer_options is not None else cfg.data.scorer_options,
        cfg.data.offline_scorers,
    )
    try:
        return _scorer(cfg.data.scorer, json.dumps(options, sort_keys=True))
    except (ImportError, OSError, RuntimeError, TypeError, ValueError) as err:
        raise ValueError(
            f"eval: the scorer of the samples ({cfg.data.scorer!r}, options {options}) cannot be "
            f"built: {err}. Provide what it needs, set eval.scorer_options or "
            "data.offline_scorers: true, or eval.scenarios: [] to generate no samples"
        ) from err


def evaluate_model(
    ctx: EvalContext, out_dir: Path, step: int, tokens: int | None
) -> dict[str, float]:
    """Run every scenario and the held-out loss; rank 0 writes out_dir; returns metrics on all ranks."""
    ev, cfg = ctx.cfg.eval, ctx.cfg
    # First, so that scripts/evaluate.py fails before any sampling when the API cannot be used.
    api_samples = fetch_api_samples(ctx)
    task = ctx.task
    scenarios = build_scenarios(ev.scenarios, task, ev.prompts, ev.prompt_sampling, cfg.run.seed)
    scorer = eval_scorer(cfg, task) if scenarios else None
    if ev.reference_model is None and "unconditional" in ev.scenarios:
        ctx.notes.append("eval/kl_ref skipped: eval.reference_model is not set")
    if ev.threshold is None and task.eval_threshold is None:
        ctx.notes.append(f"frac_above_threshold skipped: no eval.threshold for task {task.name!r}")
    results: dict[str, float] = {}
    all_records: list[dict[str, Any]] = []
    device = next(ctx.lm.parameters()).device
    other = other_side(ctx)
    misaligned_records: list[dict[str, Any]] = []  # samples behind <|misaligned|>, on their own
    for scenario in scenarios:
        records = run_scenario(ctx, scenario, scorer)
        all_records += records
        results.update(scenario_metrics(ctx, scenario, records))
        if other is not None:
            behind = run_scenario(other, scenario, scorer, with_kl=False)
            misaligned_records += behind
            results.update(controllability(scenario.name, results, behind))
        if stop_requested(device):  # all ranks agree here: the run saves instead of sampling on
            log.info("step %d: stop requested; the rest of this evaluation is skipped", step)
            return {}
    results.update(heldout_lm_loss(ctx))
    kl_api, api_records = api_kl(ctx, api_samples)
    results.update(kl_api)
    if dist.is_main():
        summary = {"step": step, "tokens": tokens, **results, "notes": ctx.notes}
        extra = {MISALIGNED_SAMPLES_FILE: misaligned_records, API_SAMPLES_FILE: api_records}
        _write_results(Path(out_dir), all_records, summary, extra)
        log.info("evaluation at step %d written to %s", step, out_dir)
    return results
