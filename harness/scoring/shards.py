"""Distributed scoring into deterministic Parquet shards, safe to kill and rerun at any moment.

    python scripts/score.py --config configs/pep8_mle.yaml --config configs/quickstart.yaml
    deepspeed --num_gpus 2 scripts/score.py --config ...

The corpus (in its deterministic order) is cut into `num_shards` contiguous shards; rank r scores
shards r, r+W, ... and writes each as `data/shard-00007-of-00064.parquet` (paper schema + `id`)
through a temporary file and `os.replace`, so a shard file exists only when complete. The shards sit
in `data/` apart from the JSON metadata so that `datasets.load_dataset("parquet", data_dir=<dir>/data)`
reads them as they are. `scoring.json` pins the
scorer and corpus of a folder before any shard is written (a rerun with another scorer or corpus is
an error, never a mix); `manifest.json` is written by rank 0 once every shard exists.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import distributed as dist
from harness.data.corpus import Document
from harness.scoring.base import build_scorer, make_record

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def shard_name(index: int, num_shards: int) -> str:
    """Path of one shard, relative to the scored folder."""
    return f"data/shard-{index:05d}-of-{num_shards:05d}.parquet"


def shard_bounds(num_docs: int, num_shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) document ranges of each shard; they cover every document once."""
    return [
        (k * num_docs // num_shards, (k + 1) * num_docs // num_shards) for k in range(num_shards)
    ]


def balanced_assignment(shards: list[int], sizes: list[int], world: int) -> list[list[int]]:
    """Deal shards to ranks, largest first to the least-loaded rank (LPT), the same on every rank.

    Contiguous shards of a sorted corpus differ a lot in size (a few huge files cluster), so
    round-robin leaves one rank working alone at the end.
    """
    loads = [0] * world
    out: list[list[int]] = [[] for _ in range(world)]
    for k in sorted(shards, key=lambda k: (-sizes[k], k)):
        r = min(range(world), key=lambda r: (loads[r], r))
        out[r].append(k)
        loads[r] += sizes[k]
    return [sorted(ks) for ks in out]


def scorer_key(name: str, options: dict[str, Any]) -> str:
    """Canonical description of a scorer and its options."""
    return f"{name}{json.dumps(options, sort_keys=True)}"


@dataclass
class ScoringJob:
    """What a scored folder holds: pinned in scoring.json before work starts."""

    scorer: str
    scorer_options: dict[str, Any]
    corpus_fingerprint: str
    num_shards: int
    num_documents: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"schema_version": SCHEMA_VERSION, **self.__dict__}


