"""corpus -> records -> tokenizer -> packed train/held-out blocks, cached and shared by all ranks.

Rank 0 builds what is missing in the cache while the other ranks wait at a barrier; every rank
then memory-maps the same files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import distributed as dist
from harness.config import Config
from harness.data.corpus import Document, fingerprint, is_heldout, load_documents
from harness.data.packing import PackedBlocks, Treatment, pack_blocks, plain_segments
from harness.data.tokenizer import bpe_cache_file, load_tokenizer, tokenizer_fingerprint, train_bpe

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """What training needs from the data stage."""

    tokenizer: Any
    train: PackedBlocks
    heldout: PackedBlocks
    corpus_fingerprint: str


def unscored_records(docs: Iterable[Document]) -> Iterable[dict[str, Any]]:
    """Documents as paper-schema records with one segment scored 0 (for corpora not yet scored)."""
    for doc in docs:
        yield {"id": doc.id, "texts": [doc.text], "scores": [0.0], "avg_score": 0.0, "num_sents": 1}


def _get_tokenizer(cfg: Config, train_docs: list[Document], corpus_fp: str, control_tokens: bool):
    if cfg.data.tokenizer is not None:
        return load_tokenizer(cfg.data.tokenizer, control_tokens)
    path = bpe_cache_file(cfg.data.cache_dir, corpus_fp, cfg.data.vocab_size)
    if dist.is_main() and not path.is_file():
        log.info(
            "training a byte-level BPE (vocab %d) on %d documents -> %s",
            cfg.data.vocab_size,
            len(train_docs),
            path,
        )
        train_bpe([d.text for d in train_docs], cfg.data.vocab_size, path)
    dist.barrier()
    return load_tokenizer(path, control_tokens)


def _pack_key(
    corpus_fp: str, tok_fp: str, treatment: str, seq_len: int, seed: int, split: str
) -> str:
    raw = json.dumps([corpus_fp, tok_fp, treatment, seq_len, seed, split, "pack-v1"])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def prepare_data(
    cfg: Config,
    treat: Treatment = plain_segments,
    treatment_key: str = "plain",
    control_tokens: bool = False,
) -> DataBundle:
    """Load (or build on rank 0) the tokenizer and the packed train and held-out blocks."""
    docs = load_documents(cfg.data)
    corpus_fp = fingerprint(docs)
    train_docs = [d for d in docs if not is_heldout(d.id, cfg.data.heldout_fraction)]
    heldout_docs = [d for d in docs if is_heldout(d.id, cfg.data.heldout_fraction)]
    if not train_docs:
        raise ValueError(
            f"data.corpus {cfg.data.corpus!r}: every document fell in the held-out split"
        )
    tok = _get_tokenizer(cfg, train_docs, corpus_fp, control_tokens)
    tok_fp = tokenizer_fingerprint(tok)
    folders = {}
    for split, split_docs in (("train", train_docs), ("heldout", heldout_docs)):
        key = _pack_key(corpus_fp, tok_fp, treatment_key, cfg.data.seq_len, cfg.run.seed, split)
        folder = Path(cfg.data.cache_dir) / "packed" / f"{split}-{key}"
        if dist.is_main() and not (folder / "meta.json").is_file():
            log.info(
                "packing %d %s documents into blocks of %d tokens -> %s",
                len(split_docs),
                split,
                cfg.data.seq_len,
                folder,
            )
            pack_blocks(
                unscored_records(split_docs),
                tok,
                cfg.data.seq_len,
                folder,
                treat,
                progress=cfg.logging.progress_bar,
            )
        folders[split] = folder
    dist.barrier()
    train, heldout = PackedBlocks(folders["train"]), PackedBlocks(folders["heldout"])
    log.info(
        "data: %d train blocks (%d tokens), %d held-out blocks of %d tokens",
        len(train),
        train.meta["num_tokens"],
        len(heldout),
        cfg.data.seq_len,
    )
    return DataBundle(tok, train, heldout, corpus_fp)
