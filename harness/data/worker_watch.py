"""Fail, instead of hanging, when a worker of datatrove's local pool is killed.

datatrove's `LocalPipelineExecutor` with `workers > 1` starts a `multiprocess` Manager (for its
queue) and a pool of `workers` processes, and maps the tasks over the pool. When a worker dies of
a signal (the OOM killer, `kill -9`), the pool starts a replacement but the task the dead worker
held never returns, and `run()` waits for it forever (found by `scripts/chaos.py`).

The pool's workers are started by multiprocess's fork server (datatrove's default start method,
which `local_executor` names explicitly): they are the grandchildren of this process, children
of the fork server, while the Manager and the fork server are its children. None of the workers
ends before the pool closes, so a worker beyond the first `workers` is a replacement and a task
is lost. Counting the workers ever seen (rather than watching one vanish between two polls) also
catches a worker killed and replaced within a single poll. A worker that vanishes without a
replacement, while `run()` has not returned `GRACE_S` later, counts too. Then this interrupts
the main thread with an error that says so; finished tasks keep their completion markers, so
rerunning the command redoes only the lost task and the ones not yet started.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

POLL_S = 0.2
# A pool closing at the end of run() ends its workers too, and starts none: a worker that vanishes
# is lost when the pool starts a replacement, or when run() has not returned this long after.
GRACE_S = 10.0


class WorkerDied(RuntimeError):
    """A local datatrove worker died while its pool was running."""


@contextmanager
def fail_on_dead_worker(what: str, workers: int) -> Iterator[None]:
    """Turn a worker killed during the `with` block (one datatrove `run()` with `workers`
    processes) into `WorkerDied` in the main thread."""
    if workers < 2 or threading.current_thread() is not threading.main_thread():
        # One worker runs the tasks in this process (no pool to lose a task); signals reach the
        # main thread only.
        yield
        return
    done = threading.Event()
    lost: list[str] = []
    me = psutil.Process()

    def pool_workers() -> set[int]:
        out = set()
        for child in me.children():
            try:
                # Only the fork server's children: this process may have others with children
                # of their own (a Ray head a test session started, a local Hub, ...).
                if "forkserver" not in " ".join(child.cmdline()):
                    continue
                out |= {p.pid for p in child.children()}
            except psutil.Error:
                continue
        return out

    def interrupt(signum, frame):
        raise WorkerDied(
            f"{what}: a worker process ({lost[0]}) died while the pool was running (killed: out of "
            "memory?). Finished tasks are kept; rerun the same command to redo the rest"
        )

    def watch() -> None:
        seen: set[int] = set()
        gone_at = None
        while not done.wait(POLL_S):
            now = pool_workers()
            seen |= now
            gone = seen - now
            if gone and gone_at is None:
                gone_at = time.monotonic()
            replaced = len(seen) > workers
            if replaced or (gone_at is not None and time.monotonic() - gone_at > GRACE_S):
                lost.append(f"pid {min(gone)}" if gone else "one of the pool's")
                os.kill(os.getpid(), signal.SIGUSR2)
                return

    previous = signal.signal(signal.SIGUSR2, interrupt)
    watcher = threading.Thread(target=watch, name="worker-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL if previous is None else previous)
