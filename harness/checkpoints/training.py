"""Checkpoints: a DeepSpeed checkpoint plus harness state, published only once complete.

Layout under `<output_dir>/checkpoints/`:

    step-00000100/            DeepSpeed files (model and optimizer shards of every rank)
        harness_state.json    step, tokens, loader state, config, world size, and the size and
                              xxh3-128 checksum of every file of the checkpoint (written by rank 0
                              after all ranks finished)
        rng_state_rank{r}.pt  Python/NumPy/torch RNG states of rank r
        tokenizer/            the tokenizer the run trained with
    latest                    the tag of the newest complete checkpoint (DeepSpeed's own pointer name,
                              so `zero_to_fp32.py` and `engine.load_checkpoint` understand it)

`latest` is written by rank 0 after a barrier that follows every rank's writes, via a temporary
file and `os.replace`, so a run killed mid-save resumes from the previous checkpoint. On resume a
checkpoint is verified against the file list in its harness_state.json (every size, then every
checksum); a truncated, partial or bit-flipped one is skipped with a warning for the newest older
checkpoint that verifies.

Checksums are computed right after the write, while the files are in the page cache, each rank
hashing its share of the files (xxh3 runs at ~10 GB/s on one core, so a GPT-2 small checkpoint of
~1.5 GB adds well under a second). Verifying on resume reads the checkpoint once on rank 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash

from harness import distributed as dist
from harness.atomic import atomic_write, atomic_write_text
from harness.checkpoints.layout import TAG_RE, tag_for
from harness.checkpoints.state import STATE_FILE, FileRecord, RunState


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed; nothing was published."""


log = logging.getLogger(__name__)

LATEST = "latest"  # DeepSpeed's own pointer name: zero_to_fp32.py and load_checkpoint read it


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save via a temporary file and rename."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


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


CHUNK = 8 << 20


def file_digest(path: Path) -> str:
    """xxh3-128 of a file, read in 8 MiB chunks (hex)."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def describe_files(folder: Path) -> dict[str, FileRecord]:
    """{relative path: its size and xxh3-128} of every file under `folder`, on every rank.

    Called by all ranks after the barrier that follows their writes: rank r hashes the files
    r, r + world, ... of the sorted listing, and the shares are gathered.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != STATE_FILE)
    mine = {
        str(p.relative_to(folder)): FileRecord(p.stat().st_size, file_digest(p))
        for p in files[dist.rank() :: dist.world_size()]
    }
    merged: dict[str, FileRecord] = {}
    for share in dist.all_gather_object(mine):
        merged.update(share)
    return dict(sorted(merged.items()))


def save_checkpoint(engine, root: Path, state: RunState, tokenizer, keep_last: int) -> Path:
    """Save on every rank, then publish `latest` and prune old checkpoints (rank 0).

    A failing write (disk full, quota) raises on the rank that hit it, naming the folder; the
    launcher then stops the other ranks, and `latest` still names the previous checkpoint.
    """
    root = Path(root)
    tag = tag_for(state.step)
    folder = root / tag
    if dist.is_main() and folder.exists():
        # A step saved again (its earlier save was corrupt, or its run was resumed from before it):
        # no file of the old save may be listed as part of the new one.
        shutil.rmtree(folder)
    dist.barrier()
    try:
        engine.save_checkpoint(str(root), tag=tag, save_latest=False)
        atomic_torch_save(rng_state(), folder / f"rng_state_rank{dist.rank()}.pt")
        if dist.is_main():
            tokenizer.save_pretrained(str(folder / "tokenizer"))
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
        raise CheckpointSaveError(
            f"checkpoint save to {folder} failed on rank {dist.rank()}: {err}. "
            f"Nothing was published; {root / 'latest'} still names the previous checkpoint "
            "(disk full or quota? free space and rerun the same command)"
        ) from err
    dist.barrier()  # every rank's files are on disk before the checkpoint is described and published
    files = describe_files(folder)
    if dist.is_main():
        replace(state, world_size=dist.world_size(), files=files).write(folder)
        atomic_write_text(root / LATEST, tag)
        prune_checkpoints(root, keep_last)
    dist.barrier()
    return folder


def verify_checkpoint(folder: Path) -> str | None:
    """None if the checkpoint is complete and intact, else the problem.

    Every file it lists must exist with its size (checked for all files first: cheap) and its
    checksum (checkpoints written before checksums were recorded list sizes only).
    """
    if not (folder / STATE_FILE).is_file():
        return f"no {STATE_FILE} (the save did not finish)"
    try:
        state = RunState.read(folder)
    except json.JSONDecodeError as err:
        return f"{STATE_FILE} is not valid JSON ({err})"
    except (ValueError, TypeError) as err:
        return f"{STATE_FILE} cannot be read: {err}"
    for rel, entry in state.files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != entry.bytes:
            return (
                f"{rel} has {path.stat().st_size} bytes, expected {entry.bytes} "
                "(truncated or corrupted)"
            )
    for rel, entry in state.files.items():
        if entry.xxh3_128 is not None and file_digest(folder / rel) != entry.xxh3_128:
            return (
                f"{rel} has the right size but another checksum than when it was saved (corrupted)"
            )
    return None


def read_latest(root: Path) -> str | None:
    """The tag the `latest` pointer of a checkpoints folder names, or None (nothing published).

    The one reader of the pointer: resume, pruning, clean-up and `--checkpoint` resolution all ask here.
    """
    pointer = Path(root) / LATEST
    return (pointer.read_text().strip() or None) if pointer.is_file() else None


