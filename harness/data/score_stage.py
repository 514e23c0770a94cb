"""Scoring as a datatrove pipeline: one task per corpus unit, one Parquet shard per task.

    python scripts/score.py --config configs/pep8_mle.yaml --config configs/quickstart.yaml
    deepspeed --num_gpus 2 scripts/score.py --config ...
    python scripts/prepare.py --config ... --executor slurm       # a cluster, see the README

Task k reads unit k of the plan (`harness.data.plan`), scores its documents in batches (records
that already carry `texts` and `scores`, the paper's published data, pass through unchanged) and
writes `data/shard-0000k-of-0000n.parquet` (paper schema + `id`) row group by row group to a
temporary file renamed into place, so a shard file exists only when complete; beside it,
`index/shard-0000k.json` (rows, text bytes) and `index/shard-0000k.npy` (63-bit text digests, for
deduplication by digest). datatrove's `completions/` markers make a rerun skip finished tasks, so
a kill costs at most the unit each worker was on. Shards depend only on their unit: the same bytes
whatever the number of ranks, workers or nodes. `plan.json` and `scoring.json` pin the folder's
corpus and scorer before any task runs; `manifest.json` is published once every task is complete.
The shards load with `datasets.load_dataset("parquet", data_dir=<folder>/data)`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document as TroveDocument
from datatrove.pipeline.base import PipelineStep

from harness.atomic import atomic_write_bytes
from harness.config import DataConfig
from harness.data.corpus import read_unit, text_digest
from harness.data.executor import group_rank, publish_once, run_in_launch, task_done, wait_for
from harness.data.plan import CorpusPlan
from harness.scoring.base import build_scorer, make_record

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
ROWS_PER_GROUP = 1000


def shard_name(index: int, num_shards: int) -> str:
    """Path of one shard, relative to the scored folder."""
    return f"data/shard-{index:05d}-of-{num_shards:05d}.parquet"


def index_name(index: int, suffix: str) -> str:
    """Path of a shard's side file (`.json` counts, `.npy` digests), relative to the scored folder."""
    return f"index/shard-{index:05d}{suffix}"


def scorer_key(name: str, options: dict[str, Any]) -> str:
    """Canonical description of a scorer and its options."""
    return f"{name}{json.dumps(options, sort_keys=True)}"


def shard_schema():
    """The paper's record schema plus `id`."""

    return pa.schema(
        [
            ("id", pa.string()),
            ("texts", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float64())),
            ("avg_score", pa.float64()),
            ("num_sents", pa.int64()),
        ]
    )


_PLANS: dict[str, CorpusPlan] = {}
_SCORERS: dict[str, Any] = {}


def _plan(path: str) -> CorpusPlan:
    if path not in _PLANS:  # one read per process, however many tasks it runs
        _PLANS[path] = CorpusPlan.from_json(Path(path).read_text())
    return _PLANS[path]


class UnitReader(PipelineStep):
    """Reads unit `rank` of a saved plan (datatrove's rank is the task index)."""

    name = "corpus unit"
    type = "📖 - READER"

    def __init__(self, plan_file: str, data: dict[str, Any]):
        super().__init__()
        self.plan_file = plan_file
        self.data = data

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[TroveDocument]:
        """Yield the unit's documents; pre-scored ones carry their segments in metadata."""
        unit = _plan(self.plan_file).units[rank]
        for doc in read_unit(unit, DataConfig(**self.data)):
            meta = {} if doc.texts is None else {"texts": doc.texts, "scores": doc.scores}
            self.stat_update("documents")
            yield TroveDocument(text=doc.text, id=doc.id, metadata=meta)


