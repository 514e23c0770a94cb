"""Checkpoints: a DeepSpeed checkpoint plus harness state, published only once complete.

Layout under `<output_dir>/checkpoints/`:

    step-00000100/            DeepSpeed files (model and optimizer shards of every rank)
        harness_state.json    step, tokens, loader state, config (written by rank 0)
        rng_state_rank{r}.pt  Python/NumPy/torch RNG states of rank r
        tokenizer/            the tokenizer the run trained with
    latest                    the tag of the newest complete checkpoint (DeepSpeed's own pointer name,
                              so `zero_to_fp32.py` and `engine.load_checkpoint` understand it)

`latest` is written by rank 0 after a barrier that follows every rank's writes, via a temporary
file and `os.replace`, so a run killed mid-save resumes from the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import distributed as dist

TAG_RE = re.compile(r"^step-(\d+)$")


def tag_for(step: int) -> str:
    """Checkpoint folder name for an optimizer step."""
    return f"step-{step:08d}"


def atomic_write_text(path: Path, text: str) -> None:
    """Write text via a temporary file and rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save via a temporary file and rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """RNG states of this process (Python, NumPy, torch CPU and CUDA)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_tag(root: Path) -> str | None:
    """The tag `latest` points to, or None when there is no published checkpoint."""
    pointer = Path(root) / "latest"
    if not pointer.is_file():
        return None
    tag = pointer.read_text().strip()
    return tag if (Path(root) / tag / "harness_state.json").is_file() else None


def save_checkpoint(engine, root: Path, state: dict[str, Any], tokenizer, keep_last: int) -> Path:
    """Save on every rank, then publish `latest` and prune old checkpoints (rank 0)."""
    root = Path(root)
    tag = tag_for(state["step"])
    engine.save_checkpoint(str(root), tag=tag, save_latest=False)
    folder = root / tag
    atomic_torch_save(rng_state(), folder / f"rng_state_rank{dist.rank()}.pt")
    if dist.is_main():
        tokenizer.save_pretrained(str(folder / "tokenizer"))
        atomic_write_text(
            folder / "harness_state.json",
            json.dumps({**state, "world_size": dist.world_size()}, indent=2),
        )
    dist.barrier()  # every rank's files are on disk before the checkpoint is published
    if dist.is_main():
        atomic_write_text(root / "latest", tag)
        prune_checkpoints(root, keep_last)
    dist.barrier()
    return folder


def prune_checkpoints(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` published checkpoints (never the one `latest` names)."""
    current = latest_tag(root)
    tags = sorted(
        (p.name for p in root.iterdir() if p.is_dir() and TAG_RE.match(p.name)), reverse=True
    )
    for old in tags[keep_last:]:
        if old != current:
            shutil.rmtree(root / old, ignore_errors=True)


def load_checkpoint(engine, root: Path) -> dict[str, Any] | None:
    """Load the latest complete checkpoint into `engine`; return its harness state (None if none)."""
    root = Path(root)
    tag = dist.broadcast_object(latest_tag(root) if dist.is_main() else None)
    if tag is None:
        return None
    load_path, _ = engine.load_checkpoint(
        str(root), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if load_path is None:
        raise RuntimeError(f"checkpoint {root / tag}: DeepSpeed could not load it")
    state = json.loads((root / tag / "harness_state.json").read_text())
    rng_file = root / tag / f"rng_state_rank{dist.rank()}.pt"
    if rng_file.is_file() and state.get("world_size") == dist.world_size():
        set_rng_state(torch.load(rng_file, weights_only=False))
    state["tag"] = tag
    return state
