"""Structured metrics: one JSON object per logged step in `metrics.jsonl` (rank 0), mirrored to wandb."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.atomic import atomic_write
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
    """Append-only JSONL writer plus optional wandb run; a no-op on ranks other than 0.

    `metrics.jsonl` is the record of one run, however often it was interrupted: a run resumed from
    the checkpoint of step N first drops the records of steps after N (written by the attempt that
    died before its next checkpoint; the resumed run writes them again) and a partial last line.
    wandb is a mirror: when it fails (its service process died, a full disk under its folder), the
    logger warns once and goes on with metrics.jsonl alone; training never stops for it.
    """

    def __init__(self, cfg: Config, enabled: bool, resume_step: int = 0):
        self.enabled = enabled
        self.path = Path(cfg.run.output_dir) / "metrics.jsonl"
        self.wandb = None
        if not enabled:
            return
        truncate_metrics(self.path, resume_step)
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
                    # No 30-line run summary at the end: the run's own last line says where it is.
                    settings=wandb.Settings(quiet=True),
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
            self._wandb_call("log", lambda: self.wandb.log(record, step=int(record.get("step", 0))))

    def close(self) -> None:
        """Finish the wandb run."""
        if self.wandb is not None:
            self._wandb_call("finish", self.wandb.finish)
        self.wandb = None

    def _wandb_call(self, what: str, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as err:  # wandb's service died or its folder is unwritable
            log.warning(
                "wandb %s failed (%s: %s); wandb logging is off for the rest of this run, "
                "metrics go on to %s",
                what,
                type(err).__name__,
                err,
                self.path,
            )
            self.wandb = None
            _teardown_wandb()


def _teardown_wandb() -> None:
    """Release wandb's connection to its dead service (and its exit hook, which would print the
    same error again at exit); whatever that raises is ignored, a SystemExit included."""
    try:
        import wandb

        wandb.teardown()
    except (Exception, SystemExit) as err:
        log.debug("wandb teardown after a failure: %s", err)


def _keeps(line: str, last_step: int) -> bool:
    """A whole line holding a record of a step <= last_step."""
    try:
        record = json.loads(line) if line.endswith("\n") else None
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and int(record.get("step", 0)) <= last_step


def truncate_metrics(path: Path, last_step: int) -> int:
    """Keep the records of steps <= `last_step` (whole lines only); returns how many were dropped.

    Streamed (a long run's file is never held in memory) and rewritten through a temporary file and
    a rename, so a kill during the rewrite keeps the old file.
    """
    if not path.is_file():
        return 0
    with path.open() as fh:
        dropped = sum(not _keeps(line, last_step) for line in fh)
    if not dropped:
        return 0

    def write(tmp: Path) -> None:
        with path.open() as src, tmp.open("w") as dst:
            dst.writelines(line for line in src if _keeps(line, last_step))

    atomic_write(path, write)
    log.info(
        "%s: dropped %d record(s) after step %d, written before the run was interrupted; "
        "the resumed run writes those steps again",
        path,
        dropped,
        last_step,
    )
    return dropped
