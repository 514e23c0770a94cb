"""corpus plan -> scored shards -> tokenizer -> packed blocks, cached, built across ranks.

Every stage is keyed by what determines it, so a relaunch on a prepared corpus reads the plan,
the manifests and `meta.json` files only (a stat per source file, no text):
- plan: `harness.data.plan`, from metadata, pinned in the scored folder and checked at launch;
- scored shards: `data.scored_dir` (default `<cache_dir>/scored/<corpus key>-<scorer>-<options>`),
  a datatrove stage with one task per unit (`harness.data.score_stage`);
- tokenizer: a byte-level BPE trained on a bounded sample of the training split (rank 0; the
  other ranks wait on the file, not in a collective);
- packed blocks: `<cache_dir>/packed/<key>`, a datatrove stage with one task per shard writing
  every split in one pass (`harness.data.pack_stage`).
Inside a launch each rank runs its slice of each stage's tasks (`harness.data.executor`); the same
stages run on a cluster through `scripts/prepare.py` (`harness.data.prepare`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import Config
from harness.data.bpe import bpe_cache_file, bpe_sample
from harness.data.buckets import is_heldout
from harness.data.executor import publish_once, run_in_launch
from harness.data.hub import unit_commits
from harness.data.pack_stage import (
    ensure_dedup_mask,
    has_prefix,
    pack_corpus,
    pack_key,
    pack_spec,
)
from harness.data.packing import PackedBlocks
from harness.data.plan import CorpusPlan, corpus_key, load_or_make_plan
from harness.data.prefix import check_skip_bound
from harness.data.score_stage import (
    ScoringJob,
    ScoringManifest,
    iter_shard,
    score_corpus,
    scorer_key,
    shard_paths,
)
from harness.hub_refs import record_corpus
from harness.tasks import scorer_options_for
from harness.tokenizer import load_tokenizer, tokenizer_fingerprint, train_bpe

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """What training needs from the data stage."""

    tokenizer: Any
    train: PackedBlocks
    heldout: PackedBlocks  # objective.heldout_treatment(): untreated text, for eval/lm_loss
    corpus_fingerprint: str
    scored_dir: Path
    packed_dir: Path


def scored_dir_for(cfg: Config) -> Path:
    """Where the scored shards of this corpus (by its specification) and scorer live."""
    if cfg.data.scored_dir is not None:
        return Path(cfg.data.scored_dir)
    options = scorer_key(cfg.data.scorer, scorer_options_for(cfg.data))
    key = hashlib.sha256(options.encode()).hexdigest()[:8]
    scorer = cfg.data.scorer.rsplit(".", 1)[-1]
    return Path(cfg.data.cache_dir) / "scored" / f"{corpus_key(cfg.data)}-{scorer}-{key}"


def find_scored_dir(cfg: Config, folder: str | None) -> Path:
    """A run's scored shards: `folder` (the one its checkpoint names), else found (or made) again."""
    if folder and (Path(folder) / "manifest.json").is_file():
        return Path(folder)
    return run_scoring(cfg)[0]


def plan_corpus(cfg: Config) -> tuple[CorpusPlan, Path]:
    """The corpus plan (pinned one, checked against the sources, or a new one) and its scored folder;
    a `data.skip_tokens` beyond the plan's byte sizes fails here, before any scoring."""
    folder = scored_dir_for(cfg)
    plan = load_or_make_plan(cfg.data, folder)
    check_skip_bound(cfg.data.skip_tokens, plan.units)
    record_corpus(cfg, unit_commits(plan.units))  # hf: data sets: the commit, in the run's hub.json
    return plan, folder


def run_scoring(
    cfg: Config, plan: CorpusPlan | None = None, run_stage: Callable = run_in_launch
) -> tuple[Path, ScoringManifest, str]:
    """Make sure every shard is scored; return (folder, manifest, corpus fingerprint)."""
    folder = scored_dir_for(cfg)
    plan = plan or plan_corpus(cfg)[0]
    options = scorer_options_for(cfg.data)
    manifest = score_corpus(plan, folder, cfg.data, cfg.data.scorer, options, run_stage)
    return folder, manifest, manifest.job.corpus_fingerprint


def bpe_file(cfg: Config, corpus_fp: str) -> Path:
    """Where the BPE trained for this corpus is cached."""
    sample = f"{cfg.data.bpe_sample_bytes}:{cfg.data.heldout_fraction}:{cfg.data.dedup}"
    return bpe_cache_file(cfg.data.cache_dir, corpus_fp, cfg.data.vocab_size, sample)


def train_tokenizer(cfg: Config, scored: Path, manifest: ScoringManifest, out_file: Path) -> None:
    """Train the BPE on a sample of the training split, streamed from the shards."""

    keep_mask = None
    if cfg.data.dedup:
        keep_mask = np.load(ensure_dedup_mask(scored, manifest), mmap_mode="r")
    fraction = cfg.data.heldout_fraction

    def records():
        row = 0
        for shard in shard_paths(scored, manifest):
            for rec in iter_shard(shard, columns=["id", "texts"]):
                if keep_mask is None or keep_mask[row]:
                    yield rec
                row += 1

    texts = bpe_sample(
        records(),
        lambda rec: not is_heldout(rec["id"], fraction),
        manifest.text_bytes,
        cfg.data.bpe_sample_bytes,
    )
    log.info("training a byte-level BPE (vocab %d) -> %s", cfg.data.vocab_size, out_file)
    train_bpe(texts, cfg.data.vocab_size, out_file)


