"""Build the causal LM and wrap it so that its forward returns the loss, never the logits.

The wrapper runs the backbone to hidden states and hands them, with the output-embedding weight,
to the fused token loss (`phf_kernels.fused_linear_token_loss`), so the (tokens x vocab) logits are
never materialised. Under ZeRO-3 that weight is partitioned and, in GPT-2, tied to the input
embeddings: it is registered as an external parameter of the wrapper so DeepSpeed gathers it for
our forward (docs/design.md, "The token loss").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from harness.config import Config, ModelConfig
from harness.tokenizer import load_tokenizer

log = logging.getLogger(__name__)


def pretrained_rows(mcfg: ModelConfig) -> int:
    """Embedding rows the pretrained `model.path` was trained with (0 when built from scratch)."""
    if mcfg.path is None or mcfg.from_scratch:
        return 0
    config_file = Path(mcfg.path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"model.path: {config_file} not found (a transformers model folder is needed)"
        )
    return int(json.loads(config_file.read_text())["vocab_size"])


def check_pretrained(cfg: Config, control_tokens: tuple[str, ...]) -> None:
    """A pretrained `model.path` must take the run's tokenizer and sequence length; ValueError
    naming the keys and the numbers otherwise (cheap: the model's config and the tokenizer only)."""
    rows = pretrained_rows(cfg.model)
    if rows == 0:
        return
    if cfg.data.tokenizer is None:
        hint = (
            f" (it has one: {cfg.model.path})"
            if (Path(cfg.model.path) / "tokenizer.json").is_file()
            else ""
        )
        raise ValueError(
            f"data.tokenizer: a pretrained model.path {cfg.model.path} needs the tokenizer it was "
            f"trained with{hint}; set data.tokenizer to it instead of training a new BPE"
        )
    vocab = load_tokenizer(cfg.data.tokenizer).get_vocab()
    base = len(vocab)
    if base > rows:
        raise ValueError(
            f"data.tokenizer {cfg.data.tokenizer} has {base} tokens but model.path {cfg.model.path} "
            f"has {rows} embedding rows: it is not the model's tokenizer"
        )
    config = json.loads((Path(cfg.model.path) / "config.json").read_text())
    positions = config.get("n_positions", config.get("max_position_embeddings"))
    if positions is not None and positions < cfg.data.seq_len:
        raise ValueError(
            f"data.seq_len {cfg.data.seq_len} exceeds model.path {cfg.model.path}'s "
            f"{positions} positions"
        )
    log.info(
        "finetuning %s (%d embedding rows; %d control tokens to add)",
        cfg.model.path,
        rows,
        sum(t not in vocab for t in control_tokens),
    )


def build_model(
    mcfg: ModelConfig, vocab_size: int, seq_len: int, seed: int, eos_token_id: int | None = None
) -> nn.Module:
    """A transformers causal LM, from scratch (seeded) or loaded from a local folder."""

    attention = {"attn_implementation": mcfg.resolved_attn_implementation()}
    if mcfg.path is not None and not mcfg.from_scratch:
        config_file = Path(mcfg.path) / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(
                f"model.path: {config_file} not found (a transformers model folder is needed)"
            )
        model = AutoModelForCausalLM.from_pretrained(mcfg.path, local_files_only=True, **attention)
        if model.get_input_embeddings().weight.shape[0] < vocab_size:
            model.resize_token_embeddings(vocab_size)
        return model
    if mcfg.path is not None:
        config = AutoConfig.from_pretrained(mcfg.path, local_files_only=True)
    else:
        kwargs: dict[str, Any] = {
            "vocab_size": vocab_size,
            "num_hidden_layers": mcfg.n_layer,
            "num_attention_heads": mcfg.n_head,
            "hidden_size": mcfg.n_embd,
        }
        if mcfg.arch == "gpt2":
            kwargs.update(
                n_positions=seq_len,
                resid_pdrop=mcfg.dropout,
                embd_pdrop=mcfg.dropout,
                attn_pdrop=mcfg.dropout,
            )
        if eos_token_id is not None:
            kwargs.update(bos_token_id=eos_token_id, eos_token_id=eos_token_id)
        kwargs.update(mcfg.config_kwargs)
        config = AutoConfig.for_model(mcfg.arch, **kwargs)
    config.vocab_size = vocab_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, **attention)
    return model


