"""Structured metrics: one JSON object per logged step in `metrics.jsonl` (rank 0), mirrored to wandb."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from harness.config import Config, config_to_dict

log = logging.getLogger(__name__)

# Dense peak TFLOP/s per device for MFU, by a substring of the CUDA device name (bf16/fp16 tensor cores).
GPU_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "A10G": 125.0,
    "L40S": 362.0,
    "L4": 121.0,
    "V100": 125.0,
    "4090": 165.0,
}


def peak_tflops(configured: float | None, precision: str) -> float:
    """Peak TFLOP/s of one rank's device: the configured value, a known GPU, or a nominal CPU figure."""
    if configured is not None:
        return configured
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, value in GPU_PEAK_TFLOPS.items():
            if key in name:
                return value if precision != "fp32" else value / 2
        return 100.0
    # Nominal CPU peak: cores per rank x 2.5 GHz x 32 fp32 FLOP/cycle (two AVX2 FMA units).
    threads = max(1, torch.get_num_threads())
    return threads * 2.5e9 * 32 / 1e12


class MetricsLogger:
    """Append-only JSONL writer plus optional wandb run; a no-op on ranks other than 0."""

    def __init__(self, cfg: Config, enabled: bool):
        self.enabled = enabled
        self.path = Path(cfg.run.output_dir) / "metrics.jsonl"
        self.wandb = None
        if not enabled:
            return
        mode = os.environ.get("WANDB_MODE", cfg.logging.wandb)
        if mode != "disabled":
            try:
                import wandb

                self.wandb = wandb.init(
                    project=cfg.logging.wandb_project,
                    name=cfg.run.name,
                    dir=cfg.run.output_dir,
                    mode=mode,
                    config=config_to_dict(cfg),
                    resume="allow",
                )
            except Exception as err:  # a logging backend must never stop training
                log.warning("wandb disabled: %s", err)

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (full float precision, so resumed runs can be compared bit for bit)."""
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(record, step=int(record.get("step", 0)))

    def close(self) -> None:
        """Finish the wandb run."""
        if self.wandb is not None:
            self.wandb.finish()
