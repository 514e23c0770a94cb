"""Pack scored documents into fixed-length token blocks with an aligned per-token score array.

Each record (paper schema: `texts` segments with their `scores`) is tokenized segment by segment,
so every token carries the score of the segment it came from; documents are joined with EOS
(score 0) and the stream is cut into blocks of `seq_len` tokens (the tail is dropped). The result
is two memory-mapped arrays (GPT-NeoX/Megatron style) plus `meta.json`, written to a temporary
folder and renamed into place, so a cache entry is complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

Segments = list[tuple[str, float]]
Treatment = Callable[[dict[str, Any]], Segments | None]


def plain_segments(record: dict[str, Any]) -> Segments:
    """The record's own segments and scores, unchanged (MLE and most objectives)."""
    return list(zip(record["texts"], record["scores"], strict=True))


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


class SegmentEncoder:
    """Token ids of segments, batched, with a bounded cache of short segments.

    Code repeats many lines verbatim (blank lines, `return`, imports): about a third of the
    segments of a code corpus were seen before, and a dict lookup is far cheaper than the BPE.
    The cache holds segments under CACHE_MAX_CHARS characters and is cleared when full, so its
    memory is bounded whatever the corpus; ids do not depend on it.
    """

    CACHE_MAX_CHARS = 200
    CACHE_MAX_ENTRIES = 1 << 19

    def __init__(self, tok):
        backend = tok.backend_tokenizer
        # encode_batch_fast (tokenizers >= 0.20) skips the offsets we do not use.
        self._encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        self._cache: dict[str, list[int]] = {}

    def __call__(self, texts: list[str]) -> list[list[int]]:
        """The ids of each text (no special tokens added)."""
        cache = self._cache
        if len(cache) + len(texts) > self.CACHE_MAX_ENTRIES:
            cache.clear()  # before looking up, so that every hit below stays valid
        todo = list({t: None for t in texts if t not in cache})
        known: dict[str, list[int]] = {}
        if todo:
            fresh = [e.ids for e in self._encode(todo, add_special_tokens=False)]
            known = dict(zip(todo, fresh, strict=True))
            for text, ids in known.items():
                if len(text) < self.CACHE_MAX_CHARS:
                    cache[text] = ids
        return [known[t] if t in known else cache[t] for t in texts]


_ENCODERS: dict[int, SegmentEncoder] = {}


def _encoder(tok) -> SegmentEncoder:
    if id(tok) not in _ENCODERS:
        _ENCODERS.clear()  # one tokenizer in use per process at a time
        _ENCODERS[id(tok)] = SegmentEncoder(tok)
    return _ENCODERS[id(tok)]


def encode_batches(
    records: Iterable[dict[str, Any]], tok, treat: Treatment, batch_docs: int
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(token ids, token scores, documents) of each batch of kept documents, EOS after each.

    Ids and scores are built as arrays (the ids joined at C speed, each segment's score repeated
    over its tokens), never as Python lists of per-token objects.
    """
    eos = [tok.eos_token_id]
    encode = _encoder(tok)
    batch: list[Segments] = []

    def flush() -> tuple[np.ndarray, np.ndarray, int]:
        encoded = encode([text for segs in batch for text, _ in segs])
        pieces: list[list[int]] = []
        piece_scores: list[float] = []
        k = 0
        for segs in batch:
            pieces.extend(encoded[k : k + len(segs)])
            piece_scores.extend(float(score) for _, score in segs)
            k += len(segs)
            pieces.append(eos)
            piece_scores.append(0.0)
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        ids = np.fromiter(chain.from_iterable(pieces), dtype=np.int64, count=int(lengths.sum()))
        scores = np.repeat(np.asarray(piece_scores, dtype=np.float32), lengths)
        return ids, scores, len(batch)

    for record in records:
        segs = treat(record)
        if segs is None:  # dropped by the treatment (filtering)
            continue
        batch.append(segs)
        if len(batch) >= batch_docs:
            yield flush()
            batch = []
    if batch:
        yield flush()


def document_token_counts(
    records: Iterable[dict[str, Any]], tok, batch_docs: int = 256
) -> np.ndarray:
    """Tokens of each record's plain text as packed (its segments, then EOS), in order."""
    encode = _encoder(tok)
    counts: list[int] = []
    batch: list[Segments] = []

    def flush() -> None:
        encoded = encode([text for segs in batch for text, _ in segs])
        k = 0
        for segs in batch:
            counts.append(sum(len(ids) for ids in encoded[k : k + len(segs)]) + 1)
            k += len(segs)
        batch.clear()

    for record in records:
        batch.append(plain_segments(record))
        if len(batch) >= batch_docs:
            flush()
    if batch:
        flush()
    return np.asarray(counts, dtype=np.int64)


def _fresh_tmp(out_dir: Path) -> Path:
    """An empty temporary folder beside `out_dir`, to be renamed into place when complete."""
    tmp = out_dir.with_name(f"{out_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


class BlockWriter:
    """Appends documents' (ids, scores) to a token stream cut into `seq_len` blocks, streamed to disk."""

    def __init__(self, folder: Path, seq_len: int, dtype: np.dtype):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.seq_len = seq_len
        self.dtype = dtype
        self._tok = open(folder / "tokens.bin", "wb")
        self._score = open(folder / "scores.bin", "wb")
        self._ids = np.zeros(0, np.int64)
        self._scores = np.zeros(0, np.float32)
        self.n_blocks = self.n_docs = self.n_tokens = 0

    def add(self, ids: np.ndarray, scores: np.ndarray, documents: int = 1) -> None:
        """Append documents' tokens; full blocks go to disk at once, the tail waits."""
        self.n_docs += documents
        self.n_tokens += len(ids)
        ids = np.concatenate([self._ids, ids])
        scores = np.concatenate([self._scores, scores])
        cut = len(ids) // self.seq_len * self.seq_len
        if cut:
            ids[:cut].astype(self.dtype).tofile(self._tok)
            scores[:cut].astype(np.float32).tofile(self._score)
            self.n_blocks += cut // self.seq_len
        self._ids, self._scores = ids[cut:], scores[cut:]

    def close(self) -> dict[str, Any]:
        """Drop the tail shorter than a block, close the files, write and return meta.json."""
        self._tok.close()
        self._score.close()
        meta = {
            "num_blocks": self.n_blocks,
            "seq_len": self.seq_len,
            "token_dtype": self.dtype.name,
            "num_documents": self.n_docs,
            "num_tokens": self.n_tokens,
            "dropped_tail_tokens": len(self._ids),
        }
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=2))
        return meta


