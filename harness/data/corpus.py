"""Corpus sources, all named by one key `data.corpus`, read in a deterministic order.

- `stdlib`: the .py files of this Python's standard library (an offline code corpus).
- a folder: files matching `data.file_glob` (default `**/*.py`) under it.
- JSONL / Parquet files or a glob of them: the `data.text_field` of each record.
- `hf:<name>`: a Hugging Face dataset through `datasets` (only when the Hub is reachable).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.config import DataConfig


@dataclass(frozen=True)
class Document:
    """One corpus document with a stable id; already-scored records keep their segments and scores."""

    id: str
    text: str
    texts: tuple[str, ...] | None = None
    scores: tuple[float, ...] | None = None


def _row_document(row: dict, default_id: str, text_field: str, where: str) -> Document:
    """A record of a JSONL/Parquet/HF corpus: plain text, or the paper schema read as is."""
    doc_id = str(row.get("id", default_id))
    if "texts" in row and "scores" in row:
        texts, scores = row["texts"], row["scores"]
        if not isinstance(texts, list) or not isinstance(scores, list) or len(texts) != len(scores):
            n_t = len(texts) if isinstance(texts, list) else type(texts).__name__
            n_s = len(scores) if isinstance(scores, list) else type(scores).__name__
            raise ValueError(
                f"data.corpus: {where}: `texts` ({n_t}) and `scores` ({n_s}) must be lists of equal length"
            )
        return Document(doc_id, "".join(texts), tuple(texts), tuple(float(x) for x in scores))
    text = row.get(text_field)
    if text is None and "texts" in row:
        text = "".join(row["texts"])
    if not isinstance(text, str):
        raise ValueError(f"data.corpus: {where} has no string field {text_field!r}")
    return Document(doc_id, text)


def stdlib_root() -> Path:
    """Folder of this interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def _folder_documents(root: Path, pattern: str, prefix: str) -> Iterator[Document]:
    skip = {"site-packages", "dist-packages", "__pycache__"}
    for path in sorted(root.glob(pattern)):
        rel = path.relative_to(root)
        if not path.is_file() or skip.intersection(rel.parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few stdlib test files are deliberately not UTF-8
        if text.strip():
            yield Document(f"{prefix}{rel.as_posix()}", text)


def _record_files(spec: str) -> list[Path]:
    paths = (
        sorted(Path(p) for p in glob.glob(spec, recursive=True))
        if any(c in spec for c in "*?[")
        else [Path(spec)]
    )
    if not paths:
        raise FileNotFoundError(f"data.corpus: no files match {spec!r}")
    return paths


def _records_documents(spec: str, text_field: str) -> Iterator[Document]:
    for path in _record_files(spec):
        if not path.is_file():
            raise FileNotFoundError(f"data.corpus: file not found: {path}")
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                rows = pq.read_table(path).to_pylist()
            except Exception as err:
                raise ValueError(f"data.corpus: cannot read Parquet file {path}: {err}") from None
        else:
            with path.open(encoding="utf-8") as fh:
                rows = []
                for line_no, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise ValueError(
                                f"data.corpus: {path}:{line_no}: invalid JSON: {err}"
                            ) from None
        for i, row in enumerate(rows):
            yield _row_document(row, f"{path.name}/{i}", text_field, f"{path} record {i}")


def _hf_documents(name: str, text_field: str) -> Iterator[Document]:
    try:
        import datasets
    except ImportError:
        raise ValueError(
            f"data.corpus=hf:{name} needs the `datasets` package (pip install datasets)"
        ) from None
    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as err:
        raise ValueError(
            f"data.corpus=hf:{name}: cannot load from the Hugging Face Hub ({type(err).__name__}: {err}). "
            "Offline? Point data.corpus at local JSONL/Parquet files, or add --config configs/quickstart.yaml "
            "to use the built-in stdlib corpus."
        ) from None
    for i, row in enumerate(ds):
        yield _row_document(row, f"{name}/{i}", text_field, f"hf:{name} record {i}")


def _source_documents(spec: str, data: DataConfig) -> Iterator[Document]:
    if spec == "stdlib":
        docs = _folder_documents(stdlib_root(), "**/*.py", "stdlib/")
    elif spec.startswith("hf:"):
        docs = _hf_documents(spec[3:], data.text_field)
    elif os.path.isdir(spec):
        docs = _folder_documents(Path(spec), data.file_glob, "")
    elif any(spec.endswith(ext) for ext in (".jsonl", ".json", ".parquet")) or any(
        c in spec for c in "*?["
    ):
        docs = _records_documents(spec, data.text_field)
    else:
        raise FileNotFoundError(
            f"data.corpus: {spec!r} is neither `stdlib`, `hf:<name>`, a folder, nor JSONL/Parquet files"
        )
    return docs


def iter_documents(data: DataConfig) -> Iterator[Document]:
    """Documents of `data.corpus` (one source or a list), in a deterministic order.

    Documents longer than `data.max_document_chars` and (with `data.dedup`) exact copies of an
    earlier document are skipped; then the first `data.max_documents` are kept.
    """
    specs = [data.corpus] if isinstance(data.corpus, str) else list(data.corpus)
    docs = (doc for spec in specs for doc in _source_documents(spec, data))
    seen: set[bytes] = set()
    kept = 0
    for doc in docs:
        if data.max_documents is not None and kept >= data.max_documents:
            return
        if data.max_document_chars is not None and len(doc.text) > data.max_document_chars:
            continue
        if data.dedup:
            digest = hashlib.sha256(doc.text.encode()).digest()
            if digest in seen:
                continue
            seen.add(digest)
        kept += 1
        yield doc


def load_documents(data: DataConfig) -> list[Document]:
    """All documents of the corpus; an empty corpus is an error."""
    docs = list(iter_documents(data))
    if not docs:
        raise ValueError(f"data.corpus: {data.corpus!r} yielded no documents")
    return docs


def fingerprint(docs: list[Document]) -> str:
    """A short hash of ids and texts: changes when the corpus does."""
    h = hashlib.sha256()
    for doc in docs:
        h.update(doc.id.encode())
        h.update(b"\0")
        h.update(hashlib.sha256(doc.text.encode()).digest())
    return h.hexdigest()[:16]


def is_heldout(doc_id: str, fraction: float) -> bool:
    """Deterministic held-out split by a hash of the document id."""
    if fraction <= 0:
        return False
    bucket = int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2**64
    return bucket < fraction
