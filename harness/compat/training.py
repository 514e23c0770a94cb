"""Translate the original's `training` section (Hugging Face `TrainingArguments`) into run/train/checkpoint/logging.

Absent keys take the Trainer's defaults (`HF_DEFAULTS`), which is what the original trained with,
not the harness's own defaults. `effective_batch_size` is the global batch (the original derived
gradient accumulation from it, as the harness does); `num_tokens` is the token budget (the
original computed `max_steps = num_tokens // (effective_batch_size * 1024)`, the harness
`ceil(max_tokens / (global_batch_size * seq_len))`: at most one step more).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from harness.compat.original import OriginalConfig

# transformers.TrainingArguments defaults: what the original trained with when a key was absent.
HF_DEFAULTS = {
    "learning_rate": 5e-5,
    "per_device_train_batch_size": 8,
    "weight_decay": 0.0,
    "warmup_ratio": 0.0,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "max_grad_norm": 1.0,
    "seed": 42,
    "logging_steps": 500,
    "save_steps": 500,
}
T = "training"


def _hf(o: OriginalConfig, key: str, kind: str = "number") -> Any:
    return o.value(f"{T}.{key}", kind, HF_DEFAULTS[key])


def _budget(o: OriginalConfig, train: dict[str, Any], seq_len: int) -> None:
    tokens = o.value(f"{T}.num_tokens", "number")
    steps = o.value(f"{T}.max_steps", "integer", default=-1)
    if tokens:
        train["max_tokens"] = int(tokens)
        if steps > 0:
            o.note(f"{T}.max_steps", "num_tokens wins over max_steps, as in the original")
    elif steps > 0:
        train["max_steps"] = steps
    else:
        o.errors.append(f"{T}.num_tokens (or {T}.max_steps): required, the training budget")
    warmup_steps = o.value(f"{T}.warmup_steps", "integer", default=0)
    batch = train.get("global_batch_size")
    if warmup_steps and batch:  # the Trainer lets warmup_steps win over warmup_ratio
        total = train.get("max_steps") or math.ceil(train.get("max_tokens", 0) / (batch * seq_len))
        train["warmup_ratio"] = warmup_steps / max(1, total)
        o.note(f"{T}.warmup_steps", f"converted to train.warmup_ratio = {warmup_steps}/{total}")


def train_section(o: OriginalConfig, seq_len: int) -> dict[str, Any]:
    """The native `train` section."""
    train: dict[str, Any] = {
        "global_batch_size": o.value(f"{T}.effective_batch_size", "integer", required=True),
        "micro_batch_size": _hf(o, "per_device_train_batch_size", "integer"),
        "lr": _hf(o, "learning_rate"),
        "warmup_ratio": _hf(o, "warmup_ratio"),
        "weight_decay": _hf(o, "weight_decay"),
        "adam_betas": [_hf(o, "adam_beta1"), _hf(o, "adam_beta2")],
        "adam_eps": _hf(o, "adam_epsilon"),
        "grad_clip": _hf(o, "max_grad_norm"),
    }
    if train["global_batch_size"] is None:
        del train["global_batch_size"]
    if o.take(f"{T}.gradient_accumulation_steps") is not None:
        o.note(
            f"{T}.gradient_accumulation_steps",
            "derived from effective_batch_size, as the original did",
        )
    _budget(o, train, seq_len)
    fp16, bf16 = o.value(f"{T}.fp16", "bool", False), o.value(f"{T}.bf16", "bool", False)
    if fp16 and bf16:
        o.errors.append(f"{T}.fp16 and {T}.bf16: choose one")
    train["precision"] = "fp16" if fp16 else "bf16" if bf16 else "fp32"
    scheduler = o.value(f"{T}.lr_scheduler_type", "str", default="linear")
    if scheduler not in ("linear", "cosine"):
        o.error(
            f"{T}.lr_scheduler_type",
            f"only linear and cosine decay are supported here, got {scheduler!r}",
        )
    train["lr_decay"] = scheduler if scheduler == "cosine" else "linear"
    optim = o.value(f"{T}.optim", "str", default="adamw_hf")
    if optim not in ("adamw_hf", "adamw_torch", "adamw_torch_fused"):
        o.error(f"{T}.optim", f"the harness trains with AdamW only, got {optim!r}")
    for key in ("evaluation_strategy", "eval_strategy"):
        if o.value(f"{T}.{key}", "str", default="no") != "no":
            o.error(
                f"{T}.{key}",
                "the original never gave the Trainer an eval set; here held-out loss and samples are "
                "evaluated every generation.every_n_steps (eval.every_steps): set it to 'no'",
            )
    seen = o.value(f"{T}.tokens_already_seen", "integer", default=0)
    if seen:  # finetuning: the budget is num_tokens minus these; logged tokens start here
        train["tokens_already_seen"] = seen
    if o.value(f"{T}.gradient_checkpointing", "bool", default=False):
        train["gradient_checkpointing"] = (
            True  # moved to model.gradient_checkpointing by the caller
        )
    return train


def wandb_logged_in() -> bool:
    """Whether wandb can log online: WANDB_API_KEY, or the netrc entry that `wandb login` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