class ScoreDocuments(PipelineStep):
    """Scores documents in batches with the task's scorer (built once per process, only if needed)."""

    name = "misalignment scorer"
    type = "🔢 - SCORER"

    def __init__(self, scorer: str, options: dict[str, Any], batch_docs: int = 64):
        super().__init__()
        self.scorer = scorer
        self.options = options
        self.batch_docs = batch_docs

    def _scorer(self):
        key = scorer_key(self.scorer, self.options)
        if key not in _SCORERS:
            _SCORERS[key] = build_scorer(self.scorer, **self.options)
        return _SCORERS[key]

    def _flush(self, batch: list[TroveDocument]) -> Iterator[TroveDocument]:
        todo = [d for d in batch if "texts" not in d.metadata]
        with self.track_time(unit="batch"):
            scored = iter(self._scorer().score_documents([d.text for d in todo]) if todo else [])
        for doc in batch:
            if "texts" in doc.metadata:
                doc.metadata = make_record(doc.metadata["texts"], doc.metadata["scores"])
                self.stat_update("passed_through")
            else:
                doc.metadata = next(scored)
                self.stat_update("scored")
            yield doc

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[TroveDocument]:
        """Attach the paper's record (`texts`, `scores`, `avg_score`, `num_sents`) to each document."""
        batch: list[TroveDocument] = []
        for doc in data or ():
            batch.append(doc)
            if len(batch) >= self.batch_docs:
                yield from self._flush(batch)
                batch = []
        if batch:
            yield from self._flush(batch)


class ShardWriter(PipelineStep):
    """Writes a task's records as one Parquet shard, atomically, plus its index files.

    Our own writer rather than datatrove's ParquetWriter: that one writes under the final name as
    it goes, so a kill leaves a truncated file that `datasets.load_dataset(data_dir=...)` would
    read; this one renames a finished file into place, and records the counts the manifest needs.
    """

    name = "scored shard"
    type = "💽 - WRITER"

    def __init__(self, folder: str, num_shards: int, what: str = "scoring"):
        super().__init__()
        self.folder = folder
        self.num_shards = num_shards
        self.what = what

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        """Consume the documents into shard `rank`; yields nothing."""

        started = time.time()
        folder = Path(self.folder)
        path = folder / shard_name(rank, self.num_shards)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        path.parent.mkdir(parents=True, exist_ok=True)
        stale = [*path.parent.glob(f".{path.name}.tmp*")]
        stale += (folder / "index").glob(f".shard-{rank:05d}.*.tmp*")
        for leftover in stale:  # a killed worker's, on this task
            leftover.unlink(missing_ok=True)
        rows: list[dict[str, Any]] = []
        digests: list[int] = []
        text_bytes = 0
        schema = shard_schema()
        with pq.ParquetWriter(tmp, schema) as writer:
            for doc in data or ():
                rows.append({"id": doc.id, **doc.metadata})
                digests.append(text_digest(doc.text))
                text_bytes += len(doc.text.encode())
                if len(rows) >= ROWS_PER_GROUP:
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                    rows = []
            if rows or not digests:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        atomic_write_bytes(
            folder / index_name(rank, ".npy"), _npy_bytes(np.asarray(digests, np.int64))
        )
        counts = {"rows": len(digests), "text_bytes": text_bytes}
        atomic_write_bytes(folder / index_name(rank, ".json"), json.dumps(counts).encode())
        os.replace(tmp, path)  # last: the shard exists only when everything of the task does
        self.stat_update("rows", value=len(digests))
        rate = len(digests) / max(time.time() - started, 1e-9)
        detail = f"{len(digests)} documents, {text_bytes / 1e6:.1f} MB, {rate:.1f} documents/s"
        task_done("scoring", rank, self.num_shards, started, detail)
        return
        yield  # a generator, as datatrove expects of a step


def _npy_bytes(array) -> bytes:

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@dataclass
class ScoringJob:
    """What a scored folder holds: pinned in scoring.json before work starts."""

    scorer: str
    scorer_options: dict[str, Any]
    corpus_fingerprint: str
    num_shards: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ScoringJob:
        """The job of a scoring.json or manifest.json (other keys ignored)."""
        return cls(
            raw["scorer"], raw["scorer_options"], raw["corpus_fingerprint"], raw["num_shards"]
        )