def _check_or_pin_job(folder: Path, job: ScoringJob) -> None:
    """Rank 0 writes scoring.json, or checks that an existing one describes the same job."""
    pin = folder / "scoring.json"
    wanted = job.to_dict()
    for stale in folder.glob(
        "**/.*.tmp*"
    ):  # left by a run killed mid-write; never a finished shard
        stale.unlink(missing_ok=True)
    if pin.is_file():
        have = json.loads(pin.read_text())
        diffs = [
            k
            for k in ("scorer", "scorer_options", "corpus_fingerprint", "num_shards")
            if have.get(k) != wanted[k]
        ]
        if diffs:
            detail = "; ".join(
                f"{k}: folder has {have.get(k)!r}, this run has {wanted[k]!r}" for k in diffs
            )
            raise ValueError(
                f"data.scored_dir {folder} holds shards of another scoring job ({detail}). "
                "Use another data.scored_dir (or delete the folder) instead of mixing them."
            )
        return
    (folder / "data").mkdir(parents=True, exist_ok=True)
    tmp = pin.with_name(f".scoring.json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(wanted, indent=2))
    os.replace(tmp, pin)


def write_shard(path: Path, records: list[dict[str, Any]]) -> None:
    """Write records as one Parquet file atomically (temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("texts", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float64())),
            ("avg_score", pa.float64()),
            ("num_sents", pa.int64()),
        ]
    )
    table = pa.Table.from_pylist(records, schema=schema)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_shard(path: Path) -> list[dict[str, Any]]:
    """Records of one shard; a corrupt file or a record whose texts and scores differ in length is an error naming it."""
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:
        raise ValueError(
            f"scored shard {path} is corrupt or not Parquet ({err}); delete it and rerun scoring"
        ) from None
    for i, row in enumerate(rows):
        if not {"id", "texts", "scores"} <= row.keys():
            raise ValueError(
                f"scored shard {path} record {i}: missing `id`, `texts` or `scores` (wrong schema)"
            )
        if len(row["texts"]) != len(row["scores"]):
            raise ValueError(
                f"scored shard {path} record {i} (id {row['id']}): {len(row['texts'])} texts but {len(row['scores'])} scores"
            )
    return rows


def _score_docs(scorer, docs: list[Document]) -> list[dict[str, Any]]:
    """Score documents (passing already-scored ones through unchanged) into records with ids."""
    todo = [d for d in docs if d.texts is None]
    scored = iter(scorer.score_documents([d.text for d in todo]) if todo else [])
    records = []
    for doc in docs:
        rec = make_record(doc.texts, doc.scores) if doc.texts is not None else next(scored)
        records.append({"id": doc.id, **rec})
    return records


def score_shards(
    docs: list[Document],
    corpus_fp: str,
    folder: Path,
    num_shards: int,
    scorer_name: str,
    scorer_options: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    """Score this rank's missing shards, then (rank 0) write the manifest; return the manifest."""
    folder = Path(folder)
    num_shards = min(num_shards, len(docs))
    job = ScoringJob(scorer_name, dict(scorer_options), corpus_fp, num_shards, len(docs))
    error = None
    if dist.is_main():
        try:
            _check_or_pin_job(folder, job)
        except ValueError as err:
            error = str(err)
    error = dist.broadcast_object(error)
    if error:
        raise ValueError(error)
    manifest_file = folder / "manifest.json"
    if manifest_file.is_file():
        return json.loads(manifest_file.read_text())
    bounds = shard_bounds(len(docs), num_shards)
    # Rank 0 decides what is left, before any rank writes, so every rank deals the same shards.
    todo = [k for k in range(num_shards) if not (folder / shard_name(k, num_shards)).is_file()]
    todo = dist.broadcast_object(todo)
    shard_bytes = [sum(len(d.text) for d in docs[lo:hi]) for lo, hi in bounds]
    mine = balanced_assignment(todo, shard_bytes, dist.world_size())[dist.rank()]
    if mine:
        scorer = build_scorer(scorer_name, **scorer_options)
        bar = None
        if progress:
            from tqdm import tqdm

            total = sum(bounds[k][1] - bounds[k][0] for k in mine)
            bar = tqdm(
                total=total, desc=f"scoring rank {dist.rank()}", unit="doc", position=dist.rank()
            )
        start, n_docs, n_bytes = time.perf_counter(), 0, 0
        for k in mine:
            lo, hi = bounds[k]
            shard_docs = docs[lo:hi]
            write_shard(folder / shard_name(k, num_shards), _score_docs(scorer, shard_docs))
            n_docs += len(shard_docs)
            n_bytes += sum(len(d.text.encode()) for d in shard_docs)
            if bar is not None:
                bar.update(len(shard_docs))
        elapsed = time.perf_counter() - start
        if bar is not None:
            bar.close()
        log.info(
            "rank %d scored %d documents in %.1fs: %.1f documents/s, %.2f MB/s",
            dist.rank(),
            n_docs,
            elapsed,
            n_docs / elapsed,
            n_bytes / elapsed / 1e6,
        )
    dist.barrier()
    if dist.is_main():
        write_manifest(folder, job)
    dist.barrier()
    return json.loads(manifest_file.read_text())


def write_manifest(folder: Path, job: ScoringJob) -> None:
    """Count the rows of every shard and publish manifest.json (all shards must exist)."""
    import pyarrow.parquet as pq

    shards = []
    for k in range(job.num_shards):
        path = folder / shard_name(k, job.num_shards)
        if not path.is_file():
            raise RuntimeError(f"scoring incomplete: {path} missing")
        shards.append(
            {"file": shard_name(k, job.num_shards), "rows": pq.ParquetFile(path).metadata.num_rows}
        )
    manifest = {**job.to_dict(), "shards": shards, "rows": sum(s["rows"] for s in shards)}
    tmp = folder / f".manifest.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, folder / "manifest.json")


def shard_paths(folder: Path, manifest: dict[str, Any]) -> list[Path]:
    """The shard files a manifest lists, in order."""
    return [Path(folder) / s["file"] for s in manifest["shards"]]