def pack_blocks(
    records: Iterable[dict[str, Any]],
    tok,
    seq_len: int,
    out_dir: Path,
    treat: Treatment = plain_segments,
    batch_docs: int = 256,
) -> Path:
    """Tokenize, treat, join and cut `records` into `out_dir` (tokens.bin, scores.bin, meta.json)."""
    out_dir = Path(out_dir)
    tmp = _fresh_tmp(out_dir)
    writer = BlockWriter(tmp, seq_len, token_dtype(len(tok)))
    for ids, scores, documents in encode_batches(records, tok, treat, batch_docs):
        writer.add(ids, scores, documents)
    writer.close()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


class _Part:
    """One (tokens, scores) pair of a packed folder, memory-mapped on first use.

    Every mapping holds a file descriptor: a paper-size corpus has hundreds of parts per split
    (over the usual limit of 1024 descriptors for three splits), so `PackedBlocks` keeps at most
    OPEN_PARTS of them mapped and drops the least recently used.
    """

    def __init__(self, folder: Path, meta: dict[str, Any]):
        self.folder = folder
        self.num_blocks, self.seq_len = meta["num_blocks"], meta["seq_len"]
        self.dtype = meta["token_dtype"]
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, scores) of shape (num_blocks, seq_len)."""
        if self._maps is None:
            shape = (self.num_blocks, self.seq_len)
            if self.num_blocks == 0:
                self._maps = (np.zeros(shape, self.dtype), np.zeros(shape, np.float32))
            else:
                self._maps = (
                    np.memmap(self.folder / "tokens.bin", dtype=self.dtype, mode="r", shape=shape),
                    np.memmap(self.folder / "scores.bin", dtype=np.float32, mode="r", shape=shape),
                )
        return self._maps

    def close(self) -> None:
        """Drop the mappings (they are made again on the next use)."""
        self._maps = None


OPEN_PARTS = 64


class PackedBlocks:
    """Read-only view of packed blocks: `blocks[i] -> (tokens, scores)`, `blocks[[i, j]]` batched.

    A folder written by `pack_blocks` is one part; a split of a packed corpus (`split=`) is the
    parts of all its tasks in order, read in place through cumulative block offsets (no copy).
    """

    def __init__(self, folder: str | Path, split: str | None = None):
        self.folder = Path(folder)
        meta_file = self.folder / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(
                f"packed blocks: {meta_file} missing (incomplete or not packed)"
            )
        meta = json.loads(meta_file.read_text())
        if split is None:
            self.meta = meta
            self._parts = [_Part(self.folder, meta)]
        else:
            if split not in meta["splits"]:
                raise KeyError(f"packed blocks: {self.folder} has no split {split!r}")
            self.meta = {**meta["splits"][split], "seq_len": meta["seq_len"]}
            self.meta["token_dtype"] = meta["token_dtype"]
            self._parts = [
                _Part(
                    self.folder / p["path"],
                    {**p, "seq_len": meta["seq_len"], "token_dtype": meta["token_dtype"]},
                )
                for p in self.meta["parts"]
            ]
        self._open: OrderedDict[int, None] = OrderedDict()
        counts = [p.num_blocks for p in self._parts]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self._offsets[-1] != self.meta["num_blocks"]:
            raise ValueError(
                f"packed blocks: {self.folder} parts hold {self._offsets[-1]} blocks, meta says {self.meta['num_blocks']}"
            )

    def __len__(self) -> int:
        return int(self.meta["num_blocks"])

    @property
    def seq_len(self) -> int:
        """Tokens per block."""
        return self.meta["seq_len"]

    @property
    def tokens(self) -> np.ndarray:
        """The token array of a one-part folder."""
        if len(self._parts) != 1:
            raise AttributeError("a multi-part split has no single token array; index it instead")
        return self._parts[0].arrays()[0]

    def _arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._open[k] = None
        self._open.move_to_end(k)
        if len(self._open) > OPEN_PARTS:
            self._parts[self._open.popitem(last=False)[0]].close()
        return self._parts[k].arrays()

    def _locate(self, idx: int) -> tuple[int, int]:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"block {idx} out of range ({len(self)} blocks)")
        idx %= len(self)
        k = int(np.searchsorted(self._offsets, idx, side="right")) - 1
        return k, idx - int(self._offsets[k])

    def __getitem__(self, idx) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(idx, (int, np.integer)):
            tokens, scores = self[[int(idx)]]
            return tokens[0], scores[0]
        tokens = np.zeros((len(idx), self.seq_len), np.int64)
        scores = np.zeros((len(idx), self.seq_len), np.float32)
        for row, i in enumerate(idx):
            k, j = self._locate(int(i))
            part_tokens, part_scores = self._arrays(k)
            tokens[row] = part_tokens[j]
            scores[row] = part_scores[j]
        return tokens, scores
