"""GLUE by finetuning a checkpoint's LM with a classification head: the paper's check that PII and
toxicity objectives keep the model's language understanding.

    python scripts/glue.py --checkpoint runs/toxicity_mle --data_dir data/glue --tasks cola,sst2 \
        --epochs 3 --lr 2e-5 --batch_size 32 --out reports/glue/toxicity_mle

The classifier is the LM's transformer body (`harness.model.backbone`) and a linear head on the
hidden state of the last non-pad token, as GPT2ForSequenceClassification does, for any causal LM
the harness builds. Each task starts from the checkpoint's weights again. An example reads
`BOS text_a EOS text_b EOS` (EOS also pads, on the right), cut longest-first to `max_length`;
no control token is added (the head is trained on the model's plain-text reading).

Finetuning is a plain torch loop in one process (AdamW, linear warmup over 6% of the steps then
linear decay, gradient clip 1.0; bf16 autocast on a GPU): GLUE is small next to pretraining
(the largest task, QQP, is 364k short pairs), so a launcher would only add start-up time.
The validation split is scored once, after the last epoch (no selection on it).
`out/glue.json` is rewritten atomically after every task (`complete` turns true at the end).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.atomic import atomic_write_text
from harness.checkpoints.inference import load_checkpoint_model, resolve_checkpoint
from harness.downstream.glue_data import (
    GlueSplit,
    GlueTask,
    check_data,
    parse_tasks,
    read_task,
    task_metrics,
    task_score,
)
from harness.downstream.settings import GlueSettings
from harness.evaluation.sampling import max_positions
from harness.model import backbone

log = logging.getLogger(__name__)


class SequenceClassifier(nn.Module):
    """A causal LM's body and a linear head on the last non-pad token's hidden state."""

    def __init__(self, lm: nn.Module, num_labels: int) -> None:

        super().__init__()
        self.body = backbone(lm)
        self.head = nn.Linear(lm.config.hidden_size, num_labels)
        nn.init.normal_(self.head.weight, std=0.02)  # GPT-2's initializer_range
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits (batch, num_labels) of right-padded sequences."""
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(dim=-1) - 1
        return self.head(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])


