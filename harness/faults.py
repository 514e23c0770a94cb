"""Faults the training loop survives: stop signals (SIGTERM/SIGUSR1) and non-finite weights.

A signal only sets a flag; every rank learns of it through the per-step all-reduce of the losses
(or `stop_requested` after evaluation), so all ranks save at the same step boundary.
"""

from __future__ import annotations

import signal

import torch

from harness import distributed as dist


class StopRequest:
    """Set by SIGTERM/SIGUSR1 (what SLURM sends before a kill); all ranks agree at the next step boundary."""

    signal_name: str | None = None


def _request_stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    StopRequest.signal_name = signal.Signals(signum).name


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGUSR1 request a checkpoint and a clean exit instead of killing the run."""
    StopRequest.signal_name = None
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, _request_stop)


def stop_requested(device) -> bool:
    """True on every rank if any rank received a stop signal (one small all-reduce)."""
    return dist.all_reduce_sum([1.0 if StopRequest.signal_name else 0.0], device)[0] > 0


def params_finite(engine) -> bool:
    """True on every rank if every (local partition of every) parameter is finite."""
    ok = True
    for p in engine.module.parameters():
        data = getattr(p, "ds_tensor", None)  # ZeRO-3 keeps the local partition there
        data = p.data if data is None or p.data.numel() else data
        if data.numel() and not torch.isfinite(data).all():
            ok = False
            break
    return dist.all_true(ok, engine.device)
