"""Packing as a datatrove pipeline: one task per scored shard, every split in one pass.

Task k streams shard k row group by row group, drops copies (`data.dedup`, by the digests the
scoring stage recorded), sends each record to the training or the held-out side by a hash of its
id, applies the objective's treatment and writes `parts/part-0000k/<split>/{tokens,scores}.bin`
for both splits at once: `train` (the objective's treatment) and `heldout` (its
`heldout_treatment()`: the text untreated, in the format the model reads, for the one held-out
loss `eval/lm_loss`, comparable across objectives). The part folder is
written under a temporary name and renamed when complete. Once every task is done, `meta.json`
lists the parts of each split; `PackedBlocks(folder, split)` reads them in place through
cumulative offsets (no concatenation copy). Parts depend only on their shard, so the result is
the same whatever the number of ranks or workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.pipeline.base import PipelineStep

from harness.atomic import atomic_write
from harness.config import Config, ObjectiveConfig
from harness.data.buckets import is_heldout
from harness.data.executor import publish_once, run_in_launch, task_done
from harness.data.packing import BlockWriter, document_token_counts, encode_batches, token_dtype
from harness.data.prefix import counts_file, shard_windows
from harness.data.score_stage import (
    ScoringJob,
    ScoringManifest,
    index_name,
    iter_shard,
    shard_name,
)

PACK_VERSION = "pack-v4"  # v4: one held-out split, in heldout_treatment()
BATCH_RECORDS = 256
_TOKENIZERS: dict[tuple[str, bool], Any] = {}


def dedup_keep_file(scored_dir: Path) -> Path:
    """The keep-mask of exact deduplication over all shards (first copy kept)."""
    return Path(scored_dir) / "dedup-keep.npy"


def build_dedup_mask(scored_dir: Path, manifest: ScoringManifest) -> np.ndarray:
    """True for the first document with each text digest, in plan order (8 bytes per document)."""
    digests = [
        np.load(Path(scored_dir) / index_name(k, ".npy")) for k in range(len(manifest.shards))
    ]
    flat = np.concatenate(digests) if digests else np.zeros(0, np.int64)
    _, first = np.unique(flat, return_index=True)
    keep = np.zeros(len(flat), dtype=bool)
    keep[first] = True
    return keep


def ensure_dedup_mask(scored_dir: Path, manifest: ScoringManifest) -> Path:
    """Compute the dedup mask once (rank 0); the other ranks wait for the file."""
    path = dedup_keep_file(scored_dir)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, build_dedup_mask(scored_dir, manifest))

    publish_once(path, write, Path(scored_dir) / "datatrove", "the dedup mask")
    return path


def _tokenizer(path: str, control_tokens: bool):
    from harness.tokenizer import load_tokenizer

    key = (path, control_tokens)
    if key not in _TOKENIZERS:  # one load per process, however many tasks it runs
        _TOKENIZERS[key] = load_tokenizer(path, control_tokens)
    return _TOKENIZERS[key]


class PackShard(PipelineStep):
    """Packs scored shard `rank` into the part folder of every split."""

    name = "pack blocks"
    type = "🔢 - TOKENIZER"

    def __init__(self, spec: PackSpec):
        super().__init__()
        self.spec = spec

    def _treatments(self) -> dict[str, Any]:
        from harness.objectives import build_objective

        s = self.spec
        objective = build_objective(ObjectiveConfig(**s.objective), s.seed)
        return {"train": objective.treat, "heldout": objective.heldout_treatment()[0]}

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        """Write part `rank`; yields nothing."""
        started = time.time()
        s = self.spec
        tok = _tokenizer(s.tokenizer, s.control_tokens)
        treatments = self._treatments()
        part = Path(s.out) / "parts" / f"part-{rank:05d}"
        tmp = part.with_name(f".{part.name}.tmp{os.getpid()}")
        for stale in part.parent.glob(f".{part.name}.tmp*"):  # a killed worker's, on this task
            shutil.rmtree(stale, ignore_errors=True)
        dtype = token_dtype(len(tok))
        writers = {split: BlockWriter(tmp / split, s.seq_len, dtype) for split in treatments}
        self._train_seen = 0  # training documents met so far: their index for the prefix window
        self._window = (
            shard_windows(s.counts_dir, len(s.shards), *_prefix(s))[rank] if s.counts_dir else None
        )
        batch: list[dict[str, Any]] = []
        for rec in kept_records(s, rank, lambda: self.stat_update("duplicates")):
            batch.append(rec)
            if len(batch) >= BATCH_RECORDS:
                self._write(batch, treatments, writers, tok)
                batch = []
        self._write(batch, treatments, writers, tok)
        metas = {split: writer.close() for split, writer in writers.items()}
        if part.exists():
            shutil.rmtree(part)
        os.replace(tmp, part)
        tokens = sum(m["num_tokens"] for m in metas.values())
        task_done("packing", rank, len(s.shards), started, f"{tokens} tokens")
        return
        yield  # a generator, as datatrove expects of a step

    def _write(self, batch, treatments, writers, tok) -> None:
        fraction = self.spec.heldout_fraction
        held = [is_heldout(rec["id"], fraction) for rec in batch]
        for split, treat in treatments.items():
            want = split != "train"
            records = [rec for rec, h in zip(batch, held, strict=True) if h == want]
            if split == "train" and self._window is not None:
                lo, hi = self._window
                first, self._train_seen = self._train_seen, self._train_seen + len(records)
                records = records[max(lo - first, 0) : max(hi - first, 0)]
            for ids, scores, n in encode_batches(records, tok, treat, max(1, len(records))):
                writers[split].add(ids, scores, n)
            self.stat_update(f"{split}_documents", value=len(records))


def kept_records(spec: PackSpec, rank: int, on_duplicate=None):
    """The records of scored shard `rank` in order, later copies dropped (`data.dedup`)."""
    keep = None
    if spec.dedup_file:
        start = _row_offset(Path(spec.scored_dir), rank)
        keep = np.load(spec.dedup_file, mmap_mode="r")[start:]
    for i, rec in enumerate(iter_shard(Path(spec.shards[rank]))):
        if keep is not None and not keep[i]:
            if on_duplicate is not None:
                on_duplicate()
            continue
        yield rec


def _prefix(spec: PackSpec) -> tuple[int | None, int | None]:
    return spec.skip_tokens, spec.take_tokens


class CountShard(PipelineStep):
    """Token counts of scored shard `rank`'s training documents (for data.skip/take_tokens)."""

    name = "count tokens"
    type = "🔢 - TOKENIZER"

    def __init__(self, spec: PackSpec):
        super().__init__()
        self.spec = spec

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        """Write counts/shard-k.npy; yields nothing."""
        s = self.spec
        tok = _tokenizer(s.tokenizer, s.control_tokens)
        fraction = s.heldout_fraction
        train = (r for r in kept_records(s, rank) if not is_heldout(r["id"], fraction))
        counts = document_token_counts(train, tok)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, counts)

        atomic_write(counts_file(s.counts_dir, rank), write)
        return
        yield


