"""Which text the corpus's byte-level BPE is trained on, and where it is cached.

`bpe_sample` streams a bounded sample of the training documents (chosen by a hash of the document
id, at most `data.bpe_sample_bytes` of text, never held in a list); `bpe_cache_file` keys the
trained tokenizer by corpus fingerprint, vocabulary size and sample cap. Training and loading are
`harness.tokenizer`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.data.buckets import id_bucket


def bpe_cache_file(cache_dir: str, corpus_fp: str, vocab_size: int, sample_key: str = "") -> Path:
    """Where the BPE trained for this corpus, size and sample is cached."""
    raw = f"{corpus_fp}:{vocab_size}:{sample_key}:bytelevel-bpe-v2"
    key = hashlib.sha256(raw.encode()).hexdigest()[:16]
    return Path(cache_dir) / "tokenizers" / key / "tokenizer.json"


def bpe_sample(
    records: Iterable[dict[str, Any]], keep: Any, total_bytes: int, cap_bytes: int
) -> Iterator[str]:
    """Texts of the records `keep(record)` accepts, each taken with probability cap/total by a
    hash of its id (all of them when the corpus is smaller than the cap), until `cap_bytes`."""
    rate = 1.0 if total_bytes <= cap_bytes else cap_bytes / total_bytes
    taken = 0
    for rec in records:
        if not keep(rec) or (rate < 1.0 and id_bucket(rec["id"], "bpe-sample") >= rate):
            continue
        text = "".join(rec["texts"])
        taken += len(text.encode())
        yield text
        if taken >= cap_bytes:
            return
