"""Before any work: every path the run writes is checked, and the run folder is locked.

- `check_run_paths`: `run.output_dir`, `data.cache_dir` and `data.scored_dir` must be creatable:
  the nearest existing folder of each takes a probe file, written and removed at once; a path
  under a regular file, on a read-only or pseudo file system, or without permission is one line
  naming the key.
- `hold_run_lock`: rank 0 holds an exclusive `flock` on `<run.output_dir>/.lock` for the life of
  the process. The kernel releases it when the process dies, however it dies, so a SIGKILLed run
  never blocks its rerun; a second launch into a live run's folder is refused at once, naming
  the host and pid of the live run, and writes nothing there. On a file system without working
  locks (`flock` fails with ENOLCK/EOPNOTSUPP, e.g. some NFS mounts without lockd) the run warns
  once and goes on unguarded.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
_held: dict[str, int] = {}  # folder -> file descriptor holding its lock in this process


def launch_rank() -> int:
    """This process's rank in its launch, known before the process group exists."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def check_writable(key: str, path: str | Path) -> None:
    """`path` can be created and written: its nearest existing folder takes a probe file (written
    and removed at once, so nothing is left); ValueError naming `key` otherwise."""
    folder = Path(path).absolute()
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{key}: cannot write to {folder} ({existing} is a file, not a folder)")
    probe = existing / f".phf-write-probe.{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"{key}: cannot write to {folder} ({existing}: {err.strerror or type(err).__name__})"
        ) from None


def check_run_paths(cfg) -> None:
    """Every folder the run writes, checked before any data work (rank 0 of a launch)."""
    if launch_rank() != 0:
        return
    check_writable("run.output_dir", cfg.run.output_dir)
    check_writable("data.cache_dir", cfg.data.cache_dir)
    if cfg.data.scored_dir is not None:
        check_writable("data.scored_dir", cfg.data.scored_dir)


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}"


def hold_run_lock(output_dir: str | Path) -> None:
    """Lock the run folder for this process (rank 0 of a launch; the other ranks follow it)."""
    folder = str(Path(output_dir).resolve())
    if launch_rank() != 0 or folder in _held:
        return
    if not os.path.isdir(folder):
        os.makedirs(folder)
        atexit.register(_remove_if_unused, folder)  # a first launch that failed leaves no folder
    fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise ValueError(
            f"run.output_dir {folder} is in use by a live run ({holder}); stop it first, or "
            "choose another run.output_dir"
        ) from None
    except OSError as err:
        if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        log.warning(
            "run.output_dir %s: this file system does not support locks (%s); nothing stops a "
            "second launch into this folder",
            folder,
            err.strerror,
        )
        os.close(fd)
        return
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv)[:500],
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    _held[folder] = fd  # released by the kernel when this process exits


def _remove_if_unused(folder: str) -> None:
    """At exit: the run folder this process created, when it holds nothing but the lock."""
    try:
        if set(os.listdir(folder)) <= {LOCK_NAME}:
            os.unlink(os.path.join(folder, LOCK_NAME))
            os.rmdir(folder)
    except OSError:
        pass


def say_done(output_dir: str | Path, step: int) -> None:
    """The run's last line: where its outputs are."""
    out = Path(output_dir)
    parts = [f"{p}/" for p in ("checkpoints", "eval", "hf") if (out / p).is_dir()]
    log.info("done: step %d, outputs in %s (%s)", step, out, ", ".join(parts) or "metrics.jsonl")
