"""Load a harness checkpoint as a plain fp32 model, whatever the ZeRO stage it was saved with.

    root, tag = resolve_checkpoint("runs/pep8_mle")        # a run folder, checkpoints/ or step-XXXXXXXX/
    loaded = load_checkpoint_model(root, tag)              # LossModel (eval mode, fp32, CPU) + tokenizer

Weights come from DeepSpeed's `get_fp32_state_dict_from_zero_checkpoint`, which consolidates the
fp32 master weights of every rank for ZeRO 1-3 (keys `lm.*` and `value_head.*` of our LossModel).
A stage-0 checkpoint has no ZeRO shards; its `mp_rank_00_model_states.pt` holds the module itself.
GPT-2 ties lm_head to the input embeddings, so `lm.lm_head.weight` may be absent: it is re-tied.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.checkpoints.layout import TAG_RE, checkpoints_dir
from harness.checkpoints.state import STATE_FILE, RunState
from harness.checkpoints.training import find_resumable, read_latest, verify_checkpoint
from harness.config import Config
from harness.model import LossModel, build_model
from harness.objectives import build_objective
from harness.run_config import parse_config
from harness.tokenizer import load_tokenizer


@dataclass
class LoadedCheckpoint:
    """A checkpoint as evaluation and export need it."""

    cfg: Config
    state: RunState  # harness_state.json
    root: Path  # <output_dir>/checkpoints
    tag: str  # step-XXXXXXXX
    model: nn.Module  # harness.model.LossModel, eval mode
    tokenizer: Any

    @property
    def run_dir(self) -> Path:
        """The run folder the checkpoint lives in (`<output_dir>`)."""
        return self.root.parent

    @property
    def step(self) -> int:
        """Optimizer step of the checkpoint."""
        return self.state.step


def resolve_checkpoint(path: str | Path) -> tuple[Path, str]:
    """(checkpoints root, tag) for a run folder, its `checkpoints/` folder, or one `step-*` folder.

    The same verified resolution as resume: a run folder gives the newest checkpoint whose files
    all check out (`find_resumable`); a given `step-*` folder must check out itself.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file() or TAG_RE.match(path.name):
        problem = verify_checkpoint(path)
        if problem is not None:
            raise FileNotFoundError(
                f"--checkpoint {path}: incomplete or corrupt checkpoint: {problem}"
            )
        return path.parent, path.name
    for root in (checkpoints_dir(path), path):
        if read_latest(root) is not None:
            tag = find_resumable(root)
            if tag is None:
                raise FileNotFoundError(
                    f"{root}: no complete checkpoint (each one failed verification: see the warnings)"
                )
            return root, tag
    raise FileNotFoundError(
        f"--checkpoint {path}: not a run folder (with checkpoints/latest), a checkpoints folder "
        "(with latest) or a checkpoint folder (with harness_state.json)"
    )


def read_state(root: Path, tag: str) -> RunState:
    """The run state of a checkpoint (step, tokens, resolved config YAML, ...)."""
    return RunState.read(Path(root) / tag)


def config_from_checkpoint(state: RunState, argv: list[str] | None = None) -> Config:
    """The run config: `argv` as given when it has `--config`, else the checkpoint's config plus `argv`.

    Validated without a world size: evaluation does not run the batch arithmetic.
    """
    argv = list(argv or [])
    if "--config" in argv:
        return parse_config(argv, prog="evaluate.py")
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "config.yaml"
        saved.write_text(state.config)
        return parse_config(["--config", str(saved), *argv], prog="evaluate.py")


def consolidated_state_dict(root: Path, tag: str) -> dict[str, torch.Tensor]:
    """fp32 weights of the whole LossModel (`lm.*`, `value_head.*`) from any ZeRO stage."""
    folder = Path(root) / tag
    if not any(folder.glob("zero_pp_rank_*_model_states.pt")) and not any(
        folder.glob("*zero_pp_rank_*optim_states.pt")
    ):
        plain = folder / "mp_rank_00_model_states.pt"
        if not plain.is_file():
            raise FileNotFoundError(
                f"{folder}: no DeepSpeed model states (ZeRO shards or {plain.name})"
            )
        module = torch.load(plain, map_location="cpu", weights_only=False)["module"]
        return {k: v.float() if v.is_floating_point() else v for k, v in module.items()}

    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(root), tag=tag)


def load_lm_weights(lm: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load `lm.*`-stripped weights into a causal LM; only tied output weights may be missing."""
    emb = lm.get_input_embeddings().weight
    emb_name = next(n for n, p in lm.named_parameters() if p is emb)
    if emb_name in weights and weights[emb_name].shape[0] != emb.shape[0]:
        lm.resize_token_embeddings(weights[emb_name].shape[0])
    missing, unexpected = lm.load_state_dict(weights, strict=False)
    tied = {
        n
        for n, p in lm.named_parameters(remove_duplicate=False)
        if p is lm.get_input_embeddings().weight
    }
    bad_missing = set(missing) - tied
    if bad_missing or unexpected:
        raise RuntimeError(
            f"checkpoint weights do not fit the model built from the config: "
            f"missing {sorted(bad_missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )


def build_loss_model(cfg: Config, tokenizer: Any, weights: dict[str, torch.Tensor]) -> nn.Module:
    """LossModel (LM + objective + value head) with the given consolidated weights, eval mode."""
    objective = build_objective(cfg.objective, cfg.run.seed)
    lm = build_model(
        cfg.model, len(tokenizer), cfg.data.seq_len, cfg.run.seed, tokenizer.eos_token_id
    )
    load_lm_weights(
        lm, {k.removeprefix("lm."): v for k, v in weights.items() if k.startswith("lm.")}
    )
    head = objective.build_value_head(lm.config.hidden_size)
    if head is not None:
        head_weights = {
            k.removeprefix("value_head."): v
            for k, v in weights.items()
            if k.startswith("value_head.")
        }
        head.load_state_dict(head_weights)
    return LossModel(lm, objective, head).eval()


def load_checkpoint_model(root: Path, tag: str, cfg: Config | None = None) -> LoadedCheckpoint:
    """Config (the checkpoint's unless given), tokenizer and fp32 LossModel of a checkpoint."""
    root = Path(root)
    state = read_state(root, tag)
    cfg = cfg or config_from_checkpoint(state)
    objective = build_objective(cfg.objective, cfg.run.seed)
    tokenizer = load_tokenizer(root / tag / "tokenizer", bool(objective.control_tokens))
    model = build_loss_model(cfg, tokenizer, consolidated_state_dict(root, tag))
    return LoadedCheckpoint(cfg, state, root, tag, model, tokenizer)
