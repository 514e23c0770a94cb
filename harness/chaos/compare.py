"""Does an interrupted run (or data cache) end where an uninterrupted one did? The mismatches, as text.

Training: every `metrics.jsonl` record equal (timing keys aside: `tokens_per_s`, `mfu`, anything
in seconds), no step logged twice or missing, `hf/` weights equal tensor for tensor and its other
files byte for byte, every `eval/step-*` file equal, the same checkpoints kept and intact, and no
file the uninterrupted run does not have (a temporary file, an unpublished checkpoint).
Data: every file of the cache (datatrove's logs aside) equal byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from harness.atomic import LEFTOVER_RE
from harness.checkpoints.training import verify_checkpoint

TIMING_KEYS = frozenset({"tokens_per_s", "mfu"})
# Other programs' files, and what differs between any two runs by design.
SKIP_PARTS = frozenset({"wandb"})


def _is_timing(key: str) -> bool:
    return key in TIMING_KEYS or key.endswith(("_s", "_seconds", "seconds"))


def _untimed(record: Any) -> Any:
    if isinstance(record, dict):
        return {k: _untimed(v) for k, v in record.items() if not _is_timing(k)}
    return record


def file_digests(folder: Path, skip_prefix: str = "datatrove") -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path (parts starting `skip_prefix` left out)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and not any(part.startswith(skip_prefix) for part in p.relative_to(folder).parts)
    }


def _files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and not SKIP_PARTS & set(p.relative_to(folder).parts)
    }


def _metrics(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def compare_metrics(ref: Path, got: Path) -> list[str]:
    """metrics.jsonl: the same records in the same order (timing keys aside), no step twice."""
    a, b = _metrics(ref), _metrics(got)
    problems = []
    steps = [r["step"] for r in b if "loss" in r]
    repeated = sorted({s for s in steps if steps.count(s) > 1})
    if repeated:
        problems.append(f"metrics.jsonl logs steps {repeated} more than once")
    missing = sorted({r["step"] for r in a if "loss" in r} - set(steps))
    if missing:
        problems.append(f"metrics.jsonl misses steps {missing}")
    if len(a) != len(b):
        problems.append(f"metrics.jsonl has {len(b)} records, the uninterrupted run {len(a)}")
    for i, (ra, rb) in enumerate(zip(a, b, strict=False)):
        if _untimed(ra) != _untimed(rb):
            keys = sorted(
                k for k in set(ra) | set(rb) if not _is_timing(k) and ra.get(k) != rb.get(k)
            )
            problems.append(
                f"metrics.jsonl record {i} (step {rb.get('step')}) differs in {keys}: "
                + ", ".join(f"{k} {ra.get(k)!r} vs {rb.get(k)!r}" for k in keys[:4])
            )
            break
    return problems


def _tensors_equal(a: Path, b: Path) -> str | None:

    ta, tb = load_file(str(a)), load_file(str(b))
    if set(ta) != set(tb):
        return f"tensor names differ: {sorted(set(ta) ^ set(tb))}"
    for name in sorted(ta):
        if ta[name].dtype != tb[name].dtype or not torch.equal(ta[name], tb[name]):
            diff = (ta[name].float() - tb[name].float()).abs().max().item()
            return f"tensor {name} differs (max abs diff {diff:.3g})"
    return None


def _same_file(a: Path, b: Path, roots: tuple[Path, Path]) -> str | None:
    """None if equal: tensors for safetensors, else bytes once each run's own folder name is
    masked (the model card quotes run.output_dir), else JSON without timing keys."""
    if a.suffix == ".safetensors":
        return _tensors_equal(a, b)
    da = a.read_bytes().replace(str(roots[0]).encode(), b"<run>")
    db = b.read_bytes().replace(str(roots[1]).encode(), b"<run>")
    if da == db:
        return None
    if a.suffix == ".json" and _untimed(json.loads(da)) == _untimed(json.loads(db)):
        return None
    return "contents differ"


def compare_runs(ref: Path, got: Path) -> list[str]:
    """What differs between the uninterrupted run folder `ref` and the interrupted `got`."""
    problems = compare_metrics(ref, got)
    fa, fb = _files(ref), _files(got)
    leftovers = sorted(f for f in fb if any(LEFTOVER_RE.match(part) for part in f.split("/")))
    if leftovers:
        problems.append(f"temporary files left behind: {leftovers[:8]}")
    extra = sorted(fb - fa - set(leftovers))
    if extra:
        problems.append(f"files the uninterrupted run does not have: {extra[:8]}")
    missing = sorted(fa - fb)
    if missing:
        problems.append(f"files missing: {missing[:8]}")
    for rel in sorted(fa & fb):
        top = rel.split("/")[0]
        if top not in ("hf", "eval") and rel != "checkpoints/latest":
            continue
        why = _same_file(ref / rel, got / rel, (ref, got))
        if why:
            problems.append(f"{rel}: {why}")
    for folder in sorted((got / "checkpoints").glob("step-*")):
        if folder.is_dir() and not folder.name.endswith(".universal"):
            why = verify_checkpoint(folder)
            if why:
                problems.append(f"checkpoint {folder.name}: {why}")
    return problems


def compare_caches(ref: Path, got: Path) -> list[str]:
    """What differs between two data caches (scored shards, tokenizers, packed blocks)."""
    a, b = file_digests(ref), file_digests(got)
    problems = []
    leftovers = sorted(f for f in b if any(LEFTOVER_RE.match(part) for part in f.split("/")))
    if leftovers:
        problems.append(f"temporary files left behind: {leftovers[:8]}")
    if set(b) - set(a) - set(leftovers):
        problems.append(
            f"files the uninterrupted run does not have: {sorted(set(b) - set(a) - set(leftovers))[:8]}"
        )
    if set(a) - set(b):
        problems.append(f"files missing: {sorted(set(a) - set(b))[:8]}")
    differ = sorted(rel for rel in set(a) & set(b) if a[rel] != b[rel])
    if differ:
        problems.append(f"files that differ: {differ[:8]}")
    return problems