@dataclass(frozen=True)
class ShardCount:
    """One scored shard of a manifest: its file (relative to the folder) and what it holds."""

    file: str
    rows: int
    text_bytes: int


@dataclass(frozen=True)
class ScoringManifest:
    """manifest.json of a complete scored folder: the job and every shard's counts, in order.

    Its JSON keeps the scoring.json keys at the top level (scorer, corpus_fingerprint, ...) beside
    `shards`, `rows` and `text_bytes`, so earlier manifests read unchanged.
    """

    job: ScoringJob
    shards: tuple[ShardCount, ...]

    @property
    def rows(self) -> int:
        """Documents scored, over all shards."""
        return sum(s.rows for s in self.shards)

    @property
    def text_bytes(self) -> int:
        """UTF-8 bytes of the documents' text, over all shards."""
        return sum(s.text_bytes for s in self.shards)

    def to_json(self) -> str:
        """The JSON text of manifest.json."""
        shards = [asdict(s) for s in self.shards]
        out = {**self.job.to_dict(), "shards": shards, "rows": self.rows}
        return json.dumps({**out, "text_bytes": self.text_bytes}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ScoringManifest:
        """Parse manifest.json."""
        raw = json.loads(text)
        shards = tuple(ShardCount(s["file"], s["rows"], s["text_bytes"]) for s in raw["shards"])
        return cls(ScoringJob.from_dict(raw), shards)

    @classmethod
    def read(cls, folder: str | Path) -> ScoringManifest:
        """The manifest of the scored folder `folder`."""
        return cls.from_json((Path(folder) / "manifest.json").read_text())


def pin_job(folder: Path, job: ScoringJob, plan: CorpusPlan) -> None:
    """Write scoring.json and plan.json, or check that the existing ones describe the same job.

    Rank 0 alone writes them (the other ranks of a launch wait for scoring.json): no rank writes in
    the folder before the job is pinned, so the sweep of a killed run's temporary files can never
    delete another rank's write in progress.
    """
    folder.mkdir(parents=True, exist_ok=True)
    pin = folder / "scoring.json"
    wanted = job.to_dict()
    if group_rank() == 0 and pin.is_file() and not (folder / "manifest.json").is_file():
        if json.loads(pin.read_text()) != wanted:
            clear_unfinished_job(folder)  # an unfinished job of a corpus since changed

    def write_pin(tmp: Path) -> None:
        for stale in folder.glob("**/.*.tmp*"):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
        atomic_write_bytes(folder / "plan.json", plan.to_json().encode())
        tmp.write_text(json.dumps(wanted, indent=2))

    publish_once(pin, write_pin, folder / "datatrove", "the scoring job's scoring.json")
    if group_rank() != 0 and not (folder / "manifest.json").is_file():
        # Rank 0 may be replacing an unfinished job's pin: wait for the one of this job.
        wait_for(
            lambda: _read_pin(pin) == wanted,
            folder / "datatrove",
            "the scoring job's scoring.json",
        )
    have = json.loads(pin.read_text())
    diffs = [k for k in wanted if have.get(k) != wanted[k]]
    if diffs:
        detail = "; ".join(
            f"{k}: folder has {have.get(k)!r}, this run has {wanted[k]!r}" for k in diffs
        )
        raise ValueError(
            f"data.scored_dir {folder} holds shards of another scoring job ({detail}). "
            "Use another data.scored_dir (or delete the folder) instead of mixing them."
        )


def _read_pin(pin: Path) -> dict[str, Any] | None:
    try:
        return json.loads(pin.read_text())
    except (OSError, ValueError):  # not there (yet, or being replaced)
        return None


def clear_unfinished_job(folder: Path) -> None:
    """Remove what an unfinished scoring job left (pin, plan, shards, task markers): never a
    folder with a manifest, whose shards a run may read."""

    if (folder / "manifest.json").is_file():
        raise RuntimeError(f"{folder} holds a finished scoring job")
    log.info("clearing the unfinished scoring job in %s (its corpus changed)", folder)
    for name in ("scoring.json", "plan.json"):
        (folder / name).unlink(missing_ok=True)
    for sub in ("data", "index", "datatrove"):
        shutil.rmtree(folder / sub, ignore_errors=True)


def scoring_pipeline(folder: Path, data: DataConfig, scorer: str, options: dict[str, Any]) -> list:
    """reader -> scorer -> writer, for the plan pinned in `folder`."""
    plan = CorpusPlan.from_json((folder / "plan.json").read_text())
    return [
        UnitReader(str(folder / "plan.json"), asdict(data)),
        ScoreDocuments(scorer, options),
        ShardWriter(str(folder), len(plan.units)),
    ]


def build_manifest(folder: Path, job: ScoringJob) -> ScoringManifest:
    """The manifest of a complete folder: every shard with its rows and text bytes."""
    shards = []
    for k in range(job.num_shards):
        path = folder / shard_name(k, job.num_shards)
        if not path.is_file():
            raise RuntimeError(f"scoring incomplete: {path} missing")
        counts = json.loads((folder / index_name(k, ".json")).read_text())
        shards.append(
            ShardCount(shard_name(k, job.num_shards), counts["rows"], counts["text_bytes"])
        )
    manifest = ScoringManifest(job, tuple(shards))
    if manifest.rows == 0:
        raise ValueError(f"data.corpus: the corpus yielded no documents (scored into {folder})")
    return manifest


def publish_manifest(folder: Path, job: ScoringJob) -> None:
    """Rank 0 writes manifest.json once every task is complete; the other ranks wait for it."""
    publish_once(
        folder / "manifest.json",
        lambda tmp: tmp.write_text(build_manifest(folder, job).to_json()),
        folder / "datatrove",
        "the scoring manifest",
    )


def score_corpus(
    plan: CorpusPlan,
    folder: Path,
    data: DataConfig,
    scorer: str,
    options: dict[str, Any],
    run_stage: Callable = run_in_launch,
) -> ScoringManifest:
    """Score this rank's share of the missing shards, wait for the others, return the manifest."""
    folder = Path(folder)
    manifest_file = folder / "manifest.json"
    job = ScoringJob(scorer, dict(options), plan.fingerprint, len(plan.units))
    pin_job(folder, job, plan)
    if not manifest_file.is_file():
        pipeline = scoring_pipeline(folder, data, scorer, options)
        run_stage(pipeline, job.num_shards, folder / "datatrove", "scoring")
        publish_manifest(folder, job)
    return ScoringManifest.read(folder)


def iter_shard(path: Path, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Records of one shard, row group by row group; a corrupt file or record is an error naming it."""

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:
        raise ValueError(
            f"scored shard {path} is corrupt or not Parquet ({err}); delete it and rerun scoring"
        ) from None
    names = set(pf.schema_arrow.names)
    if not {"id", "texts", "scores"} <= names:
        raise ValueError(f"scored shard {path}: missing `id`, `texts` or `scores` (wrong schema)")
    row = 0
    for group in range(pf.num_row_groups):
        try:
            rows = pf.read_row_group(group, columns=columns).to_pylist()
        except Exception as err:
            raise ValueError(
                f"scored shard {path} row group {group} is corrupt ({err}); delete it and rerun scoring"
            ) from None
        for rec in rows:
            if columns is None and len(rec["texts"]) != len(rec["scores"]):
                raise ValueError(
                    f"scored shard {path} row {row} (id {rec['id']}): {len(rec['texts'])} texts "
                    f"but {len(rec['scores'])} scores"
                )
            row += 1
            yield rec


def read_shard(path: Path) -> list[dict[str, Any]]:
    """All records of one shard (a shard holds one bounded unit)."""
    return list(iter_shard(path))


def shard_paths(folder: Path, manifest: ScoringManifest) -> list[Path]:
    """The shard files a manifest lists, in order."""
    return [Path(folder) / s.file for s in manifest.shards]
