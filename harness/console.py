"""What reaches the console: errors and warnings once per launch (not once per rank), known noise
filtered.

Every rank of a launch raises the same config or data error; printing it on each of 8 (or 512)
ranks buries it. `print_error_once` prints a message only on the first rank of the launch on this
node to report it: ranks claim a message by creating a file named after it (`O_EXCL`) in a folder
keyed by the process that started them (the launcher), so an error that only one rank meets is
still printed, once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

STALE_S = 86400.0


def _launch_folder() -> Path | None:
    """A folder shared by the ranks of this launch on this node; None outside a launch."""
    if int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1"))) <= 1:
        return None
    parent = os.getppid()
    try:
        started = os.stat(f"/proc/{parent}").st_mtime_ns
    except OSError:
        started = 0
    root = Path(tempfile.gettempdir()) / f"phf-console-{os.getuid()}"
    return root / f"{parent}-{started}-{os.environ.get('MASTER_PORT', '')}"


_said: set[str] = set()


def first_to_say(message: str) -> bool:
    """True the first time this process says `message` and no other rank of the launch (on this
    node) has claimed it before."""
    if message in _said:
        return False
    _said.add(message)
    folder = _launch_folder()
    if folder is None:
        return True
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _sweep(folder.parent)
        name = hashlib.sha1(message.encode()).hexdigest()[:20]
        os.close(os.open(folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True  # no writable temp folder: better twice than never
    return True


def _sweep(root: Path) -> None:
    """Forget launches older than a day (their folders are a few empty files)."""
    now = time.time()
    for old in root.iterdir():
        try:
            if now - old.stat().st_mtime > STALE_S:
                for f in old.iterdir():
                    f.unlink(missing_ok=True)
                old.rmdir()
        except OSError:
            continue


def print_error_once(message: str) -> None:
    """`error: <message>` on stderr, once per launch."""
    if first_to_say("error: " + message):
        print(f"error: {message}", file=sys.stderr, flush=True)


class OncePerLaunch(logging.Filter):
    """Let a warning or error through once per launch: not once per rank, nor at every
    evaluation when its text does not change."""

    def filter(self, record: logging.LogRecord) -> bool:
        """True for INFO and below, and for the first rank to say a warning."""
        return record.levelno < logging.WARNING or first_to_say("log: " + record.getMessage())


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_known_noise() -> None:
    """Silence library messages that say nothing to a user of the harness: torch's deprecation of
    the collective DeepSpeed's ZeRO calls (after every evaluation), and DeepSpeed's note that the
    learning-rate scheduler has not started (it has not: the first step comes after)."""
    warnings.filterwarnings(
        "ignore", message=r".*all_gather_into_tensor.* is deprecated", category=FutureWarning
    )
    logging.getLogger("DeepSpeed").addFilter(
        _DropMessage("Attempting to get learning rate from scheduler before it has started")
    )
