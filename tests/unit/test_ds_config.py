"""The DeepSpeed config is derived from the run config; contradictions are errors naming the key."""

from pathlib import Path

import pytest
import yaml

from harness.config import ConfigError
from harness.ds_config import build_ds_config
from harness.run_config import parse_config


def cfg_from(tmp_path: Path, data: dict, world_size: int = 1):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return parse_config(["--config", str(path)], world_size=world_size)


TRAIN = {
    "max_steps": 100,
    "global_batch_size": 64,
    "micro_batch_size": 8,
    "lr": 1e-3,
    "warmup_ratio": 0.05,
}


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_run_config_fills_batch_precision_optimizer_scheduler(tmp_path, stage):
    cfg = cfg_from(
        tmp_path,
        {
            "train": {**TRAIN, "precision": "bf16", "grad_clip": 0.5},
            "deepspeed": {"config": f"ds_configs/zero{stage}.json"},
        },
        2,
    )
    ds = build_ds_config(cfg, world_size=2)
    assert ds["zero_optimization"]["stage"] == stage
    assert (
        ds["train_batch_size"],
        ds["train_micro_batch_size_per_gpu"],
        ds["gradient_accumulation_steps"],
    ) == (64, 8, 4)
    assert ds["bf16"]["enabled"] is True and ds["fp16"]["enabled"] is False
    assert ds["gradient_clipping"] == 0.5
    assert ds["optimizer"]["type"] == "AdamW"
    assert (
        ds["optimizer"]["params"]["lr"] == 1e-3 and ds["optimizer"]["params"]["weight_decay"] == 0.1
    )
    assert ds["scheduler"]["type"] == "WarmupDecayLR"
    assert ds["scheduler"]["params"]["total_num_steps"] == 100
    assert ds["scheduler"]["params"]["warmup_num_steps"] == 5
    assert ds["scheduler"]["params"]["warmup_type"] == "linear"


def test_cosine_schedule(tmp_path):
    cfg = cfg_from(tmp_path, {"train": {**TRAIN, "lr_decay": "cosine", "min_lr_ratio": 0.1}})
    sched = build_ds_config(cfg, 1)["scheduler"]
    assert sched["type"] == "WarmupCosineLR" and sched["params"]["cos_min_ratio"] == 0.1


def test_gradient_accumulation_follows_world_size(tmp_path):
    cfg = cfg_from(tmp_path, {"train": TRAIN})
    assert [build_ds_config(cfg, w)["gradient_accumulation_steps"] for w in (1, 2, 4, 8)] == [
        8,
        4,
        2,
        1,
    ]
    with pytest.raises(ConfigError, match="world size 16"):
        build_ds_config(cfg, 16)


def test_contradicting_overrides_are_named(tmp_path):
    cfg = cfg_from(tmp_path, {"train": TRAIN})
    cfg.deepspeed.overrides = {
        "train_batch_size": 32,
        "optimizer": {"params": {"lr": 0.5}},
        "fp16": {"enabled": True},
    }
    with pytest.raises(ConfigError) as err:
        build_ds_config(cfg, 1)
    msg = str(err.value)
    assert "train_batch_size=32" in msg and "train.global_batch_size" in msg
    assert "optimizer.params.lr=0.5" in msg and "train.lr" in msg
    assert "fp16.enabled=True" in msg and "train.precision='fp32'" in msg


def test_agreeing_or_auto_values_are_accepted(tmp_path):
    cfg = cfg_from(tmp_path, {"train": TRAIN})
    cfg.deepspeed.overrides = {
        "train_batch_size": 64,
        "train_micro_batch_size_per_gpu": "auto",
        "zero_optimization": {"stage": 3},
    }
    ds = build_ds_config(cfg, 1)
    assert ds["train_micro_batch_size_per_gpu"] == 8 and ds["zero_optimization"]["stage"] == 3


def test_contradicting_ds_file_is_named(tmp_path):
    ds_file = tmp_path / "mine.json"
    ds_file.write_text('{"zero_optimization": {"stage": 2}, "gradient_clipping": 5.0}')
    with pytest.raises(ConfigError, match="gradient_clipping=5.0"):
        cfg_from(tmp_path, {"train": TRAIN, "deepspeed": {"config": str(ds_file)}})


def test_offload_config_keeps_deepspeed_cpu_adam(tmp_path):
    cfg = cfg_from(tmp_path, {"train": TRAIN, "deepspeed": {"config": "zero3_offload.json"}})
    assert "torch_adam" not in build_ds_config(cfg, 1)["optimizer"]["params"]