def step_tags(root: Path) -> list[str]:
    """The `step-*` checkpoint folders under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        (p.name for p in root.iterdir() if p.is_dir() and TAG_RE.match(p.name)), reverse=True
    )


def find_resumable(root: Path) -> str | None:
    """The newest complete checkpoint: `latest` if it verifies, else the newest older one that does."""
    root = Path(root)
    latest = read_latest(root)
    if latest is None:
        return None  # nothing was ever published here
    candidates = [latest] + [t for t in step_tags(root) if t < latest]
    for tag in candidates:
        problem = verify_checkpoint(root / tag)
        if problem is None:
            if tag != latest:
                log.warning(
                    "resuming from %s instead of the latest checkpoint %s", root / tag, latest
                )
            return tag
        log.warning("checkpoint %s is incomplete or corrupt, skipping it: %s", root / tag, problem)
    return None


def prune_checkpoints(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints (never the one `latest` names)."""
    current = read_latest(root)
    for old in step_tags(root)[keep_last:]:
        if old != current:
            shutil.rmtree(root / old, ignore_errors=True)
            shutil.rmtree(root / f"{old}.universal", ignore_errors=True)


def remove_unpublished(root: Path) -> list[str]:
    """Delete checkpoint folders newer than `latest` (saves a kill interrupted) and orphaned
    universal conversions; returns what was removed. Rank 0, before any rank writes."""
    root = Path(root)
    if not root.is_dir():
        return []
    latest = read_latest(root) or ""
    removed = []
    for p in sorted(root.iterdir()):
        base = p.name.removesuffix(".universal")
        if not (p.is_dir() and TAG_RE.match(base)):
            continue
        orphan = p.name != base and not (root / base).is_dir()
        if base > latest or orphan:
            shutil.rmtree(p)
            removed.append(f"removed {p} (never published)")
    return removed


def resume_point(root: Path) -> RunState | None:
    """The run state of the checkpoint to resume from (agreed by all ranks), or None."""
    root = Path(root)
    state = None
    if dist.is_main():
        tag = find_resumable(root)
        if tag is not None:
            state = RunState.read(root / tag)
    return dist.broadcast_object(state)


def to_universal(root: Path, tag: str) -> str:
    """Convert a checkpoint to DeepSpeed's universal format (rank 0, once); return the tag to load.

    Needed when the data-parallel world size changed: ZeRO shards of N ranks cannot be loaded by
    M ranks directly, the universal format (`ds_to_universal`) can.
    """
    root = Path(root)
    out_tag = f"{tag}.universal"
    out = root / out_tag
    if dist.is_main() and not (out / "mp_rank_00_model_states.pt").is_file():
        from deepspeed.checkpoint import ds_to_universal

        tmp = root / f".{out_tag}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("world size changed: converting %s to a universal checkpoint", root / tag)
        args = argparse.Namespace(
            input_folder=str(root / tag),
            output_folder=str(tmp),
            num_extract_workers=1,
            num_merge_workers=1,
            keep_temp_folder=False,
            strict=True,
            inject_missing_state=True,
        )
        ds_to_universal.main(args)
        # DeepSpeed looks for the model-states file of the universal folder by its usual name.
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    dist.barrier()
    return out_tag


def _inner_param_groups(engine) -> list[dict[str, Any]]:
    """The param groups of the torch optimizer under DeepSpeed's ZeRO wrapper (in our order)."""
    optimizer = engine.optimizer
    return getattr(optimizer, "optimizer", optimizer).param_groups


def _repair_universal_load(engine, weight_decay: list[float]) -> None:
    """Undo two slips of DeepSpeed's ZeRO-3 universal load (stage3.py's
    `load_hp_checkpoint_state_from_checkpoint_dir_stage3`, 0.19.8), found by the world-size resume
    test, whose losses drifted 3e-4 apart in 3 steps (ZeRO-1/2 load their own way, unaffected):

    - it copies the first param group's hyperparameters into every group, so the no-decay group
      (biases, norms) would go on with weight decay 0.1: the groups' values are put back;
    - it gives every sub-group's Adam state one shared `step` tensor, which torch's AdamW
      increments in place once per group, so the second group's bias correction runs ahead by a
      step per step: each state gets its own copy.
    """
    groups = _inner_param_groups(engine)
    for group, value in zip(groups, weight_decay, strict=True):
        group["weight_decay"] = value
    optimizer = engine.optimizer
    for state in getattr(optimizer, "optimizer", optimizer).state.values():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].clone()


def load_checkpoint(engine, root: Path, state: RunState, load_tag: str | None = None) -> None:
    """Load the checkpoint `state` describes into `engine` and restore this rank's RNG state."""
    root = Path(root)
    tag = state.tag
    groups = _inner_param_groups(engine)
    weight_decay = [group["weight_decay"] for group in groups]
    load_path, _ = engine.load_checkpoint(
        str(root), tag=load_tag or tag, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if load_path is None:
        raise RuntimeError(f"checkpoint {root / tag}: DeepSpeed could not load it")
    if load_tag is not None and load_tag != tag:
        _repair_universal_load(engine, weight_decay)
    rng_file = root / tag / f"rng_state_rank{dist.rank()}.pt"
    if state.world_size == dist.world_size() and rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    else:
        # Another world size: per-rank streams cannot be mapped; reseed deterministically instead.
        seed = state.seed + 1_000_003 * state.step + dist.rank()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
