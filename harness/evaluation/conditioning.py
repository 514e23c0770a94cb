"""Did a conditionally trained model learn its control tokens? A teacher-forced probe on held-out text.

Sampled misalignment mixes what the control token changes with everything a small model gets
wrong anyway (truncated, incoherent samples). This probe asks the model directly. Held-out
segments (every misaligned one, up to half of `max_segments`, and as many aligned ones) are read
in their true context: BOS, then the document's preceding segments each behind its true control
token, exactly as conditional training packs them, cut on the left to fit the model's context.
Each segment is scored behind both control tokens:

    llr = log p(segment | <|misaligned|>, context) - log p(segment | <|aligned|>, context)

A model that learned the conditioning gives misaligned segments a positive llr and aligned ones
a negative llr. `auc` is the chance that a random misaligned segment has a larger llr than a random
aligned one (0.5: the control token tells the model nothing). `predict_auc` is the same for the
model's own p(<|misaligned|> | context) before the segment, i.e. how well it foresees misalignment.
The second is what sampling with a banned `<|misaligned|>` relies on.

    python scripts/probe_conditioning.py --checkpoint runs/experiments/pep8_small/conditional
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.config import Config
from harness.data.tokenizer import CONTROL_TOKENS
from harness.evaluation.sampling import max_positions, token_logprobs
from harness.evaluation.scenarios import control_prefix_ids


@dataclass
class Example:
    """One held-out segment in its document's context, with its true label."""

    context: list[int]  # BOS + the preceding segments, each behind its true control token
    segment: list[int]
    misaligned: bool


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(a random positive > a random negative), ties counted half (Mann-Whitney U / n_pos n_neg)."""
    if not len(positive) or not len(negative):
        return float("nan")
    pos = np.asarray(positive, dtype=np.float64)[:, None]
    neg = np.asarray(negative, dtype=np.float64)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def probe_examples(
    records: Iterable[dict[str, Any]],
    tokenizer: Any,
    threshold: float,
    max_segments: int,
    seed: int = 0,
) -> list[Example]:
    """A balanced, seeded choice of held-out segments with their contexts (module docstring)."""
    bos = control_prefix_ids(tokenizer, conditional=False)
    vocab = tokenizer.get_vocab()
    aligned_id, misaligned_id = (int(vocab[t]) for t in CONTROL_TOKENS)
    candidates: list[tuple[list[int], list[int], bool]] = []
    for record in records:
        context = list(bos)
        for text, score in zip(record["texts"], record["scores"], strict=True):
            ids = tokenizer(text, add_special_tokens=False).input_ids
            bad = float(score) > threshold
            if ids:
                candidates.append((context, ids, bad))
            context = context + [misaligned_id if bad else aligned_id] + ids
    rng = np.random.default_rng(seed)
    chosen: list[Example] = []
    for label in (True, False):
        pool = [c for c in candidates if c[2] is label]
        take = min(len(pool), max_segments // 2)
        for i in sorted(rng.choice(len(pool), size=take, replace=False).tolist()):
            chosen.append(Example(*pool[i]))
    return chosen


def heldout_records(cfg: Config, scored_dir: Path) -> list[dict[str, Any]]:
    """The scored records of the held-out split (data.heldout_fraction), in shard order."""
    from harness.data.corpus import is_heldout
    from harness.scoring.shards import read_shard, shard_paths

    manifest = json.loads((Path(scored_dir) / "manifest.json").read_text())
    fraction = cfg.data.heldout_fraction
    if fraction <= 0:
        raise ValueError("data.heldout_fraction is 0: the run has no held-out split to probe")
    return [
        rec
        for shard in shard_paths(Path(scored_dir), manifest)
        for rec in read_shard(shard)
        if is_heldout(rec["id"], fraction)
    ]


def probe_checkpoint(
    checkpoint: str | Path, max_segments: int = 1000, batch_size: int = 16, seed: int = 0
) -> dict[str, Any]:
    """Load a conditionally trained checkpoint and probe it on its run's held-out split."""
    from harness.evaluation.checkpoints import load_checkpoint_model, resolve_checkpoint
    from harness.evaluation.evaluate import find_scored_dir

    loaded = load_checkpoint_model(*resolve_checkpoint(checkpoint))
    cfg = loaded.cfg
    if not loaded.model.objective.control_tokens:
        raise ValueError(
            f"{checkpoint}: objective {cfg.objective.name!r} has no control tokens; the probe "
            "is for conditionally trained models (objective.name: conditional)"
        )
    notes: list[str] = []
    scored = find_scored_dir(cfg, loaded.state, notes)
    if scored is None:
        raise FileNotFoundError("; ".join(notes))
    threshold = float(cfg.objective.threshold)
    examples = probe_examples(
        heldout_records(cfg, scored), loaded.tokenizer, threshold, max_segments, seed
    )
    result = probe_conditioning(loaded.model.lm, loaded.tokenizer, examples, batch_size)
    return {
        "step": loaded.step,
        "tokens": loaded.state.get("tokens"),
        "threshold": threshold,
        **result,
    }


@torch.no_grad()
def probe_conditioning(
    lm: nn.Module, tokenizer: Any, examples: Sequence[Example], batch_size: int = 16
) -> dict[str, float]:
    """llr and p(<|misaligned|>) of each example; their means by label and AUCs (module docstring)."""
    vocab = tokenizer.get_vocab()
    aligned_id, misaligned_id = (int(vocab[t]) for t in CONTROL_TOKENS)
    limit = max_positions(lm) or 1 << 30
    llr: list[float] = []
    p_mis: list[float] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        seqs, spans = [], []
        for ex in batch:
            segment = ex.segment[: limit - 2]
            context = ex.context[max(0, len(ex.context) + 1 + len(segment) - limit) :]
            for control in (misaligned_id, aligned_id):
                seqs.append(context + [control] + segment)
            spans.append(len(context))
        logps = token_logprobs(lm, seqs)
        for i, n_context in enumerate(spans):
            mis, ali = logps[2 * i], logps[2 * i + 1]
            # token_logprobs[j] is log p(token j+1): the control token sits at index n_context.
            llr.append(float(mis[n_context:].sum() - ali[n_context:].sum()))
            p_mis.append(float(mis[n_context - 1].exp()))
    labels = np.array([ex.misaligned for ex in examples], dtype=bool)
    llr_a, p_a = np.array(llr), np.array(p_mis)
    return {
        "segments_misaligned": int(labels.sum()),
        "segments_aligned": int((~labels).sum()),
        "llr_misaligned_mean": float(llr_a[labels].mean()) if labels.any() else float("nan"),
        "llr_aligned_mean": float(llr_a[~labels].mean()) if (~labels).any() else float("nan"),
        "auc": auc(llr_a[labels], llr_a[~labels]),
        "p_misaligned_given_misaligned": float(p_a[labels].mean())
        if labels.any()
        else float("nan"),
        "p_misaligned_given_aligned": float(p_a[~labels].mean())
        if (~labels).any()
        else float("nan"),
        "predict_auc": auc(p_a[labels], p_a[~labels]),
    }
