"""Publish files and folders atomically: write under a temporary name, then rename.

A reader (or a relaunch after a kill) sees the old file or the whole new one, never a part. The
temporary name is `.<name>.tmp<pid>` next to the target, on the same file system, so `os.replace`
is atomic. torch-free: scoring workers publish through it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

LEFTOVER_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)\d+$")


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


def remove_leftovers(folder: Path, skip: tuple[str, ...] = ("wandb",)) -> list[str]:
    """Clear what atomic writes of killed processes left under `folder`; returns what was done.

    A `.<name>.tmp<pid>` is an unpublished write: deleted. A `.<name>.old<pid>` is a replaced
    folder: deleted, unless the kill came between the two renames of `atomic_write_dir` and
    `<name>` is missing, in which case the old one is put back. Call it only while no other process
    writes under `folder` (at the start of a run, before the ranks write anything). Subfolders named
    in `skip` (other programs' files) are not visited.
    """
    folder = Path(folder)
    done: list[str] = []
    if not folder.is_dir():
        return done
    for dirpath, dirnames, filenames in os.walk(folder):
        if Path(dirpath) == folder:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in sorted(dirnames + filenames):
            match = LEFTOVER_RE.match(name)
            if match is None:
                continue
            path, target = Path(dirpath) / name, Path(dirpath) / match["name"]
            if match["kind"] == "old" and not target.exists():
                os.replace(path, target)
                done.append(f"restored {target} from {name}")
            else:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                done.append(f"removed {path}")
            if name in dirnames:
                dirnames.remove(name)
    return done
