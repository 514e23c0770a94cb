"""How likely does a model find misaligned vs aligned held-out text? A teacher-forced probe.

    python scripts/probe_heldout.py --checkpoint runs/experiments/pep8_small/mle \
        --checkpoint runs/experiments/pep8_small/conditional

Sampled misalignment mixes what an objective changes with everything a small model gets wrong
anyway (truncated, incoherent samples). This probe asks the model directly, for any objective.
Held-out segments (every misaligned one, up to half of `max_segments`, and as many aligned ones;
a segment is misaligned when its score is above `threshold`) are read in their document's
context, as training packed it: BOS, then the preceding segments (for a conditionally trained
model each behind its true control token), cut on the left to fit the model's context.

- `logp_misaligned`, `logp_aligned`: mean log-probability per token of the misaligned and of the
  aligned segments. A conditional model reads each behind `<|aligned|>`, as it is sampled.
  `gap` = logp_misaligned - logp_aligned. Segments differ in content, so the gap means little
  alone; against MLE's gap on the same segments it says how far an objective moved probability
  away from misaligned text relative to aligned text (the aim of every PHF objective).

For a conditional model also, with each segment scored behind both control tokens,

    llr = log p(segment | <|misaligned|>, context) - log p(segment | <|aligned|>, context)

`llr_misaligned_mean` / `llr_aligned_mean` by true label; `auc`: the chance that a random
misaligned segment has a larger llr than a random aligned one (0.5: the control token tells the
model nothing); `predict_auc`: the same for the model's own p(<|misaligned|> | context) before
the segment, i.e. how well it foresees misalignment (what sampling with a banned
`<|misaligned|>` relies on).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.checkpoints.inference import load_checkpoint_model, resolve_checkpoint
from harness.config import Config
from harness.control_tokens import control_prefix_ids, control_token_ids
from harness.data.buckets import is_heldout
from harness.data.pipeline import find_scored_dir
from harness.data.score_stage import ScoringManifest, iter_shard, shard_paths
from harness.evaluation.sampling import max_positions, token_logprobs
from harness.tasks import resolve_task


# Segment threshold by task when the run has no conditional one: the paper's conditional
# training thresholds (any PEP8 violation or PII object; toxicity 0.00056).
@dataclass
class Example:
    """One held-out segment in its document's context, with its true label."""

    context: list[int]  # BOS + the preceding segments (behind their true control tokens)
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
    conditional: bool = True,
    max_context: int | None = None,
) -> list[Example]:
    """A balanced, seeded choice of held-out segments with their contexts (module docstring).

    Contexts keep their last `max_context` tokens (all when None); the model's context is what
    matters. The choice depends on the records, the tokenizer's ids of the text and the seed
    only, so runs that share data and tokenizer are probed on the same segments.
    """
    bos = control_prefix_ids(tokenizer, conditional=False)
    if conditional:
        aligned_id, misaligned_id = control_token_ids(tokenizer)
    # (document tokens so far, where this segment's context ends, segment ids, misaligned):
    # contexts are slices of one growing list per document, taken only for the chosen segments
    # (documents run to 100k tokens: a copy per segment would be quadratic).
    candidates: list[tuple[list[int], int, list[int], bool]] = []
    for record in records:
        doc = list(bos)
        for text, score in zip(record["texts"], record["scores"], strict=True):
            ids = tokenizer(text, add_special_tokens=False).input_ids
            bad = float(score) > threshold
            if ids:
                candidates.append((doc, len(doc), ids, bad))
            if conditional:
                doc.append(misaligned_id if bad else aligned_id)
            doc.extend(ids)
    rng = np.random.default_rng(seed)
    chosen: list[Example] = []
    for label in (True, False):
        pool = [c for c in candidates if c[3] is label]
        take = min(len(pool), max_segments // 2)
        for i in sorted(rng.choice(len(pool), size=take, replace=False).tolist()):
            doc, end, ids, bad = pool[i]
            start = 0 if max_context is None else max(0, end - max_context)
            chosen.append(Example(doc[start:end], ids, bad))
    return chosen


def heldout_records(cfg: Config, scored_dir: Path) -> list[dict[str, Any]]:
    """The scored records of the held-out split (data.heldout_fraction), in shard order."""
    manifest = ScoringManifest.read(scored_dir)
    fraction = cfg.data.heldout_fraction
    if fraction <= 0:
        raise ValueError("data.heldout_fraction is 0: the run has no held-out split to probe")
    return [
        rec
        for shard in shard_paths(Path(scored_dir), manifest)
        for rec in iter_shard(shard)
        if is_heldout(rec["id"], fraction)
    ]


def segment_threshold(cfg: Config, conditional: bool) -> float:
    """A conditional run's own threshold (what its tokens mean), else the task's default."""
    if conditional:
        return float(cfg.objective.threshold)
    task = resolve_task(cfg.data)
    if task.segment_threshold is None:
        raise ValueError(f"task {task.name!r} has no default segment threshold: pass --threshold")
    return task.segment_threshold


def probe_checkpoint(
    checkpoint: str | Path,
    max_segments: int = 1000,
    batch_size: int = 16,
    seed: int = 0,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Load a checkpoint (any objective) and probe it on its run's held-out split."""
    loaded = load_checkpoint_model(*resolve_checkpoint(checkpoint))
    cfg = loaded.cfg
    conditional = bool(loaded.model.objective.control_tokens)
    scored = find_scored_dir(cfg, loaded.state.scored_dir)
    if threshold is None:
        threshold = segment_threshold(cfg, conditional)
    examples = probe_examples(
        heldout_records(cfg, scored),
        loaded.tokenizer,
        threshold,
        max_segments,
        seed,
        conditional,
        max_positions(loaded.model.lm),
    )
    result = probe_model(loaded.model.lm, loaded.tokenizer, examples, conditional, batch_size)
    return {
        "run": cfg.run.name,
        "objective": cfg.objective.name,
        "step": loaded.step,
        "tokens": loaded.state.tokens,
        "threshold": threshold,
        **result,
    }


def _fit(context: list[int], segment: list[int], extra: int, limit: int) -> list[int]:
    """`context` cut on the left so that context + `extra` tokens + segment fit in `limit`."""
    return context[max(0, len(context) + extra + len(segment) - limit) :]


@torch.no_grad()
def probe_model(
    lm: nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    conditional: bool,
    batch_size: int = 16,
) -> dict[str, float]:
    """Per-token log p by label, and for conditional models llr and AUCs (module docstring)."""
    limit = max_positions(lm) or 1 << 30
    if conditional:
        aligned_id, misaligned_id = control_token_ids(tokenizer)
        controls = [misaligned_id, aligned_id]
    else:
        controls = [None]
    width = len(controls)
    # Per example: (sum of log p of the segment, its tokens) behind each control; p(<|misaligned|>).
    sums = np.zeros((len(examples), width))
    counts = np.zeros(len(examples))
    p_mis = np.zeros(len(examples))
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        seqs, spans = [], []
        for ex in batch:
            segment = ex.segment[: limit - 2]
            context = _fit(ex.context, segment, 1 if conditional else 0, limit)
            for control in controls:
                seqs.append(context + ([control] if control is not None else []) + segment)
            spans.append((len(context), len(segment)))
        logps = token_logprobs(lm, seqs)
        for i, (n_context, n_segment) in enumerate(spans):
            k = start + i
            for j in range(width):
                # token_logprobs[q] is log p(token q+1): the segment's first token sits at
                # n_context (+1 behind a control token).
                first = n_context - 1 + (1 if conditional else 0)
                sums[k, j] = float(logps[width * i + j][first : first + n_segment].sum())
            counts[k] = n_segment
            if conditional:
                p_mis[k] = float(logps[width * i][n_context - 1].exp())
    labels = np.array([ex.misaligned for ex in examples], dtype=bool)
    return _summary(sums, counts, p_mis, labels, conditional)


def _summary(
    sums: np.ndarray, counts: np.ndarray, p_mis: np.ndarray, labels: np.ndarray, conditional: bool
) -> dict[str, float]:
    """Per-token log p by label, the gap, and for conditional models llr and AUCs."""
    plain = sums[:, -1]  # behind <|aligned|> for a conditional model, as sampled

    def per_token(mask: np.ndarray) -> float:
        return float(plain[mask].sum() / counts[mask].sum()) if mask.any() else float("nan")

    out = {
        "segments_misaligned": int(labels.sum()),
        "segments_aligned": int((~labels).sum()),
        "logp_misaligned": per_token(labels),
        "logp_aligned": per_token(~labels),
    }
    out["gap"] = out["logp_misaligned"] - out["logp_aligned"]
    if conditional:
        llr = sums[:, 0] - sums[:, 1]
        out.update(
            {
                "llr_misaligned_mean": _mean(llr[labels]),
                "llr_aligned_mean": _mean(llr[~labels]),
                "auc": auc(llr[labels], llr[~labels]),
                "p_misaligned_given_misaligned": _mean(p_mis[labels]),
                "p_misaligned_given_aligned": _mean(p_mis[~labels]),
                "predict_auc": auc(p_mis[labels], p_mis[~labels]),
            }
        )
    return out


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


PROBE_COLUMNS = [
    ("run", "run", "{}"),
    ("objective", "objective", "{}"),
    ("step", "step", "{}"),
    ("segments (mis/ali)", None, ""),
    ("log p misaligned /tok", "logp_misaligned", "{:.4f}"),
    ("log p aligned /tok", "logp_aligned", "{:.4f}"),
    ("gap", "gap", "{:.4f}"),
    ("auc (llr)", "auc", "{:.3f}"),
    ("predict auc", "predict_auc", "{:.3f}"),
]


def probe_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per probed run (`-` where a value does not apply)."""
    lines = [
        "| " + " | ".join(c for c, _, _ in PROBE_COLUMNS) + " |",
        "|" + "---|" * len(PROBE_COLUMNS),
    ]
    for r in results:
        cells = []
        for _, key, fmt in PROBE_COLUMNS:
            if key is None:
                cells.append(f"{r['segments_misaligned']}/{r['segments_aligned']}")
            else:
                cells.append(fmt.format(r[key]) if r.get(key) is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
