"""Corpus sources, all named by one key `data.corpus`, read as streams, unit by unit.

- `stdlib`: the .py files of this Python's standard library (an offline code corpus).
- a folder: files matching `data.file_glob` (default `**/*.py`) under it.
- JSONL / Parquet files or a glob of them: the `data.text_field` of each record.
- `hf:<name>[@revision]`: a Hugging Face data set (Hub name, local folder, or `save_to_disk` folder).

`harness.data.plan` cuts the corpus into units from metadata; `read_unit` streams one unit's
documents (JSONL line by line, Parquet row group by row group, Arrow record batch by batch), so
memory never depends on the corpus size. Document ids are stable: a file's relative path, or
`<file>/<row>` for Parquet and Arrow rows, `<file>@<byte offset>` for JSONL lines, unless the
record has its own `id`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from harness.config import DataConfig
from harness.data.hub import arrow_rows, remote_rows
from harness.data.plan import CorpusPlan, make_plan
from harness.data.units import Unit


@dataclass(frozen=True)
class Document:
    """One corpus document with a stable id; already-scored records keep their segments and scores."""

    id: str
    text: str
    texts: tuple[str, ...] | None = None
    scores: tuple[float, ...] | None = None


def row_document(row: dict, default_id: str, text_field: str, where: Any) -> Document:
    """A record of a JSONL/Parquet/HF corpus: plain text, or the paper schema read as is.

    `where` names the record in errors: a string, or a callable that makes one (a JSONL line
    number is counted only when there is an error to report).
    """
    doc_id = str(row.get("id", default_id))
    if "texts" in row and "scores" in row:
        texts, scores = row["texts"], row["scores"]
        if not isinstance(texts, list) or not isinstance(scores, list) or len(texts) != len(scores):
            n_t = len(texts) if isinstance(texts, list) else type(texts).__name__
            n_s = len(scores) if isinstance(scores, list) else type(scores).__name__
            raise ValueError(
                f"data.corpus: {_where(where)}: `texts` ({n_t}) and `scores` ({n_s}) must be lists of equal length"
            )
        return Document(doc_id, "".join(texts), tuple(texts), tuple(float(x) for x in scores))
    text = row.get(text_field)
    if text is None and "texts" in row:
        text = "".join(row["texts"])
    if not isinstance(text, str):
        raise ValueError(
            f"data.corpus: {_where(where)} has no string field {text_field!r} (set data.text_field) "
            "and no `texts`/`scores` lists of the paper's scored schema"
        )
    return Document(doc_id, text)


def _where(where: Any) -> str:
    return where() if callable(where) else str(where)


def _line_number(path: Path, offset: int) -> int:
    """1-based line number of the byte at `offset` (counted only to report an error)."""
    lines, done = 1, 0
    with path.open("rb") as fh:
        while done < offset:
            chunk = fh.read(min(1 << 24, offset - done))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            done += len(chunk)
    return lines


def _jsonl_rows(unit: Unit) -> Iterator[tuple[str, dict, Any]]:
    """(default id, record, where) of the lines whose first byte lies in [start, end)."""
    path = Path(unit.path)
    with path.open("rb") as fh:
        pos = unit.start
        if pos > 0:  # the line running across `start` belongs to the previous range
            fh.seek(pos - 1)
            pos += len(fh.readline()) - 1
        while pos < unit.end:
            line = fh.readline()
            if not line:
                break
            here, pos = pos, pos + len(line)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(
                    f"data.corpus: {path}:{_line_number(path, here)}: invalid JSON: {err}"
                ) from None
            if not isinstance(row, dict):
                raise ValueError(
                    f"data.corpus: {path}:{_line_number(path, here)}: a JSON object expected"
                )
            yield f"{unit.id_prefix}@{here}", row, lambda h=here: f"{path}:{_line_number(path, h)}"


def _parquet_rows(unit: Unit) -> Iterator[tuple[str, dict, Any]]:

    pf = pq.ParquetFile(unit.path)
    row = unit.first_row
    for group in range(unit.start, unit.end):
        try:
            rows = pf.read_row_group(group).to_pylist()
        except Exception as err:
            raise ValueError(
                f"data.corpus: {unit.path} row group {group} (rows from {row}) is unreadable: {err}"
            ) from None
        for rec in rows:
            yield f"{unit.id_prefix}/{row}", rec, f"{unit.path} row {row}"
            row += 1


def _files_documents(unit: Unit) -> Iterator[Document]:
    root = Path(unit.path)
    for rel in unit.files:
        try:
            text = (root / rel).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few stdlib test files are deliberately not UTF-8
        if text.strip():
            yield Document(f"{unit.id_prefix}{rel}", text)


def _unit_rows(unit: Unit) -> Iterator[tuple[str, dict, Any]]:
    if unit.kind == "jsonl":
        return _jsonl_rows(unit)
    if unit.kind == "parquet":
        return _parquet_rows(unit)

    return arrow_rows(unit) if unit.kind == "arrow" else remote_rows(unit)


def read_unit(unit: Unit, data: DataConfig) -> Iterator[Document]:
    """The documents of one unit, streamed; documents over `data.max_document_chars` are skipped."""
    if unit.kind == "files":
        docs = _files_documents(unit)
    else:
        docs = (
            row_document(rec, default_id, data.text_field, where)
            for default_id, rec, where in _unit_rows(unit)
        )
    n = 0
    for doc in docs:
        if unit.limit is not None and n >= unit.limit:
            break
        n += 1
        if data.max_document_chars is not None and len(doc.text) > data.max_document_chars:
            continue
        yield doc
    # Files of a folder may be empty, and a later byte range of a JSONL file may hold no line
    # start (one line longer than the range); a record file or row group with no record may not.
    if n == 0 and unit.kind != "files" and unit.start == 0:
        raise ValueError(f"data.corpus: unit {unit.index} ({unit.describe()}) yielded no documents")


def iter_documents(data: DataConfig, plan: CorpusPlan | None = None) -> Iterator[Document]:
    """Every document of the corpus in plan order (a stream; for tools and tests)."""
    plan = plan or make_plan(data)
    for unit in plan.units:
        yield from read_unit(unit, data)


def text_digest(text: str) -> int:
    """A 63-bit digest of a document's text, for exact deduplication by digest only."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