# Every translated run's name starts with this, so that its folder (`run.output_dir` holds
# `{name}`, e.g. `runs/quickstart/{name}` of configs/quickstart.yaml) is never a native run's.
PREFIX = "original-"
_GENERIC_FOLDERS = ("", ".", "configs", "original")


def original_run_name(task_file: str, method_file: str, given: str | None = None) -> str:
    """`run.name` of a translated pair: `original-<task>-<method>`, or `original-<given name>`.

    configs/original/pep8/awr.yml (with pretrain.yml) -> original-pep8-awr, never our native
    configs' `pep8_awr`; a task file other than pretrain.yml is named too (toxicity's
    finetune.yml with filtering.yml -> original-toxicity-filtering-finetune), so no two shipped
    pairs share a folder. A `--run_name`/`training.run_name` gets the prefix as well."""
    if given:
        return given if given.startswith(PREFIX) else PREFIX + given
    task, method = Path(task_file), Path(method_file)
    parts = [method.parent.name] if method.parent.name not in _GENERIC_FOLDERS else []
    parts.append(method.stem)
    if task.stem != "pretrain" and task.stem not in method.stem.split("_"):
        parts.append(task.stem)
    return PREFIX + "-".join(parts).replace("_", "-")


def run_checkpoint_logging(o: OriginalConfig, run_name: str | None) -> dict[str, dict[str, Any]]:
    """The native `run`, `checkpoint` and `logging` sections."""
    name = original_run_name(
        o.task_file, o.method_file, run_name or o.value(f"{T}.run_name", "str")
    )
    run: dict[str, Any] = {"name": name, "seed": _hf(o, "seed", "integer")}
    output_dir = o.value(f"{T}.output_dir", "str")
    if output_dir is not None:
        # The paper's task files give all six methods one output_dir; with automatic resume each
        # run needs a folder of its own, so runs live under it by name.
        run["output_dir"] = f"{output_dir.rstrip('/')}/{{name}}"
        o.note(
            f"{T}.output_dir", f"each run gets its own folder: run.output_dir = {run['output_dir']}"
        )
    strategy = o.value(f"{T}.save_strategy", "str", default="steps")
    if strategy not in ("steps", "no"):
        o.error(f"{T}.save_strategy", f"only 'steps' or 'no' are supported here, got {strategy!r}")
    checkpoint: dict[str, Any] = {"every_steps": _hf(o, "save_steps", "integer")}
    if strategy == "no":
        checkpoint["every_steps"] = 0
    keep = o.value(f"{T}.save_total_limit", "integer")
    if keep:
        checkpoint["keep_last"] = keep
    logging: dict[str, Any] = {
        "every_steps": _hf(o, "logging_steps", "integer"),
        "wandb": "online" if wandb_logged_in() else "offline",
    }
    if not wandb_logged_in():
        o.notes.append(
            "logging.wandb: offline (the original logged online): no WANDB_API_KEY, no `wandb login`"
        )
    if os.environ.get("WANDB_PROJECT"):
        logging["wandb_project"] = os.environ["WANDB_PROJECT"]
    disable_tqdm = o.value(f"{T}.disable_tqdm", "bool")
    if disable_tqdm is not None:
        logging["progress_bar"] = not disable_tqdm
    return {"run": run, "checkpoint": checkpoint, "logging": logging}