def ensure_tokenizer(cfg: Config, scored: Path, manifest: ScoringManifest) -> str:
    """The tokenizer's path: `data.tokenizer`, or the cached BPE (trained once, on rank 0)."""
    if cfg.data.tokenizer is not None:
        return cfg.data.tokenizer
    path = bpe_file(cfg, manifest.job.corpus_fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    publish_once(
        path,
        lambda tmp: train_tokenizer(cfg, scored, manifest, tmp),
        path.parent,
        "the BPE tokenizer",
    )
    return str(path)


def tokenizer_id(
    cfg: Config, corpus_fp: str, control_tokens: bool, fingerprint: str | None = None
) -> str:
    """Names the tokenizer before it exists (a BPE by its cache file), so that a cluster can
    submit the pack stage together with scoring; meta.json records the real fingerprint. A
    given tokenizer is named by its fingerprint (`fingerprint` when the caller has loaded it)."""
    if cfg.data.tokenizer is None:
        return "bpe:" + bpe_file(cfg, corpus_fp).parent.name
    if fingerprint is None:
        fingerprint = tokenizer_fingerprint(load_tokenizer(cfg.data.tokenizer, control_tokens))
    return fingerprint


def packed_dir_for(
    cfg: Config, job: ScoringJob, objective: Any, tokenizer_fp: str | None = None
) -> Path:
    """Where this scored corpus (its scoring job) is packed for this tokenizer and objective."""
    keys = [objective.treatment_key(), objective.heldout_treatment()[1]]
    control = bool(objective.control_tokens)
    tok_id = tokenizer_id(cfg, job.corpus_fingerprint, control, tokenizer_fp)
    return Path(cfg.data.cache_dir) / "packed" / pack_key(cfg, job, tok_id, keys)


def counts_dir_for(cfg: Config, job: ScoringJob) -> Path | None:
    """Where the token counts of the training documents go (for data.skip/take_tokens; None
    without a prefix): one folder per scored corpus, tokenizer and split, shared by every
    objective and prefix. The tokenizer is named without control tokens (plain text is counted)."""
    if not has_prefix(cfg):
        return None
    tok_id = tokenizer_id(cfg, job.corpus_fingerprint, False)
    raw = json.dumps(
        [
            job.corpus_fingerprint,
            job.scorer,
            job.scorer_options,
            tok_id,
            cfg.data.heldout_fraction,
            cfg.data.dedup,
            "counts-v1",
        ],
        sort_keys=True,
    )
    return (
        Path(cfg.data.cache_dir)
        / "packed"
        / f"counts-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"
    )


def pack_data(
    cfg: Config,
    scored: Path,
    manifest: ScoringManifest,
    tok_path: str,
    objective: Any,
    run_stage: Callable = run_in_launch,
):
    """Pack (if needed) and open the splits; returns (tokenizer, folder, train, heldout)."""
    control = bool(objective.control_tokens)
    tok = load_tokenizer(tok_path, control)
    tok_fp = tokenizer_fingerprint(tok)
    out = packed_dir_for(cfg, manifest.job, objective, tok_fp)
    if cfg.data.dedup:
        ensure_dedup_mask(scored, manifest)
    counts = counts_dir_for(cfg, manifest.job)
    spec = pack_spec(cfg, scored, manifest.job.num_shards, out, tok_path, objective, counts)
    pack_corpus(spec, tok_fp, run_stage)
    meta_fp = json.loads((out / "meta.json").read_text())["tokenizer_fingerprint"]
    if meta_fp != tok_fp:
        raise ValueError(
            f"packed blocks {out} were made with another tokenizer (fingerprint {meta_fp}, now "
            f"{tok_fp}): delete that folder to pack again"
        )
    splits = [PackedBlocks(out, split) for split in ("train", "heldout")]
    return tok, out, *splits


def prepare_data(
    cfg: Config,
    objective: Any,
    plan: CorpusPlan | None = None,
    run_stage: Callable = run_in_launch,
) -> DataBundle:
    """Plan, score (if needed), load or train the tokenizer, pack (if needed), memory-map the blocks.

    `run_stage(pipeline, n_tasks, logging_dir, what)` runs a stage's tasks: by default this
    rank's slice inside a launch; `harness.data.prepare` passes a multi-worker local executor.
    """
    started = time.perf_counter()
    scored, manifest, corpus_fp = run_scoring(cfg, plan, run_stage)
    scored_at = time.perf_counter()
    tok_path = ensure_tokenizer(cfg, scored, manifest)
    tokenizer_at = time.perf_counter()
    tok, out, train, heldout = pack_data(cfg, scored, manifest, tok_path, objective, run_stage)
    # One line a benchmark (scripts/bench_data.py) and a user can read the stages' cost from.
    log.info(
        "data stage times: scoring %.2f s, tokenizer %.2f s, packing %.2f s",
        scored_at - started,
        tokenizer_at - scored_at,
        time.perf_counter() - tokenizer_at,
    )
    log.info(
        "data: %d scored documents in %s; %d train blocks (%d tokens), %d held-out blocks of %d "
        "tokens in %s",
        manifest.rows,
        scored,
        len(train),
        train.meta["num_tokens"],
        len(heldout),
        cfg.data.seq_len,
        out,
    )
    return DataBundle(tok, train, heldout, corpus_fp, scored, out)
