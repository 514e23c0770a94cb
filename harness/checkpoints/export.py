"""Hugging Face export: a folder that plain `transformers` loads, written atomically.

    python scripts/export.py --checkpoint runs/pep8_mle            # -> runs/pep8_mle/hf/

The folder holds `model.safetensors` + `config.json` + `generation_config.json` (the LM alone),
the tokenizer, and a model card `README.md` with the objective, data and hyperparameters of the
resolved run config. An AWR value head is not part of a causal LM: it is saved beside the model as
`value_head.safetensors` (key `weight`, V(h) = -sigmoid(weight . h)). Weights are the consolidated
fp32 weights of the checkpoint (ZeRO-3 partitions gathered), so export works for every stage.

The folder is written under a temporary name and renamed into place; an existing export is
swapped out by rename and deleted only after the new one is in place.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from transformers.utils import logging as hf_logging

from harness import distributed as dist
from harness.atomic import atomic_write_dir
from harness.checkpoints.inference import load_checkpoint_model, resolve_checkpoint
from harness.checkpoints.layout import checkpoints_dir, eval_dir, hf_dir, step_of
from harness.checkpoints.state import RunState
from harness.config import Config, config_to_yaml
from harness.control_tokens import CONTROL_TOKENS
from harness.objectives import objective_class
from harness.tasks import resolve_task

log = logging.getLogger(__name__)

VALUE_HEAD_FILE = "value_head.safetensors"


def _param_count(lm: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in lm.parameters()}.values())


def _usage(cfg: Config) -> list[str]:
    """The model card's usage snippet (conditional models are prompted behind <|aligned|>)."""
    usage = [
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained('PATH')",
        "tokenizer = AutoTokenizer.from_pretrained('PATH')",
    ]
    if cfg.objective.name == "conditional":
        usage += [
            "# Conditional training: prompt with <|aligned|>; control tokens are banned as in",
            "# the paper's evaluation (bad_words_ids in generation_config.json).",
            f"ids = tokenizer(tokenizer.eos_token + '{CONTROL_TOKENS[0]}', return_tensors='pt').input_ids",
        ]
    else:
        usage.append("ids = tokenizer(tokenizer.eos_token, return_tensors='pt').input_ids")
    usage += ["out = model.generate(ids)  # sampling settings: generation_config.json", "```"]
    return usage


