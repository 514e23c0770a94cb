"""Entry points of evaluation: a saved checkpoint (scripts/evaluate.py) or the model being trained.

    deepspeed --num_gpus 2 scripts/evaluate.py --checkpoint runs/pep8_mle [--eval.num_samples 4096]

For a checkpoint, every rank loads the consolidated fp32 model (no ZeRO at evaluation: the model
is replicated, the samples are sharded). During training, `evaluate_during_training` uses the
engine's own module, ZeRO-3 partitions included.

KL against a completions API (eval.api_kl_model, `harness.evaluation.api_kl`): during training an
unreachable or failing API skips eval/kl_api with a note in metrics.json; for a checkpoint the
evaluation fails with the API client's message (OpenAIError, exit status 2 in scripts/evaluate.py).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from harness import distributed as dist
from harness.checkpoints.inference import (
    build_loss_model,
    config_from_checkpoint,
    consolidated_state_dict,
    read_state,
    resolve_checkpoint,
)
from harness.checkpoints.layout import eval_dir
from harness.config import Config
from harness.data.packing import PackedBlocks
from harness.data.pipeline import prepare_data
from harness.evaluation.runner import EvalContext, evaluate_model, is_partitioned
from harness.objectives import build_objective
from harness.tokenizer import load_tokenizer, tokenizer_fingerprint

log = logging.getLogger(__name__)


def heldout_blocks(
    cfg: Config, tokenizer: Any, packed_dir: str | None, objective: Any, notes: list[str]
):
    """The held-out split in `objective.heldout_treatment()` (untreated unless the objective
    changes the text format), from the run's packed folder; packed again only if it is gone."""
    folder = packed_dir
    if not folder or not (Path(folder) / "meta.json").is_file():
        try:
            folder = prepare_data(cfg, objective).packed_dir
        except Exception as err:  # e.g. an hf: corpus offline; samples are still worth evaluating
            notes.append(f"eval/lm_loss skipped: data unavailable ({type(err).__name__}: {err})")
            return None
    meta = json.loads((Path(folder) / "meta.json").read_text())
    if meta.get("tokenizer_fingerprint") != tokenizer_fingerprint(tokenizer):
        notes.append(f"eval/lm_loss skipped: {folder} was packed with another tokenizer")
        return None
    return PackedBlocks(folder, "heldout")


def evaluate_checkpoint(
    checkpoint: str | Path,
    argv: list[str] | None = None,
    output_dir: str | Path | None = None,
) -> dict[str, float]:
    """Evaluate a checkpoint on every rank of the launch; rank 0 writes `<run>/eval/step-*/`.

    `argv` changes the checkpoint's config (`--eval.num_samples 64`) or replaces it (`--config`).
    """
    dist.init_distributed()
    root, tag = resolve_checkpoint(checkpoint)
    state = read_state(root, tag)
    cfg = config_from_checkpoint(state, argv)
    objective = build_objective(cfg.objective, cfg.run.seed)
    conditional = bool(objective.control_tokens)
    tokenizer = load_tokenizer(root / tag / "tokenizer", conditional)
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    model = build_loss_model(cfg, tokenizer, consolidated_state_dict(root, tag)).to(device)
    notes: list[str] = []
    heldout = heldout_blocks(cfg, tokenizer, state.packed_dir, objective, notes)
    ctx = EvalContext(
        cfg, model.lm, tokenizer, conditional, model, heldout, sync=False, notes=notes
    )
    out = eval_dir(output_dir if output_dir is not None else root.parent, state.step)
    return evaluate_model(ctx, out, state.step, state.tokens)


def evaluate_during_training(run: Any, step: int) -> dict[str, float]:
    """Evaluate the model being trained (all ranks call it); metrics on every rank, files on rank 0.

    `run` is `harness.engine.Run`: its engine's module is the LossModel (`.lm`, `.objective`).
    Returns `{}` when eval.scenarios is empty and there is no held-out split.
    """
    cfg: Config = run.cfg
    module = run.engine.module
    notes: list[str] = []
    heldout = run.data.heldout
    ctx = EvalContext(
        cfg,
        module.lm,
        run.data.tokenizer,
        bool(getattr(module.objective, "control_tokens", ())),
        run.engine,
        heldout,
        sync=is_partitioned(module) and dist.world_size() > 1,
        notes=notes,
        skip_unavailable_api=True,
    )
    was_training = module.training
    run.engine.eval()
    try:
        return evaluate_model(ctx, eval_dir(cfg.run.output_dir, step), step, run.tokens_seen)
    finally:
        if was_training:
            run.engine.train()
