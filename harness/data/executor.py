"""Running a datatrove stage inside a training launch, and waiting for it without a collective.

Each rank of a `deepspeed`/`torchrun` launch runs its contiguous slice of the stage's tasks with a
`LocalPipelineExecutor` (`local_tasks`, `local_rank_offset`, one worker: the rank's own process,
so a GPU scorer uses that rank's GPU), then waits for every task's completion marker by polling
the file system. A rank that finishes early never sits in a gloo/NCCL barrier, whose timeout (30
minutes by default) would kill a launch whose data stage takes longer. A rank that fails writes
`errors/rank-N.txt`, which the waiting ranks turn into the same error instead of waiting forever.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.atomic import atomic_write, atomic_write_bytes

log = logging.getLogger(__name__)


def _rank_world() -> tuple[int, int]:
    """(rank, world size) of the launch; (0, 1) without a process group. torch is not imported
    here: each datatrove worker process of scripts/prepare.py would pay seconds for it."""
    torch_dist = sys.modules.get("torch.distributed")
    if torch_dist is not None and torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank(), torch_dist.get_world_size()
    return 0, 1


def group_rank() -> int:
    """This process's rank in the launch's process group (0 without one; `run_folder.launch_rank`
    reads the launcher's environment instead, before the group exists)."""
    return _rank_world()[0]


POLL_S = 0.5
# An error file older than this when a rank starts waiting is from an earlier launch.
STALE_ERROR_S = 120.0


def completions_dir(logging_dir: Path) -> Path:
    """Where datatrove marks finished tasks (`completions/00007`)."""
    return Path(logging_dir) / "completions"


def incomplete_tasks(logging_dir: Path, n_tasks: int) -> list[int]:
    """Tasks without a completion marker."""
    done = (
        set(os.listdir(completions_dir(logging_dir)))
        if completions_dir(logging_dir).is_dir()
        else set()
    )
    return [k for k in range(n_tasks) if f"{k:05d}" not in done]


def rank_slice(n_tasks: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous [start, end) tasks of one rank; every task belongs to exactly one rank."""
    return n_tasks * rank // world, n_tasks * (rank + 1) // world


def local_executor(
    pipeline: list, n_tasks: int, logging_dir: Path, start: int, count: int, workers: int = 1
):
    """datatrove's LocalPipelineExecutor for tasks [start, start + count) of a stage."""
    from datatrove.executor import LocalPipelineExecutor

    return LocalPipelineExecutor(
        pipeline=pipeline,
        tasks=n_tasks,
        workers=workers,
        logging_dir=str(logging_dir),
        local_tasks=count,
        local_rank_offset=start,
        skip_completed=True,
        # Pool workers are the fork server's children: worker_watch finds them there.
        start_method="forkserver",
    )


def task_done(what: str, task: int, n_tasks: int, started: float, detail: str) -> None:
    """One log line per finished task (datatrove's own output is silenced inside a launch)."""
    elapsed = time.time() - started
    log.info("%s: task %d/%d done in %.1f s (%s)", what, task + 1, n_tasks, elapsed, detail)


def _error_file(logging_dir: Path, rank: int) -> Path:
    return Path(logging_dir) / "errors" / f"rank-{rank:05d}.txt"


def _write_error(logging_dir: Path, message: str) -> None:
    atomic_write_bytes(_error_file(logging_dir, _rank_world()[0]), message.encode())


def _peer_error(logging_dir: Path, since: float) -> str | None:
    folder = Path(logging_dir) / "errors"
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("rank-*.txt")):
        if path.stat().st_mtime >= since - STALE_ERROR_S:
            return f"{path.stem}: {path.read_text()}"
    return None


def wait_for(done: Callable[[], bool], logging_dir: Path, what: str) -> None:
    """Poll until `done()` holds; a peer's error file raises it here."""
    since = time.time()
    last_note = since
    while not done():
        err = _peer_error(logging_dir, since)
        if err is not None:
            raise ValueError(f"{what} failed on another rank ({err})")
        if time.time() - last_note > 60:
            log.info("waiting for %s (%.0f s)", what, time.time() - since)
            last_note = time.time()
        time.sleep(POLL_S)


def run_in_launch(pipeline: list, n_tasks: int, logging_dir: Path, what: str) -> None:
    """Run this rank's slice of a stage's tasks, then wait (no collective) until all are complete."""
    logging_dir = Path(logging_dir)
    _error_file(logging_dir, _rank_world()[0]).unlink(missing_ok=True)
    rank, world = _rank_world()
    start, end = rank_slice(n_tasks, rank, world)
    todo = [k for k in incomplete_tasks(logging_dir, n_tasks) if start <= k < end]
    if todo:
        log.info("rank %d: %s, %d of tasks %d-%d to do", rank, what, len(todo), start, end - 1)
        from loguru import logger

        # datatrove prints each task's set-up and statistics; inside a training launch our own
        # log lines (one per task, `task_done`) say enough. Its log files are written as usual.
        logger.disable("datatrove")
        try:
            local_executor(pipeline, n_tasks, logging_dir, start, end - start).run()
        except Exception as err:
            _write_error(logging_dir, f"{type(err).__name__}: {err}")
            raise
        finally:
            logger.enable("datatrove")
    wait_for(lambda: not incomplete_tasks(logging_dir, n_tasks), logging_dir, what)


def publish_once(path: Path, write: Callable[[Path], None], logging_dir: Path, what: str) -> None:
    """Rank 0 writes `path` through `write(tmp)` and a rename; the other ranks wait for it."""
    path = Path(path)
    if path.is_file():
        return
    if _rank_world()[0] == 0:
        for stale in path.parent.glob(f".{path.name}.tmp*"):  # left by a killed writer
            stale.unlink(missing_ok=True)
        try:
            atomic_write(path, write)
        except Exception as err:
            _write_error(logging_dir, f"{type(err).__name__}: {err}")
            raise
    else:
        wait_for(path.is_file, logging_dir, what)