def model_card(
    cfg: Config,
    lm: nn.Module,
    state: RunState | None,
    has_value_head: bool,
    eval_metrics: dict[str, Any] | None = None,
) -> str:
    """README.md of the export: objective, data, hyperparameters, usage, and the resolved config."""
    t, d = cfg.train, cfg.data
    corpus = (
        d.corpus if isinstance(d.corpus, str) else f"{len(d.corpus)} sources, first {d.corpus[0]}"
    )
    rows = [
        ("objective", objective_class(cfg.objective.name).describe(cfg.objective)),
        ("task (scorer)", f"{d.scorer} {d.scorer_options or ''}".strip()),
        ("corpus", f"{corpus} (max_documents {d.max_documents})"),
        ("tokenizer", d.tokenizer or f"byte-level BPE trained on the corpus, vocab {d.vocab_size}"),
        (
            "model",
            f"{cfg.model.arch}, {cfg.model.n_layer} layers, {cfg.model.n_head} heads, "
            f"hidden {cfg.model.n_embd}, {_param_count(lm) / 1e6:.2f}M parameters",
        ),
        (
            "trained",
            f"{state.step if state else '?'} steps, {state.tokens if state else '?'} tokens, "
            f"seq_len {d.seq_len}, global batch {t.global_batch_size}",
        ),
        (
            "optimizer",
            f"AdamW lr {t.lr}, {t.lr_decay} decay, warmup {t.warmup_ratio}, "
            f"weight decay {t.weight_decay}, grad clip {t.grad_clip}, {t.precision}",
        ),
        ("seed", str(cfg.run.seed)),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    parts = [
        "---",
        "library_name: transformers",
        f"tags: [pretraining-with-human-feedback, phf-harness, {cfg.objective.name}, {d.scorer}]",
        "---",
        f"# {cfg.run.name}",
        "",
        "A causal language model pretrained with human preferences (Korbak et al., ICML 2023, "
        "arXiv 2302.08582) by phf-harness: a scorer marks how misaligned each piece of training "
        "text is and the objective turns those scores into the training signal.",
        "",
        "| | |",
        "|---|---|",
        table,
        "",
        "## Usage",
        "",
        *_usage(cfg),
    ]
    if has_value_head:
        parts += [
            "",
            "## Value head",
            "",
            f"The AWR value head is not part of the causal LM; it is in `{VALUE_HEAD_FILE}` (key "
            "`weight`, shape [1, hidden]): V(h) = -sigmoid(weight . h) on the last hidden states.",
        ]
    if eval_metrics:
        shown = {k: v for k, v in eval_metrics.items() if isinstance(v, (int, float))}
        parts += ["", "## Evaluation at this step", "", "| metric | value |", "|---|---|"]
        parts += [f"| {k} | {v:.6g} |" for k, v in shown.items()]
    parts += ["", "## Resolved run config", "", "```yaml", config_to_yaml(cfg).rstrip(), "```", ""]
    return "\n".join(parts)


def _generation_config(lm: nn.Module, cfg: Config, tokenizer: Any) -> None:
    gen = lm.generation_config
    gen.do_sample = True
    gen.temperature = cfg.eval.temperature
    gen.top_p = cfg.eval.top_p
    gen.max_new_tokens = cfg.eval.max_new_tokens
    gen.pad_token_id = tokenizer.eos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    if cfg.objective.name == "conditional":
        # The tokens evaluation bans for the run's task (pep8: only <|misaligned|>, as the
        # original's pep8 configs; the prose tasks both), not always both.
        ev = cfg.eval
        banned = resolve_task(cfg.data).banned_token_ids(
            tokenizer, True, ev.banned_control_tokens, ev.control_token
        )
        gen.bad_words_ids = [[i] for i in banned]


def export_hf(
    lm: nn.Module,
    tokenizer: Any,
    cfg: Config,
    out_dir: str | Path,
    state: RunState | None = None,
    value_head: nn.Module | None = None,
    eval_metrics: dict[str, Any] | None = None,
) -> Path:
    """Write `out_dir` (weights, config, tokenizer, model card, value head) atomically."""

    _generation_config(lm, cfg, tokenizer)
    card = model_card(cfg, lm, state, value_head is not None, eval_metrics)
    keep = ("step", "tokens", "world_size", "corpus_fingerprint")  # where the weights came from
    provenance = {k: getattr(state, k) for k in keep} if state is not None else {}

    def write(tmp: Path) -> None:

        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a bar for one shard: noise in the run's log
        try:
            lm.save_pretrained(str(tmp), safe_serialization=True)
        finally:
            if shown:
                hf_logging.enable_progress_bar()
        tokenizer.save_pretrained(str(tmp))
        if value_head is not None:
            head = {
                k: v.detach().float().cpu().contiguous() for k, v in value_head.state_dict().items()
            }
            save_file(head, str(tmp / VALUE_HEAD_FILE), metadata={"format": "pt"})
        (tmp / "README.md").write_text(card)
        (tmp / "phf_run.json").write_text(json.dumps(provenance, indent=2))

    out_dir = Path(out_dir)
    atomic_write_dir(out_dir, write)
    return out_dir


def _eval_metrics_for(run_dir: Path, tag: str) -> dict[str, Any] | None:
    path = eval_dir(run_dir, step_of(tag)) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path | None = None) -> Path:
    """Export a checkpoint (run folder, checkpoints/ or step-* folder) to `out_dir` (default `<run>/hf`)."""
    root, tag = resolve_checkpoint(checkpoint)
    loaded = load_checkpoint_model(root, tag)
    out = Path(out_dir) if out_dir is not None else hf_dir(loaded.run_dir)
    with torch.no_grad():
        export_hf(
            loaded.model.lm,
            loaded.tokenizer,
            loaded.cfg,
            out,
            state=loaded.state,
            value_head=loaded.model.value_head,
            eval_metrics=_eval_metrics_for(loaded.run_dir, tag),
        )
    log.info("exported %s/%s to %s", root, tag, out)
    return out


def export_after_training(cfg: Config) -> Path | None:
    """End of training (all ranks call it after the final checkpoint): rank 0 exports it to `<output_dir>/hf`."""
    out = None
    if cfg.eval.export_hf and dist.is_main():
        log.info("exporting the last checkpoint to %s", hf_dir(cfg.run.output_dir))
        out = export_checkpoint(checkpoints_dir(cfg.run.output_dir))
    dist.barrier()
    return out