def backbone(lm: nn.Module) -> nn.Module:
    """The transformer body of a transformers causal LM (GPT2Model for GPT2LMHeadModel)."""
    body = getattr(lm, "base_model", None)
    if body is None or body is lm:
        raise ValueError(
            f"{type(lm).__name__}: cannot find the backbone (base_model) to get hidden states from"
        )
    return body


@dataclass
class ModelStats:
    """Sizes reported at start and used for MFU."""

    params_total: int
    params_embedding: int
    flops_per_token: float

    def describe(self) -> str:
        """One line for the log."""
        return (
            f"parameters: {self.params_total / 1e6:.2f}M total, "
            f"{(self.params_total - self.params_embedding) / 1e6:.2f}M non-embedding; "
            f"training FLOPs per token: {self.flops_per_token / 1e6:.1f}M"
        )


def model_stats(lm: nn.Module, seq_len: int) -> ModelStats:
    """Parameter count and training FLOPs/token = 6N + 12 L H T (Kaplan et al. 2020; PaLM appendix B).

    N counts non-embedding parameters plus the output projection (it is a matmul per token).
    """
    unique = {id(p): p for p in lm.parameters()}
    total = sum(_numel(p) for p in unique.values())
    emb = lm.get_input_embeddings().weight
    pos = getattr(backbone(lm), "wpe", None)
    emb_params = _numel(emb) + (_numel(pos.weight) if pos is not None else 0)
    cfg = lm.config
    n_layer = getattr(cfg, "num_hidden_layers", 0)
    hidden = getattr(cfg, "hidden_size", 0)
    matmul_params = total - emb_params + _numel(lm.get_output_embeddings().weight)
    flops = 6.0 * matmul_params + 12.0 * n_layer * hidden * seq_len
    return ModelStats(total, emb_params, flops)


def _numel(p: torch.Tensor) -> int:
    # Under ZeRO-3 a partitioned parameter is empty locally; ds_numel keeps the full size.
    return int(getattr(p, "ds_numel", p.numel()))


class LossModel(nn.Module):
    """Causal LM + objective; `forward(input_ids, scores)` returns (mean token loss, stats).

    `compile_backbone=True` runs the backbone through `torch.compile` in this forward (training
    and held-out loss, fixed [micro batch, seq_len] shapes); generation calls the LM itself and
    stays eager, since its growing sequence lengths would only recompile. The compiled wrapper is kept off the
    module tree, so parameter names, checkpoints and exports are those of the eager model.
    """

    def __init__(
        self,
        lm: nn.Module,
        objective: Any,
        value_head: nn.Module | None = None,
        compile_backbone: bool = False,
    ):
        super().__init__()
        self.lm = lm
        self.objective = objective
        self.value_head = value_head
        body = backbone(lm)
        self._body = (
            (torch.compile(body),) if compile_backbone else (body,)
        )  # a tuple: not a submodule
        out = lm.get_output_embeddings()
        if getattr(out, "bias", None) is not None:
            raise ValueError(
                f"{type(lm).__name__}: output layer with bias is not supported by the fused loss"
            )

        import deepspeed

        # Used outside its owning module's forward: let ZeRO-3 gather it for ours.
        deepspeed.zero.register_external_parameter(self, out.weight)

    def forward(
        self, input_ids: torch.Tensor, scores: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean loss over predicted tokens; the score of token t+1 weights the prediction at t."""
        hidden = self._body[0](input_ids=input_ids).last_hidden_state
        weight = self.lm.get_output_embeddings().weight
        if not self.training:
            # Held-out evaluation is plain LM loss, comparable across objectives.
            return self.objective.lm_loss(hidden, weight, input_ids), {}
        return self.objective.loss(hidden, weight, input_ids, scores, self.value_head)