def _fit(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Cut the longer of two token lists first until both fit `budget` tokens together."""
    if len(a) + len(b) <= budget:
        return a, b
    keep_b = min(len(b), max(budget // 2, budget - len(a)))
    return a[: budget - keep_b], b[:keep_b]


def encode(tokenizer: Any, split: GlueSplit, max_length: int) -> list[list[int]]:
    """Token ids `BOS a EOS [b EOS]` of each example, at most `max_length` tokens."""
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    first = tokenizer(split.text_a, add_special_tokens=False).input_ids
    if split.text_b is None:
        return [[bos, *a[: max_length - 2], eos] for a in first]
    second = tokenizer(split.text_b, add_special_tokens=False).input_ids
    out = []
    for a, b in zip(first, second, strict=True):
        a, b = _fit(a, b, max_length - 3)
        out.append([bos, *a, eos, *b, eos])
    return out


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of sequences right-padded with `pad_id`."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
    return nn.functional.cross_entropy(logits.float(), labels.long())


def finetune(
    model: SequenceClassifier,
    seqs: list[list[int]],
    labels: list[float],
    settings: GlueSettings,
    pad_id: int,
    seed: int,
) -> dict[str, float]:
    """Train the classifier in place for `settings.epochs`; returns steps and the last losses."""
    device = next(model.parameters()).device
    regression = model.head.out_features == 1
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]  # biases, LayerNorms
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lr,
    )
    steps = settings.epochs * math.ceil(len(seqs) / settings.batch_size)
    warmup = max(1, int(settings.warmup_ratio * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    order = torch.Generator().manual_seed(seed)
    target = torch.tensor(labels)
    losses: list[float] = []
    model.train()
    for _ in range(settings.epochs):
        for batch in torch.randperm(len(seqs), generator=order).split(settings.batch_size):
            ids, mask = pad_batch([seqs[i] for i in batch], pad_id)
            with _autocast(device):
                logits = model(ids.to(device), mask.to(device))
            loss = _loss(logits, target[batch].to(device), regression)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
    tail = losses[-max(1, len(losses) // 10) :]
    return {"steps": len(losses), "train_loss_last": float(np.mean(tail))}


@torch.no_grad()
def predict(
    model: SequenceClassifier, seqs: list[list[int]], batch_size: int, pad_id: int
) -> np.ndarray:
    """Class ids (or STS-B scores) of the sequences, in order."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(seqs), batch_size):
        ids, mask = pad_batch(seqs[start : start + batch_size], pad_id)
        with _autocast(device):
            logits = model(ids.to(device), mask.to(device)).float()
        out.append(logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(dim=-1))
    return torch.cat(out).cpu().numpy()


def run_task(
    lm: nn.Module,
    tokenizer: Any,
    task: GlueTask,
    data_dir: str | Path,
    settings: GlueSettings,
    seed: int,
) -> dict[str, Any]:
    """Finetune a copy of `lm` on one task and score its validation split."""

    start = time.monotonic()
    train, valid = read_task(data_dir, task)
    train, valid = train.head(settings.limit_train), valid.head(settings.limit_eval)
    max_length = min(settings.max_length, max_positions(lm) or settings.max_length)
    torch.manual_seed(seed)  # the head's initial weights and dropout
    model = SequenceClassifier(copy.deepcopy(lm), task.num_labels).to(next(lm.parameters()).device)
    pad = tokenizer.eos_token_id
    trained = finetune(
        model, encode(tokenizer, train, max_length), train.labels, settings, pad, seed
    )
    pred = predict(model, encode(tokenizer, valid, max_length), 2 * settings.batch_size, pad)
    metrics = task_metrics(task, pred, np.asarray(valid.labels))
    return {
        "metrics": metrics,
        "score": task_score(metrics),
        "train_examples": len(train),
        "eval_examples": len(valid),
        "eval_split": task.validation_split,
        "max_length": max_length,
        **trained,
        "seconds": round(time.monotonic() - start, 2),
    }


def write_glue_json(out: Path, summary: dict[str, Any]) -> Path:
    """`out/glue.json`, atomically."""
    path = Path(out) / "glue.json"
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return path


def run_glue(
    checkpoint: str | Path, data_dir: str | Path, settings: GlueSettings, out: str | Path
) -> dict[str, Any]:
    """Finetune and score every task of `settings` (data checked before the model is loaded)."""

    tasks = parse_tasks(settings.tasks)
    check_data(data_dir, tasks)
    root, tag = resolve_checkpoint(checkpoint)
    loaded = load_checkpoint_model(root, tag)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lm = loaded.model.lm.to(device)
    seed = settings.seed if settings.seed is not None else loaded.cfg.run.seed
    summary: dict[str, Any] = {
        "source": {
            "checkpoint": str(root / tag),
            "run": loaded.cfg.run.name,
            "step": loaded.step,
            "objective": loaded.cfg.objective.name,
        },
        "settings": {
            **{k: v for k, v in vars(settings).items() if k != "tasks"},
            "tasks": [t.name for t in tasks],
            "seed": seed,
        },
        "tasks": {},
        "complete": False,
    }
    for task in tasks:
        log.info("GLUE %s: finetuning", task.name)
        summary["tasks"][task.name] = result = run_task(
            lm, loaded.tokenizer, task, data_dir, settings, seed
        )
        log.info("GLUE %s: %s (%.1f s)", task.name, result["metrics"], result["seconds"])
        scores = [t["score"] for t in summary["tasks"].values()]
        summary["average"] = float(np.mean(scores))
        summary["complete"] = len(scores) == len(tasks)
        write_glue_json(Path(out), summary)
    return summary
