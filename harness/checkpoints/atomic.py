"""Publish files and folders atomically: write under a temporary name, then rename.

A reader (or a relaunch after a kill) sees the old file or the whole new one, never a part. The
temporary name is `.<name>.tmp<pid>` next to the target, on the same file system, so `os.replace`
is atomic. torch-free: scoring workers publish through it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def temp_path(path: Path) -> Path:
    """The temporary name `path` is written under before the rename."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Publish the file `write(tmp)` creates at `path`; on failure nothing is published."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write bytes through a temporary file and a rename."""
    atomic_write(path, lambda tmp: tmp.write_bytes(payload))


def atomic_write_text(path: Path, text: str) -> None:
    """Write text through a temporary file and a rename."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_dir(folder: Path, write: Callable[[Path], None]) -> None:
    """Publish the folder `write(tmp)` fills at `folder`, replacing an older one."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        old = folder.with_name(f".{folder.name}.old{os.getpid()}")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
