"""A unit of the corpus plan: one bounded piece of the corpus, named from metadata only.

`harness.data.plan` orders units into the plan; `harness.data.hub` makes them for Hub data sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq


@dataclass
class Unit:
    """One bounded piece of the corpus; `index` is its task number."""

    kind: str  # files | jsonl | parquet | arrow | remote
    path: str  # folder root (files), file (jsonl, parquet, arrow) or URL (remote)
    id_prefix: str
    nbytes: int
    index: int = 0
    files: list[str] = field(default_factory=list)  # files: paths relative to `path`
    start: int = 0  # jsonl: first byte; parquet: first row group
    end: int = 0  # jsonl: end byte (exclusive); parquet: end row group (exclusive)
    first_row: int = 0  # parquet: row number (in the file) of the first row of `start`
    rows: int = 0  # records in the unit where metadata tells (files, parquet), else 0
    limit: int | None = None  # read at most this many records (data.max_documents)
    builder: str = ""  # remote: datasets builder ("parquet", "json", ...)

    def describe(self) -> str:
        """Where the unit's documents come from, for error messages."""
        if self.kind == "files":
            return f"{self.path} files {self.files[0]} .. {self.files[-1]}"
        if self.kind == "jsonl":
            return f"{self.path} bytes {self.start}-{self.end}"
        if self.kind == "parquet":
            return f"{self.path} row groups {self.start}-{self.end - 1}"
        return self.path


def stat_source(path: Path, sources: dict[str, list[int]]) -> int:
    """Record a source file's size and mtime (the plan fingerprints them); its size."""
    st = path.stat()
    sources[str(path)] = [st.st_size, st.st_mtime_ns]
    return st.st_size


def _parquet_groups(path: Path) -> list[tuple[int, int]]:
    """(rows, bytes) of each row group, from the footer only."""

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as err:
        raise ValueError(f"data.corpus: cannot read Parquet footer of {path}: {err}") from None
    return [
        (meta.row_group(i).num_rows, meta.row_group(i).total_byte_size)
        for i in range(meta.num_row_groups)
    ]


def record_file_units(path: Path, prefix: str, sources) -> list[Unit]:
    """A JSONL file as one byte range, a Parquet file as one unit per row group."""
    size = stat_source(path, sources)
    if path.suffix == ".parquet":
        units, row = [], 0
        for i, (rows, nbytes) in enumerate(_parquet_groups(path)):
            units.append(
                Unit(
                    "parquet",
                    str(path),
                    prefix,
                    nbytes,
                    start=i,
                    end=i + 1,
                    first_row=row,
                    rows=rows,
                )
            )
            row += rows
        return units
    return [Unit("jsonl", str(path), prefix, size, start=0, end=size)]
