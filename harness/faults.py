"""Faults the training loop survives: stop signals, a launcher that died, and non-finite weights.

A signal only sets a flag; every rank learns of it through the per-step all-reduce of the losses
(or `stop_requested` at evaluation's agreed points), so all ranks save at the same step boundary.

- SIGTERM, SIGUSR1 (what SLURM and most schedulers send): save at the next step boundary, exit 0.
- SIGINT (Ctrl-C): the same, announced in one line, exit 130; a second Ctrl-C aborts at once.
- The launcher gone: `deepspeed` starts `deepspeed.launcher.launch`, which starts the ranks. A
  SIGTERM to the outer `deepspeed` ends it at once and leaves the rest running, and a killed
  `launch` leaves its ranks behind. A watcher thread in every rank notices within a second that
  the process that started it (or the `deepspeed` command above it) is gone, and stops the run
  like a signal would: nothing of the launch is left running.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import torch

from harness import distributed as dist
from harness.run_folder import launch_rank

WATCH_S = 1.0


class StopRequest:
    """Set by a stop signal or a vanished launcher; all ranks agree at the next step boundary."""

    signal_name: str | None = None
    interrupts = 0  # Ctrl-C presses: the second aborts
    step = 0  # the step being trained, for the Ctrl-C line


def request_stop(why: str) -> None:
    """Ask the run to save at the next step boundary and exit (the first reason is kept)."""
    if StopRequest.signal_name is None:
        StopRequest.signal_name = why


def _on_signal(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    request_stop(signal.Signals(signum).name)


def _on_interrupt(signum, frame) -> None:  # noqa: ARG001
    StopRequest.interrupts += 1
    if StopRequest.interrupts > 1:
        os._exit(130)  # abort now: no checkpoint, no clean-up
    request_stop("SIGINT")
    if dist.rank() == 0 if dist.is_initialized() else launch_rank() == 0:
        print(
            f"\nstopping after step {StopRequest.step}: saving a checkpoint; Ctrl-C again to abort",
            file=sys.stderr,
            flush=True,
        )


def exit_code() -> int:
    """The process's exit code after a clean stop: 130 after Ctrl-C (the shell's convention)."""
    return 130 if StopRequest.signal_name == "SIGINT" else 0


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGUSR1 request a checkpoint and a clean exit, and watch the launcher.
    (Ctrl-C before training raises KeyboardInterrupt as usual: `interrupts_save` takes it over
    for the training loop.)"""
    StopRequest.signal_name = None
    StopRequest.interrupts = 0
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, _on_signal)
    watched = launch_chain()
    if watched:
        threading.Thread(target=_watch, args=(watched,), name="launcher-watch", daemon=True).start()


class interrupts_save:  # noqa: N801 - used as a context manager, like a function
    """Inside: Ctrl-C saves at the next step boundary (one line, exit 130), a second aborts."""

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, _on_interrupt)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # the name may hold spaces and parentheses
    if fields[0] == b"Z":  # a zombie is gone
        return None
    return int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def launch_chain() -> list[tuple[int, int]]:
    """(pid, start time) of the launcher processes above this rank: its parent when that is a
    launcher (deepspeed's `launch`, torchrun, srun's step daemon), and the `deepspeed` command
    above `launch`. Empty without /proc or without a launcher (`python scripts/train.py`)."""
    me = _stat(os.getpid())
    if me is None or "WORLD_SIZE" not in os.environ and "SLURM_PROCID" not in os.environ:
        return []
    parent = me[0]
    parent_stat = _stat(parent)
    if parent_stat is None or parent <= 1:
        return []
    chain = [(parent, parent_stat[1])]
    if "deepspeed.launcher.launch" in _cmdline(parent):
        above = parent_stat[0]
        above_stat = _stat(above)
        if above_stat is not None and "deepspeed" in _cmdline(above):
            chain.append((above, above_stat[1]))
    return chain


def _watch(chain: list[tuple[int, int]]) -> None:
    while StopRequest.signal_name is None:
        for pid, started in chain:
            now = _stat(pid)
            if now is None or now[1] != started:
                request_stop("the launcher exited")
                return
        time.sleep(WATCH_S)


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
