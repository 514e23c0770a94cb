"""Corpus prefixes by tokens: `data.skip_tokens` and `data.take_tokens` pick training documents.

The training split in corpus order (plan order, shard by shard; held-out documents and dropped
copies left out) is a sequence of documents with known token counts: their plain text as packed,
plus EOS, whatever the objective (the original code likewise counted the skipped stream before
any filtering). A document is *skipped* when it starts before token `skip_tokens` of the split;
of the rest, a document is *taken* when it starts before token `take_tokens` of what remains.
So `take_tokens: N` (pretraining on a prefix) and `skip_tokens: N` (finetuning on the rest)
split the training documents into two disjoint sets whose union is all of them, and neither
touches the held-out split.

The counts come from a counting stage (one task per scored shard, `counts/shard-k.npy`), run
before packing whenever a prefix is asked for; this module holds the arithmetic. Before any
scoring, `check_skip_bound` refuses a `skip_tokens` that even the corpus plan's byte sizes show
to be too large (a token covers at least one byte of text), so a typo costs no scoring time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def counts_file(counts_dir: str | Path, shard: int) -> Path:
    """Token counts of shard `shard`'s training documents, in order."""
    return Path(counts_dir) / f"shard-{shard:05d}.npy"


def token_bound(units: list) -> int | None:
    """At most how many tokens the plan's documents count to (text, plus EOS per document), from
    source sizes; None when a unit's size does not bound its text (Parquet, Arrow, Hub files are
    compressed). A token covers at least one byte of text, and a JSONL line of a non-empty
    document is at least two bytes long, which also bounds the EOS tokens."""
    bound = 0
    for unit in units:
        if unit.kind == "files":
            bound += unit.nbytes + len(unit.files)
        elif unit.kind == "jsonl":
            bound += 2 * unit.nbytes
        else:
            return None
    return bound


def check_skip_bound(skip: int | None, units: list) -> None:
    """ValueError when `data.skip_tokens` is at least what the plan's sizes allow (before scoring)."""
    bound = token_bound(units)
    if skip is not None and bound is not None and skip >= bound:
        nbytes = sum(u.nbytes for u in units)
        raise ValueError(
            f"data.skip_tokens={skip} leaves no training document: the corpus is {nbytes} bytes "
            f"in {len(units)} units, at most {bound} tokens"
        )


def select_window(counts: np.ndarray, skip: int | None, take: int | None) -> tuple[int, int]:
    """[lo, hi) of the documents kept, over the whole training split; ValueError when empty."""
    starts = np.cumsum(counts) - counts
    lo = int(np.searchsorted(starts, skip, side="left")) if skip else 0
    hi = len(counts)
    if take is not None and lo < len(counts):
        rest = starts[lo:] - starts[lo]
        hi = lo + int(np.searchsorted(rest, take, side="left"))
    if hi <= lo:
        raise ValueError(
            f"data.skip_tokens={skip} / data.take_tokens={take} leave no training document: "
            f"the training split has {int(counts.sum())} tokens in {len(counts)} documents"
        )
    return lo, hi


def shard_windows(
    counts_dir: str | Path, num_shards: int, skip: int | None, take: int | None
) -> list[tuple[int, int]]:
    """Per shard, [lo, hi) of its training documents (local indices) inside the kept window."""
    per_shard = [np.load(counts_file(counts_dir, k)) for k in range(num_shards)]
    lo, hi = select_window(
        np.concatenate(per_shard) if per_shard else np.zeros(0, np.int64), skip, take
    )
    windows, offset = [], 0
    for counts in per_shard:
        n = len(counts)
        windows.append((min(max(lo - offset, 0), n), min(max(hi - offset, 0), n)))
        offset += n
    return windows
