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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

Segments = list[tuple[str, float]]
Treatment = Callable[[dict[str, Any]], Segments | None]


def plain_segments(record: dict[str, Any]) -> Segments:
    """The record's own segments and scores, unchanged (MLE and most objectives)."""
    return list(zip(record["texts"], record["scores"], strict=True))


def _token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def _encode_documents(
    records: Iterable[dict[str, Any]], tok, treat: Treatment, batch_docs: int
) -> Iterator[tuple[list[int], list[float]]]:
    """Yield (token ids, token scores) per kept document, tokenizing segments in batches."""
    eos = tok.eos_token_id
    backend = tok.backend_tokenizer
    batch: list[Segments] = []

    def flush() -> Iterator[tuple[list[int], list[float]]]:
        flat = [text for segs in batch for text, _ in segs]
        encoded = backend.encode_batch(flat, add_special_tokens=False) if flat else []
        k = 0
        for segs in batch:
            ids: list[int] = []
            scores: list[float] = []
            for _, score in segs:
                seg_ids = encoded[k].ids
                k += 1
                ids.extend(seg_ids)
                scores.extend([float(score)] * len(seg_ids))
            ids.append(eos)
            scores.append(0.0)
            yield ids, scores

    for record in records:
        segs = treat(record)
        if segs is None:  # dropped by the treatment (filtering)
            continue
        batch.append(segs)
        if len(batch) >= batch_docs:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def _fresh_tmp(out_dir: Path) -> Path:
    """An empty temporary folder beside `out_dir`, to be renamed into place when complete."""
    tmp = out_dir.with_name(f"{out_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _publish(tmp: Path, meta: dict[str, Any], out_dir: Path) -> Path:
    """Write meta.json last, then replace `out_dir` with the finished folder."""
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def pack_blocks(
    records: Iterable[dict[str, Any]],
    tok,
    seq_len: int,
    out_dir: Path,
    treat: Treatment = plain_segments,
    batch_docs: int = 256,
    progress: bool = False,
) -> Path:
    """Tokenize, treat, join and cut `records` into `out_dir` (tokens.bin, scores.bin, meta.json)."""
    out_dir = Path(out_dir)
    tmp = _fresh_tmp(out_dir)
    dtype = _token_dtype(len(tok))
    buf_ids: list[int] = []
    buf_scores: list[float] = []
    n_blocks = n_docs = n_tokens = 0
    docs = _encode_documents(records, tok, treat, batch_docs)
    if progress:
        from tqdm import tqdm

        docs = tqdm(docs, desc=f"packing {out_dir.name}", unit="doc")
    with open(tmp / "tokens.bin", "wb") as f_tok, open(tmp / "scores.bin", "wb") as f_score:
        for ids, scores in docs:
            n_docs += 1
            n_tokens += len(ids)
            buf_ids.extend(ids)
            buf_scores.extend(scores)
            full = len(buf_ids) // seq_len
            if full:
                cut = full * seq_len
                np.asarray(buf_ids[:cut], dtype=dtype).tofile(f_tok)
                np.asarray(buf_scores[:cut], dtype=np.float32).tofile(f_score)
                del buf_ids[:cut], buf_scores[:cut]
                n_blocks += full
    meta = {
        "num_blocks": n_blocks,
        "seq_len": seq_len,
        "token_dtype": dtype.name,
        "num_documents": n_docs,
        "num_tokens": n_tokens,
        "dropped_tail_tokens": len(buf_ids),
    }
    return _publish(tmp, meta, out_dir)


class PackedBlocks:
    """Read-only memory-mapped view of a packed folder: `blocks[i] -> (tokens, scores)`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta_file = self.folder / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(
                f"packed blocks: {meta_file} missing (incomplete or not packed)"
            )
        self.meta = json.loads(meta_file.read_text())
        n, t = self.meta["num_blocks"], self.meta["seq_len"]
        shape = (n, t)
        if n == 0:
            self.tokens = np.zeros(shape, dtype=self.meta["token_dtype"])
            self.scores = np.zeros(shape, dtype=np.float32)
        else:
            self.tokens = np.memmap(
                self.folder / "tokens.bin", dtype=self.meta["token_dtype"], mode="r", shape=shape
            )
            self.scores = np.memmap(
                self.folder / "scores.bin", dtype=np.float32, mode="r", shape=shape
            )

    def __len__(self) -> int:
        return self.meta["num_blocks"]

    @property
    def seq_len(self) -> int:
        """Tokens per block."""
        return self.meta["seq_len"]

    def __getitem__(self, idx) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.tokens[idx], dtype=np.int64), np.asarray(
            self.scores[idx], dtype=np.float32
        )


def concat_packed(parts: list[Path], out_dir: Path) -> Path:
    """Concatenate packed folders (in order) into one, atomically; the parts are left in place."""
    out_dir = Path(out_dir)
    tmp = _fresh_tmp(out_dir)
    metas = [json.loads((Path(p) / "meta.json").read_text()) for p in parts]
    if len({(m["seq_len"], m["token_dtype"]) for m in metas}) > 1:
        raise ValueError(f"cannot concatenate packed parts with different seq_len/dtype: {parts}")
    for name in ("tokens.bin", "scores.bin"):
        with open(tmp / name, "wb") as out:
            for part in parts:
                with open(Path(part) / name, "rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
    meta = {
        "num_blocks": sum(m["num_blocks"] for m in metas),
        "seq_len": metas[0]["seq_len"],
        "token_dtype": metas[0]["token_dtype"],
        "num_documents": sum(m["num_documents"] for m in metas),
        "num_tokens": sum(m["num_tokens"] for m in metas),
        "dropped_tail_tokens": sum(m["dropped_tail_tokens"] for m in metas),
        "parts": len(parts),
    }
    return _publish(tmp, meta, out_dir)
