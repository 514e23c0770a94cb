"""corpus -> scored shards -> tokenizer -> packed train/held-out blocks, cached, built across ranks.

Every stage is keyed by what determines it, so reruns reuse what exists:
- scored shards: `data.scored_dir` (default `<cache_dir>/scored/<corpus fingerprint>-<scorer>`),
  scored in parallel across ranks (`harness.scoring.shards`);
- tokenizer: a byte-level BPE trained on the training split, keyed by corpus and vocab size;
- packed blocks: `<cache_dir>/packed/<split>-<key>` with key = (scored data, tokenizer, treatment,
  seq_len, seed, held-out fraction). Each scored shard is packed on its own (rank r packs shards
  r, r+W, ...) and rank 0 concatenates the parts in shard order, so the result does not depend on
  the world size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import distributed as dist
from harness.config import Config, scorer_options_for
from harness.data.corpus import fingerprint, is_heldout, load_documents
from harness.data.packing import PackedBlocks, Treatment, concat_packed, pack_blocks, plain_segments
from harness.data.tokenizer import bpe_cache_file, load_tokenizer, tokenizer_fingerprint, train_bpe
from harness.scoring.shards import read_shard, score_shards, scorer_key, shard_paths

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """What training needs from the data stage."""

    tokenizer: Any
    train: PackedBlocks
    heldout: PackedBlocks
    corpus_fingerprint: str
    scored_dir: Path


def scored_dir_for(cfg: Config, corpus_fp: str) -> Path:
    """Where the scored shards of this corpus and scorer live."""
    if cfg.data.scored_dir is not None:
        return Path(cfg.data.scored_dir)
    key = hashlib.sha256(
        scorer_key(cfg.data.scorer, scorer_options_for(cfg.data)).encode()
    ).hexdigest()[:8]
    return Path(cfg.data.cache_dir) / "scored" / f"{corpus_fp}-{cfg.data.scorer}-{key}"


def run_scoring(cfg: Config) -> tuple[Path, dict[str, Any], str]:
    """Load the corpus and make sure every shard is scored; return (folder, manifest, corpus fingerprint)."""
    docs = load_documents(cfg.data)
    corpus_fp = fingerprint(docs)
    folder = scored_dir_for(cfg, corpus_fp)
    manifest = score_shards(
        docs,
        corpus_fp,
        folder,
        cfg.data.num_shards,
        cfg.data.scorer,
        scorer_options_for(cfg.data),
        progress=cfg.logging.progress_bar,
    )
    return folder, manifest, corpus_fp


def _split_filter(fraction: float, heldout: bool) -> Callable[[dict[str, Any]], bool]:
    return lambda rec: is_heldout(rec["id"], fraction) == heldout


def _get_tokenizer(cfg: Config, shards: list[Path], corpus_fp: str, control_tokens: bool):
    if cfg.data.tokenizer is not None:
        return load_tokenizer(cfg.data.tokenizer, control_tokens)
    path = bpe_cache_file(cfg.data.cache_dir, corpus_fp, cfg.data.vocab_size)
    if dist.is_main() and not path.is_file():
        keep = _split_filter(cfg.data.heldout_fraction, heldout=False)
        texts = ["".join(r["texts"]) for shard in shards for r in read_shard(shard) if keep(r)]
        log.info(
            "training a byte-level BPE (vocab %d) on %d documents -> %s",
            cfg.data.vocab_size,
            len(texts),
            path,
        )
        train_bpe(texts, cfg.data.vocab_size, path)
    dist.barrier()
    return load_tokenizer(path, control_tokens)


def _pack_key(
    cfg: Config, manifest: dict[str, Any], tok_fp: str, treatment: str, split: str
) -> str:
    raw = json.dumps(
        [
            manifest["corpus_fingerprint"],
            manifest["scorer"],
            manifest["scorer_options"],
            tok_fp,
            treatment,
            cfg.data.seq_len,
            cfg.run.seed,
            cfg.data.heldout_fraction,
            split,
            "pack-v2",
        ],
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def pack_split(
    cfg: Config, shards: list[Path], tok, treat: Treatment, folder: Path, heldout: bool
) -> Path:
    """Pack one split of the scored shards into `folder`, shards spread over ranks (cached)."""
    if (folder / "meta.json").is_file():
        return folder
    keep = _split_filter(cfg.data.heldout_fraction, heldout)
    parts_root = folder.with_name(folder.name + ".parts")
    parts = [parts_root / f"part-{k:05d}" for k in range(len(shards))]
    for k in range(dist.rank(), len(shards), dist.world_size()):
        if not (parts[k] / "meta.json").is_file():
            records = (r for r in read_shard(shards[k]) if keep(r))
            pack_blocks(records, tok, cfg.data.seq_len, parts[k], treat)
    dist.barrier()
    if dist.is_main():
        concat_packed(parts, folder)
        shutil.rmtree(parts_root, ignore_errors=True)
    dist.barrier()
    return folder


def prepare_data(
    cfg: Config,
    treat: Treatment = plain_segments,
    treatment_key: str = "plain",
    control_tokens: bool = False,
) -> DataBundle:
    """Score (if needed), load or train the tokenizer, pack (if needed) and memory-map the blocks."""
    scored, manifest, corpus_fp = run_scoring(cfg)
    shards = shard_paths(scored, manifest)
    tok = _get_tokenizer(cfg, shards, corpus_fp, control_tokens)
    tok_fp = tokenizer_fingerprint(tok)
    folders = {}
    for split in ("train", "heldout"):
        folder = (
            Path(cfg.data.cache_dir)
            / "packed"
            / f"{split}-{_pack_key(cfg, manifest, tok_fp, treatment_key, split)}"
        )
        folders[split] = pack_split(cfg, shards, tok, treat, folder, heldout=split == "heldout")
    train, heldout = PackedBlocks(folders["train"]), PackedBlocks(folders["heldout"])
    log.info(
        "data: %d scored documents in %s; %d train blocks (%d tokens), %d held-out blocks of %d tokens",
        manifest["rows"],
        scored,
        len(train),
        train.meta["num_tokens"],
        len(heldout),
        cfg.data.seq_len,
    )
    return DataBundle(tok, train, heldout, corpus_fp, scored)
