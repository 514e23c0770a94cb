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
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.data.units import Unit, record_file_units
from harness.hub import RetryBudget, hub_error, offline, repo_info, split_ref, with_retries

log = logging.getLogger(__name__)


CORPUS_HINT = (
    "point data.corpus at local JSONL/Parquet files or a folder saved with datasets "
    "(hf:/path/to/folder), or add --config configs/quickstart.yaml to use the built-in stdlib corpus"
)
COMMIT_IN_URL = re.compile(r"@([0-9a-f]{40})/")


def _hub_error(spec: str, err: Exception) -> ValueError:
    return hub_error("data.corpus", f"hf:{spec}", err, CORPUS_HINT)


def _saved_units(folder: Path, spec: str, sources: dict[str, list[int]]) -> list[Unit]:
    state = json.loads((folder / "state.json").read_text())
    units = []
    for entry in state.get("_data_files", []):
        path = folder / entry["filename"]
        st = path.stat()
        sources[str(path)] = [st.st_size, st.st_mtime_ns]
        units.append(Unit("arrow", str(path), f"{spec}/{entry['filename']}", st.st_size))
    return units


def _builder(name: str, revision: str | None, spec: str):
    """The `datasets` builder of a local data folder, or of a Hub data set at `revision`."""
    import datasets

    try:
        return with_retries(
            f"data.corpus=hf:{spec}",
            lambda: datasets.load_dataset_builder(name, revision=revision),
        )
    except Exception as err:
        raise _hub_error(spec, err) from None


def _remote_sizes(spec: str) -> tuple[str | None, dict[str, int]]:
    """(commit, {file: size}) of a Hub data set now; (None, {}) offline (the cache decides)."""
    if offline():
        return None, {}
    info = repo_info("data.corpus", f"hf:{spec}", "dataset", CORPUS_HINT, files_metadata=True)
    return info.sha, {s.rfilename: int(s.size or 0) for s in info.siblings or []}


def hub_units(spec: str, sources: dict[str, list[int]]) -> list[Unit]:
    """The units of `hf:<spec>`: Arrow files of a saved data set, else the builder's train files
    (a Hub data set's revision resolved to a commit first: every unit names that commit)."""
    name, revision = split_ref(spec)
    if (Path(name) / "state.json").is_file():
        return _saved_units(Path(name), spec, sources)
    commit, sizes = (None, {}) if Path(name).is_dir() else _remote_sizes(spec)
    builder = _builder(name, commit or revision, spec)
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
            size = sizes.get(rel.split("/", 1)[-1], 0)
            units.append(Unit("remote", url, f"{spec}/{rel}", size, builder=builder.name))
    return units


def unit_commits(units: list[Unit]) -> dict[str, str]:
    """`hf:<name>` -> the commit its remote units read (for the run's record)."""
    out = {}
    for unit in units:
        match = COMMIT_IN_URL.search(unit.path) if unit.kind == "remote" else None
        if match:
            out["hf:" + unit.id_prefix.split("/" + match.group(1), 1)[0]] = match.group(1)
    return out


def remote_count(unit: Unit, most: int) -> int:
    """Records in a remote data file, counted up to `most`: a Parquet footer (two range reads),
    else the first `most` records streamed (a bounded read)."""
    if unit.path.endswith(".parquet"):
        import pyarrow.parquet as pq
        from huggingface_hub import HfFileSystem

        def rows() -> int:
            with HfFileSystem().open(unit.path, "rb") as fh:
                return pq.ParquetFile(fh).metadata.num_rows

        try:
            return min(most, with_retries(f"data.corpus: {unit.path}", rows))
        except Exception as err:
            raise _hub_error(unit.path, err) from None
    n = 0
    for _ in remote_rows(Unit(**{**unit.__dict__, "limit": most})):
        n += 1
        if n >= most:
            break
    return n


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


def _stream(unit: Unit):
    import datasets

    # datasets retries a read in place up to 20 times, 5-60 s apart (up to 20 min for a 503):
    # a few quick resumptions there, then RetryBudget's bound (PHF_HUB_RETRY_SECONDS) decides.
    datasets.config.STREAMING_READ_MAX_RETRIES = 3
    datasets.config.STREAMING_READ_RETRY_INTERVAL = 1
    datasets.config.STREAMING_READ_SERVER_UNAVAILABLE_RETRY_INTERVAL = 2
    datasets.config.STREAMING_READ_RATE_LIMIT_RETRY_INTERVAL = 5
    return datasets.load_dataset(
        unit.builder, data_files=[unit.path], split="train", streaming=True
    )


def remote_rows(unit: Unit) -> Iterator[tuple[str, dict, Any]]:
    """Rows of one remote data file, streamed by `datasets` (never materialised). A server error
    or a dropped connection re-reads the file from its start, skipping the rows already given
    (nothing lost, nothing twice), for at most PHF_HUB_RETRY_SECONDS; then one line naming it."""
    budget = RetryBudget(f"data.corpus: {unit.path}")
    given = 0
    while True:
        try:
            for row, rec in enumerate(_stream(unit)):
                if row < given:
                    continue
                given += 1
                yield f"{unit.id_prefix}/{row}", rec, f"{unit.path} row {row}"
                if unit.limit is not None and given >= unit.limit:
                    return
            return
        except ValueError:
            raise
        except Exception as err:
            try:
                budget.absorb(err)
            except Exception:
                raise hub_error("data.corpus", unit.path, err, CORPUS_HINT) from None
            log.warning(
                "data.corpus: re-reading %s from its start (%d rows kept)", unit.path, given
            )