def count_tokens(spec: PackSpec, run_stage: Callable = run_in_launch) -> None:
    """Count the training documents' tokens (missing shards only), then check the prefix window."""
    n = len(spec.shards)
    if not all(counts_file(spec.counts_dir, k).is_file() for k in range(n)):
        folder = Path(spec.counts_dir)
        run_stage([CountShard(spec)], n, folder / "datatrove", "counting tokens")
    shard_windows(spec.counts_dir, n, *_prefix(spec))  # an empty selection fails here


def pack_key(cfg: Config, job: ScoringJob, tokenizer_id: str, treatment_keys: list[str]) -> str:
    """Names a packed corpus by everything its blocks depend on."""
    raw = json.dumps(
        [
            job.corpus_fingerprint,
            job.scorer,
            job.scorer_options,
            tokenizer_id,
            treatment_keys,
            cfg.data.seq_len,
            cfg.run.seed,
            cfg.data.heldout_fraction,
            cfg.data.dedup,
            PACK_VERSION,
            *([cfg.data.skip_tokens, cfg.data.take_tokens] if has_prefix(cfg) else []),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def has_prefix(cfg: Config) -> bool:
    """Whether the run asks for a corpus prefix (data.skip_tokens or data.take_tokens)."""
    return cfg.data.skip_tokens is not None or cfg.data.take_tokens is not None


@dataclass(frozen=True)
class PackSpec:
    """Everything a pack (or count) task needs, as plain data: pickled for SLURM and Ray tasks."""

    out: str
    """The packed folder (`meta.json`, `parts/part-XXXXX/<split>/`)."""
    scored_dir: str
    """The scored shards' folder."""
    shards: tuple[str, ...]
    """Scored shard files, one per task, in order."""
    tokenizer: str
    """Tokenizer file or folder."""
    control_tokens: bool
    """Whether the tokenizer gets the control tokens (conditional training)."""
    seq_len: int
    """Tokens per block."""
    heldout_fraction: float
    """Documents held out by a hash of their id (`data.heldout_fraction`)."""
    objective: dict[str, Any]
    """The objective section (its `treat` rewrites training documents, e.g. control tokens)."""
    seed: int
    """`run.seed` (objectives that draw, e.g. conditional's token dropping)."""
    splits: tuple[str, ...] = ("train", "heldout")
    """Splits written per part."""
    dedup_file: str | None = None
    """Keep-mask of the rows (`data.dedup`); None keeps every row."""
    skip_tokens: int | None = None
    """`data.skip_tokens`: training tokens skipped at the start of the stream."""
    take_tokens: int | None = None
    """`data.take_tokens`: training tokens kept after the skipped ones."""
    counts_dir: str | None = None
    """Where the training documents' token counts go; None: no prefix window asked for."""

    def to_json(self) -> str:
        """JSON text of the spec."""
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> PackSpec:
        """The spec `to_json` wrote."""
        raw = json.loads(text)
        return cls(**{**raw, "shards": tuple(raw["shards"]), "splits": tuple(raw["splits"])})


def pack_spec(
    cfg: Config,
    scored_dir: Path,
    num_shards: int,
    out: Path,
    tokenizer: str,
    objective: Any,
    counts_dir: Path | None = None,
) -> PackSpec:
    """The pack spec of a run config over `num_shards` scored shards."""
    return PackSpec(
        out=str(out),
        scored_dir=str(scored_dir),
        shards=tuple(str(Path(scored_dir) / shard_name(k, num_shards)) for k in range(num_shards)),
        tokenizer=str(tokenizer),
        control_tokens=bool(objective.control_tokens),
        seq_len=cfg.data.seq_len,
        heldout_fraction=cfg.data.heldout_fraction,
        objective=asdict(cfg.objective),
        seed=cfg.run.seed,
        dedup_file=str(dedup_keep_file(scored_dir)) if cfg.data.dedup else None,
        skip_tokens=cfg.data.skip_tokens,
        take_tokens=cfg.data.take_tokens,
        counts_dir=str(counts_dir) if counts_dir is not None else None,
    )


def _row_offset(scored_dir: Path, shard: int) -> int:
    """Rows of the shards before `shard` (from their index files): where its dedup mask starts."""
    return sum(
        json.loads((Path(scored_dir) / index_name(k, ".json")).read_text())["rows"]
        for k in range(shard)
    )


def build_pack_meta(spec: PackSpec, tokenizer_fp: str) -> dict[str, Any]:
    """The packed folder's meta.json: every split's parts in shard order, with their counts."""
    out = Path(spec.out)
    splits: dict[str, Any] = {}
    token_dtype_name = None
    for split in spec.splits:
        parts = []
        for k in range(len(spec.shards)):
            rel = f"parts/part-{k:05d}/{split}"
            meta = json.loads((out / rel / "meta.json").read_text())
            token_dtype_name = meta["token_dtype"]
            parts.append({"path": rel, "num_blocks": meta["num_blocks"]})
            for key in ("num_documents", "num_tokens", "dropped_tail_tokens"):
                parts[-1][key] = meta[key]
        splits[split] = {
            "parts": parts,
            **{
                key: sum(p[key] for p in parts)
                for key in ("num_blocks", "num_documents", "num_tokens", "dropped_tail_tokens")
            },
        }
    return {
        "version": PACK_VERSION,
        "seq_len": spec.seq_len,
        "token_dtype": token_dtype_name,
        "tokenizer_fingerprint": tokenizer_fp,
        "splits": splits,
    }


def pack_pipeline(spec: PackSpec) -> list:
    """The pack stage's datatrove pipeline (one step: read, treat, tokenize, write)."""
    return [PackShard(spec)]


def publish_pack_meta(spec: PackSpec, tokenizer_fp: str) -> None:
    """Rank 0 writes the packed meta.json once every task is complete; the others wait for it."""
    out = Path(spec.out)
    publish_once(
        out / "meta.json",
        lambda tmp: tmp.write_text(json.dumps(build_pack_meta(spec, tokenizer_fp), indent=1)),
        out / "datatrove",
        "the packing meta.json",
    )


def pack_corpus(spec: PackSpec, tokenizer_fp: str, run_stage: Callable = run_in_launch) -> Path:
    """Pack this rank's share of the missing parts, wait for the others, publish meta.json."""
    out = Path(spec.out)
    if not (out / "meta.json").is_file():
        if spec.counts_dir:
            count_tokens(spec, run_stage)
        run_stage(pack_pipeline(spec), len(spec.shards), out / "datatrove", "packing")
        publish_pack_meta(spec, tokenizer_fp)
    return out
