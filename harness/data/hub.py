"""`hf:<name>[@revision]` corpora through `datasets`, planned by data file, read as streams.

- a folder written by `Dataset.save_to_disk`: one unit per Arrow file, read record batch by batch
  from a memory map;
- anything else `datasets.load_dataset_builder` resolves (a Hub name at a revision, a local folder
  of Parquet/JSONL files): its train data files. Local Parquet/JSONL files become the same units
  as plain files (row groups, byte ranges); remote ones are one unit each, streamed by
  `datasets.load_dataset(..., streaming=True)`, whose URLs carry the resolved commit, so the plan
  pins the revision.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.data.units import Unit, record_file_units


def split_revision(spec: str) -> tuple[str, str | None]:
    """`name@revision` -> (name, revision); a bare name has no revision."""
    name, sep, revision = spec.partition("@")
    return name, (revision or None) if sep else None


def _hub_error(spec: str, err: Exception) -> ValueError:
    return ValueError(
        f"data.corpus=hf:{spec}: cannot load from the Hugging Face Hub ({type(err).__name__}: "
        f"{str(err)[:300]}). Offline? Point data.corpus at local JSONL/Parquet files or a folder "
        "saved with datasets (hf:/path/to/folder), or add --config configs/quickstart.yaml to use "
        "the built-in stdlib corpus."
    )


def _saved_units(folder: Path, spec: str, sources: dict[str, list[int]]) -> list[Unit]:
    state = json.loads((folder / "state.json").read_text())
    units = []
    for entry in state.get("_data_files", []):
        path = folder / entry["filename"]
        st = path.stat()
        sources[str(path)] = [st.st_size, st.st_mtime_ns]
        units.append(Unit("arrow", str(path), f"{spec}/{entry['filename']}", st.st_size))
    return units


def hub_units(spec: str, sources: dict[str, list[int]]) -> list[Unit]:
    """The units of `hf:<spec>`: Arrow files of a saved data set, else the builder's train files."""
    name, revision = split_revision(spec)
    if (Path(name) / "state.json").is_file():
        return _saved_units(Path(name), spec, sources)
    try:
        import datasets

        builder = datasets.load_dataset_builder(name, revision=revision)
    except Exception as err:
        raise _hub_error(spec, err) from None
    data_files = builder.config.data_files or {}
    split = "train" if "train" in data_files else next(iter(data_files), None)
    if split is None:
        raise ValueError(f"data.corpus=hf:{spec}: the data set lists no data files")
    units: list[Unit] = []
    for url in data_files[split]:
        url = str(url)
        local = Path(url)
        rel = os.path.relpath(url, name) if local.is_file() else url.rsplit("@", 1)[-1]
        if local.is_file() and local.suffix in (".parquet", ".jsonl", ".json"):
            units.extend(record_file_units(local, f"{spec}/{rel}", sources))
        else:
            units.append(Unit("remote", url, f"{spec}/{rel}", 0, builder=builder.name))
    return units


def arrow_rows(unit: Unit) -> Iterator[tuple[str, dict, Any]]:
    """Rows of one Arrow stream file (`save_to_disk`), batch by batch from a memory map."""
    import pyarrow as pa

    row = 0
    try:
        with pa.memory_map(unit.path) as source:
            for batch in pa.ipc.open_stream(source):
                for rec in batch.to_pylist():
                    yield f"{unit.id_prefix}/{row}", rec, f"{unit.path} row {row}"
                    row += 1
    except pa.ArrowInvalid as err:
        raise ValueError(f"data.corpus: {unit.path} is unreadable after row {row}: {err}") from None


def remote_rows(unit: Unit) -> Iterator[tuple[str, dict, Any]]:
    """Rows of one remote data file, streamed by `datasets` (never materialised)."""
    import datasets

    try:
        stream = datasets.load_dataset(
            unit.builder, data_files=[unit.path], split="train", streaming=True
        )
        for row, rec in enumerate(stream):
            yield f"{unit.id_prefix}/{row}", rec, f"{unit.path} row {row}"
    except ValueError:
        raise
    except Exception as err:
        raise _hub_error(unit.path, err) from None
