"""Derive the DeepSpeed config from the run config: one source of truth.

A file in `ds_configs/` holds only what the run config does not say (ZeRO stage, bucket sizes,
offload). Batch sizes, precision, optimizer, scheduler and clipping are written here from the
run config; a file or override that sets one of them to another value is an error naming the key.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from harness.config import Config, ConfigError, gradient_accumulation_steps, total_steps

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_ds_config_path(name: str) -> Path:
    """Find a DeepSpeed JSON by path, relative to the working directory or to the project root."""
    for candidate in (Path(name), PROJECT_ROOT / name, PROJECT_ROOT / "ds_configs" / name):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"deepspeed.config: file not found: {name} "
        f"(looked in the working directory and {PROJECT_ROOT / 'ds_configs'})"
    )


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `over` into a copy of `base`."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def warmup_steps(cfg: Config) -> int:
    """Warmup steps as transformers computes them: ceil(warmup_ratio * total steps), at least 1."""
    return max(1, math.ceil(cfg.train.warmup_ratio * total_steps(cfg)))


def _owned_values(cfg: Config, world_size: int) -> dict[str, tuple[Any, str]]:
    """Dotted DeepSpeed key -> (value the run config gives, the run-config key it comes from)."""
    t = cfg.train
    steps = total_steps(cfg)
    owned: dict[str, tuple[Any, str]] = {
        "train_batch_size": (t.global_batch_size, "train.global_batch_size"),
        "train_micro_batch_size_per_gpu": (t.micro_batch_size, "train.micro_batch_size"),
        "gradient_accumulation_steps": (
            gradient_accumulation_steps(t, world_size),
            "train.global_batch_size / (train.micro_batch_size x world size)",
        ),
        "gradient_clipping": (t.grad_clip, "train.grad_clip"),
        "bf16.enabled": (t.precision == "bf16", f"train.precision={t.precision!r}"),
        "fp16.enabled": (t.precision == "fp16", f"train.precision={t.precision!r}"),
        "optimizer.type": ("AdamW", "the harness (AdamW)"),
        "optimizer.params.lr": (t.lr, "train.lr"),
        "optimizer.params.betas": (list(t.adam_betas), "train.adam_betas"),
        "optimizer.params.eps": (t.adam_eps, "train.adam_eps"),
        "optimizer.params.weight_decay": (t.weight_decay, "train.weight_decay"),
        "scheduler.params.total_num_steps": (steps, "train.max_steps / train.max_tokens"),
        "scheduler.params.warmup_num_steps": (warmup_steps(cfg), "train.warmup_ratio"),
        "scheduler.params.warmup_type": ("linear", "the harness (linear warmup)"),
    }
    if t.lr_decay == "linear":
        owned["scheduler.type"] = ("WarmupDecayLR", "train.lr_decay")
        owned["scheduler.params.warmup_min_lr"] = (0.0, "the harness (warmup from 0)")
        owned["scheduler.params.warmup_max_lr"] = (t.lr, "train.lr")
    else:
        owned["scheduler.type"] = ("WarmupCosineLR", "train.lr_decay")
        owned["scheduler.params.warmup_min_ratio"] = (0.0, "the harness (warmup from 0)")
        owned["scheduler.params.cos_min_ratio"] = (t.min_lr_ratio, "train.min_lr_ratio")
    return owned


def _get(d: dict[str, Any], dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = d
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def build_ds_config(cfg: Config, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config for this run and world size; ConfigError on any contradiction."""
    path = resolve_ds_config_path(cfg.deepspeed.config)
    try:
        user = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"deepspeed.config: {path} is not valid JSON: {err}") from None
    user = deep_merge(user, cfg.deepspeed.overrides)
    owned = _owned_values(cfg, world_size)
    errors = []
    for key, (value, source) in owned.items():
        given = _get(user, key)
        if given is _MISSING or given == "auto" or _same(given, value):
            continue
        errors.append(
            f"deepspeed: {key}={given!r} (from {path.name} or deepspeed.overrides) contradicts "
            f"{source} (which gives {value!r}); remove it from the DeepSpeed config: the run config is the source of truth"
        )
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    ds = copy.deepcopy(user)
    # A scheduler type chosen by the run config replaces any params of another type in the file.
    if (
        _get(ds, "scheduler.type") is not _MISSING
        and ds["scheduler"]["type"] != owned["scheduler.type"][0]
    ):
        ds.pop("scheduler")
    for key, (value, _) in owned.items():
        _set(ds, key, value)
    stage = _get(ds, "zero_optimization.stage")
    stage = 0 if stage is _MISSING else int(stage)
    offload = _get(ds, "zero_optimization.offload_optimizer.device")
    if offload in (_MISSING, None, "none"):
        # torch.optim.AdamW: no JIT-built fused op needed, works on CPU and GPU alike.
        ds["optimizer"]["params"].setdefault("torch_adam", True)
    if not 0 <= stage <= 3:
        raise ConfigError(f"deepspeed: zero_optimization.stage must be 0-3, got {stage}")
    if cfg.train.precision == "fp16":
        ds["fp16"].setdefault("initial_scale_power", 16)
    ds.setdefault("steps_per_print", 10**9)  # the harness logs; silence DeepSpeed's own prints
    ds.setdefault("wall_clock_breakdown", False)
    return ds
