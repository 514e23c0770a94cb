"""Typed run configuration: one dataclass per section, a docstring under every field.

    python scripts/train.py --config configs/pep8_mle.yaml --config configs/quickstart.yaml \
        --train.lr 3e-4 --print_config

`harness.run_config.parse_config` merges the YAML files in order, applies dotted overrides,
then `validate_config` collects every problem (each section's own, then the checks across
sections) and raises them together, each naming its key. This package imports neither torch nor
the parser, so data workers read configs cheaply.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import yaml

from harness.config.eval import EvalConfig
from harness.config.sections import (
    CheckpointConfig,
    ConfigError,
    DataConfig,
    DeepSpeedSection,
    LoggingConfig,
    ModelConfig,
    ObjectiveConfig,
    RunConfig,
    TrainConfig,
)

__all__ = [
    "SECTIONS",
    "CheckpointConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "DeepSpeedSection",
    "EvalConfig",
    "LoggingConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "RunConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "gradient_accumulation_steps",
    "total_steps",
]


@dataclass
class Config:
    """A full run: every number lives here once; the DeepSpeed config is derived from it."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    deepspeed: DeepSpeedSection = field(default_factory=DeepSpeedSection)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


SECTIONS = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]


def to_dataclass(factory, value):
    """jsonargparse may hand back a Namespace or the dataclass itself; normalise to the dataclass."""
    default = factory()
    if isinstance(value, type(default)):
        return value
    data = value.as_dict() if hasattr(value, "as_dict") else dict(value)
    if "adam_betas" in data and data["adam_betas"] is not None:
        data["adam_betas"] = tuple(data["adam_betas"])
    return type(default)(**data)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Inverse of `config_to_dict` (no validation: the dict came from a validated config)."""
    return Config(**{name: to_dataclass(SECTIONS[name], raw.get(name, {})) for name in SECTIONS})


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict of the resolved config (tuples as lists, for YAML/JSON)."""

    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return plain(asdict(cfg))


def config_to_yaml(cfg: Config) -> str:
    """The resolved config as YAML, loadable again with `--config`."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def gradient_accumulation_steps(train: TrainConfig, world_size: int) -> int:
    """global = micro * accumulation * world; raise ConfigError when that has no integer solution."""
    per_step = train.micro_batch_size * world_size
    if train.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size={train.global_batch_size} is not divisible by "
            f"train.micro_batch_size={train.micro_batch_size} x world size {world_size} = {per_step}; "
            "choose a micro batch (or number of ranks) that divides the global batch"
        )
    return train.global_batch_size // per_step


def total_steps(cfg: Config) -> int:
    """Optimizer steps of the run: max_steps, or the token budget left after tokens_already_seen."""
    if cfg.train.max_steps is not None:
        return cfg.train.max_steps
    tokens_per_step = cfg.train.global_batch_size * cfg.data.seq_len
    return math.ceil((cfg.train.max_tokens - cfg.train.tokens_already_seen) / tokens_per_step)
