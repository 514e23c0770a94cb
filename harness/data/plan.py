"""The corpus plan: an ordered list of bounded units, made from metadata only.

A corpus of any size becomes units of at most `data.unit_bytes` source bytes, each read on its own
(one datatrove task per unit), from file listings, sizes, mtimes and Parquet footers:

- `files`: consecutive files of a folder corpus (`stdlib`, a folder + `data.file_glob`), one document each;
- `jsonl`: a byte range of a JSONL file; a line belongs to the range its first byte lies in (the
  Hadoop rule), so ranges are cut without reading the file;
- `parquet`: consecutive row groups of one Parquet file (row counts from its footer);
- `arrow`: one Arrow file of a data set saved with `datasets.save_to_disk` (`hf:<folder>`);
- `remote`: one data file of a Hugging Face Hub data set at a resolved revision (`hf:<name>[@rev]`).

Unit k always holds the same documents, whatever the number of ranks, workers or nodes, so the
task list is the plan. The fingerprint hashes the units and every source's size and mtime; the
plan saved beside the scored shards is checked against the sources at every launch (a stat per
file), so a source changed since it was scored is an error naming it, never a silent mix.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.config import DataConfig
from harness.data.hub import hub_units, remote_count
from harness.data.injected import ensure_corpus, is_injected, parse_spec
from harness.data.units import Unit, record_file_units, stat_source

log = logging.getLogger(__name__)

PLAN_VERSION = 1
RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")
SKIP_PARTS = {"site-packages", "dist-packages", "__pycache__"}
# JSONL files are cut into byte ranges no smaller than this, so that ranges hold many lines.
MIN_JSONL_RANGE = 1 << 20


@dataclass
class CorpusPlan:
    """The ordered units of a corpus plus the stat of every source file they came from."""

    units: list[Unit]
    sources: dict[str, list[int]]  # path -> [size, mtime_ns]
    settings: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """Changes when any unit, source size or mtime, or reading setting does."""
        raw = json.dumps(
            [PLAN_VERSION, self.settings, [asdict(u) for u in self.units], self.sources],
            sort_keys=True,
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    @property
    def total_bytes(self) -> int:
        """Source bytes of all units."""
        return sum(u.nbytes for u in self.units)

    def to_json(self) -> str:
        """The plan as JSON (saved as `plan.json` beside the scored shards)."""
        return json.dumps(
            {
                "version": PLAN_VERSION,
                "fingerprint": self.fingerprint,
                "settings": self.settings,
                "sources": self.sources,
                "units": [asdict(u) for u in self.units],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> CorpusPlan:
        """Inverse of `to_json`."""
        raw = json.loads(text)
        return cls([Unit(**u) for u in raw["units"]], raw["sources"], raw["settings"])


def stdlib_root() -> Path:
    """Folder of this interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_specs(data: DataConfig) -> list[str]:
    """`data.corpus` as a list of source specs."""
    return [data.corpus] if isinstance(data.corpus, str) else list(data.corpus)


def reading_settings(data: DataConfig) -> dict[str, Any]:
    """Every data setting that changes which documents the plan's units yield."""
    return {
        "corpus": corpus_specs(data),
        "text_field": data.text_field,
        "file_glob": data.file_glob,
        "max_documents": data.max_documents,
        "max_document_chars": data.max_document_chars,
        "num_shards": data.num_shards,
        "unit_bytes": data.unit_bytes,
    }


def corpus_key(data: DataConfig) -> str:
    """Names the corpus by its specification (not its content): where its scored shards live."""
    settings = reading_settings(data)
    settings["corpus"] = [
        parse_spec(s).key()
        if is_injected(s)
        else s if s == "stdlib" or s.startswith("hf:") else os.path.abspath(s)
        for s in settings["corpus"]
    ]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


# ---- atoms: the smallest pieces metadata can name --------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern:
    """A glob with `**` (any folders), `*` and `?` (within one name) as a regex on relative paths."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            c = pattern[i]
            out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _folder_files(root: Path, pattern: str) -> list[Path]:
    """Files under `root` matching `pattern`, sorted; site-packages and caches are never walked
    (the stdlib's folder holds site-packages, whose walk alone would cost seconds)."""
    match = _glob_regex(pattern).match
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_PARTS]
        rel_folder = os.path.relpath(folder, root)
        for name in files:
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            if match(rel):
                out.append(Path(folder) / name)
    return sorted(out, key=lambda p: p.relative_to(root).parts)


def record_files(spec: str) -> list[Path]:
    """The JSONL/Parquet files a path or glob names, sorted; none is an error naming the spec."""
    if any(c in spec for c in "*?["):
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True))
        if not paths:
            raise FileNotFoundError(f"data.corpus: no files match {spec!r}")
        return paths
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"data.corpus: file not found: {path}")
    return [path]


def _jsonl_end_after(path: Path, records: int) -> tuple[int, int]:
    """(byte offset after the first `records` non-empty lines, records found): a bounded scan."""
    found = offset = 0
    with path.open("rb") as fh:
        for line in fh:
            offset += len(line)
            if line.strip():
                found += 1
                if found == records:
                    break
    return offset, found


def _source_units(spec: str, data: DataConfig, sources: dict[str, list[int]]) -> list[Unit]:
    """One source spec as a list of single-atom units (merged into bounded units later)."""
    if spec == "stdlib":
        return _folder_units(stdlib_root(), "**/*.py", "stdlib/", sources)
    if is_injected(spec):
        root, pattern, prefix = injected_folder(spec, data)
        return _folder_units(root, pattern, prefix, sources)
    if spec.startswith("hf:"):
        return hub_units(spec[3:], sources)
    if os.path.isdir(spec):
        return _folder_units(Path(spec), data.file_glob, "", sources)
    if spec.endswith(RECORD_SUFFIXES) or any(c in spec for c in "*?["):
        units = []
        for path in record_files(spec):
            units.extend(record_file_units(path, path.name, sources))
        return units
    raise FileNotFoundError(
        f"data.corpus: {spec!r} is neither `stdlib`, `hf:<name>`, `injected:<code>:<rate>`, a folder, nor JSONL/Parquet files"
    )


def injected_folder(spec: str, data: DataConfig) -> tuple[Path, str, str]:
    """(folder, glob, id prefix) of an `injected:` corpus, built into the cache on first use."""
    parsed = parse_spec(spec)
    if parsed.source == "stdlib":
        source, pattern = stdlib_root(), "**/*.py"
    else:
        source, pattern = Path(parsed.source), data.file_glob
    # The source is listed only when the corpus is built, not at every launch.
    folder = ensure_corpus(parsed, data.cache_dir, lambda: _folder_files(source, pattern), source)
    return folder, pattern, parsed.id_prefix


def _folder_units(root: Path, pattern: str, prefix: str, sources) -> list[Unit]:
    units = []
    for path in _folder_files(root, pattern):
        size = stat_source(path, sources)
        rel = path.relative_to(root).as_posix()
        units.append(Unit("files", str(root), prefix, size, files=[rel], rows=1))
    return units


def _truncate(units: list[Unit], max_documents: int) -> list[Unit]:
    """The units holding the first `max_documents` records (counted from metadata where it can)."""
    out, left = [], max_documents
    for unit in units:
        if left <= 0:
            break
        if unit.kind in ("files", "parquet"):
            count = unit.rows
        elif unit.kind == "jsonl":
            end, count = _jsonl_end_after(Path(unit.path), left)
            if count >= left:
                unit.nbytes, unit.end = end, end
        elif unit.kind == "remote":  # a Parquet footer, else a bounded read of the file
            count = remote_count(unit, left)
        else:  # arrow: unknown without reading; cap the unit instead
            count = left
        if count >= left:
            if unit.kind in ("parquet", "arrow", "remote"):
                unit.limit = left
            out.append(unit)
            break
        out.append(unit)
        left -= count
    return out


def _merge(atoms: list[Unit], target: float) -> list[Unit]:
    """Cut the atoms into units of about `target` bytes: an atom joins the unit of the atom before
    it when both start in the same `target`-sized stretch of the corpus (by cumulative bytes) and
    come from the same file or folder; a large JSONL file is cut into byte ranges."""
    units: list[Unit] = []
    keys: list[int] = []
    offset = 0
    for atom in atoms:
        step = max(int(target), MIN_JSONL_RANGE)
        if atom.kind == "jsonl" and atom.end - atom.start > step:
            for lo in range(atom.start, atom.end, step):
                hi = min(lo + step, atom.end)
                units.append(Unit("jsonl", atom.path, atom.id_prefix, hi - lo, start=lo, end=hi))
                keys.append(-1)
            offset += atom.nbytes
            continue
        key = int(offset // target)
        offset += atom.nbytes
        last = units[-1] if units else None
        if (
            last is not None
            and keys[-1] == key
            and atom.kind in ("files", "parquet")
            and (last.kind, last.path, last.id_prefix) == (atom.kind, atom.path, atom.id_prefix)
        ):
            last.nbytes += atom.nbytes
            if atom.kind == "files":
                last.files.extend(atom.files)
            else:
                last.end = atom.end
            last.rows += atom.rows
            last.limit = None if atom.limit is None else last.rows - atom.rows + atom.limit
        else:
            units.append(atom)
            keys.append(key)
    return units


def make_plan(data: DataConfig) -> CorpusPlan:
    """Plan `data.corpus` from metadata: listings, sizes, mtimes, Parquet footers."""
    sources: dict[str, list[int]] = {}
    atoms = [u for spec in corpus_specs(data) for u in _source_units(spec, data, sources)]
    if data.max_documents is not None:
        atoms = _truncate(atoms, data.max_documents)
    total = sum(a.nbytes for a in atoms)
    target = max(1.0, min(float(data.unit_bytes), total / data.num_shards))
    units = _merge(atoms, target)
    if not units:
        raise ValueError(f"data.corpus: {data.corpus!r} yielded no documents (no files found)")
    for k, unit in enumerate(units):
        unit.index = k
    return CorpusPlan(units, sources, reading_settings(data))


def current_sources(plan: CorpusPlan) -> dict[str, list[int]]:
    """The size and mtime of every source the plan names, as they are now (one stat each)."""
    now = {}
    for path in plan.sources:
        try:
            st = os.stat(path)
            now[path] = [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            now[path] = [-1, -1]
    return now


def check_sources(plan: CorpusPlan, where: Path, listing: set[str] | None = None) -> None:
    """Raise naming the first source that changed (size or mtime), vanished or appeared since `plan` was made."""
    now = current_sources(plan)
    for path, (size, mtime) in plan.sources.items():
        if now[path] == [-1, -1]:
            problem = "was removed"
        elif now[path][0] != size:
            problem = f"changed size ({size} -> {now[path][0]} bytes)"
        elif now[path][1] != mtime:
            problem = "was modified (mtime changed)"
        else:
            continue
        raise ValueError(
            f"data.corpus: {path} {problem} since the corpus was scored into {where}. Scored "
            "shards are never mixed with new text: restore the file, or delete that folder (or set "
            "another data.scored_dir) to score the corpus again."
        )
    if listing is not None:
        added = sorted(listing - set(plan.sources))
        if added:
            raise ValueError(
                f"data.corpus: {added[0]} (and {len(added) - 1} more) appeared since the corpus was "
                f"scored into {where}. Delete that folder (or set another data.scored_dir) to score "
                "the corpus with them, or move them out of the corpus."
            )


def list_sources(data: DataConfig) -> set[str] | None:
    """The files the corpus specs name now (listing only), for spotting added files; None for hf: sources."""
    out: set[str] = set()
    for spec in corpus_specs(data):
        if spec.startswith("hf:"):
            return None
        if spec == "stdlib":
            out.update(str(p) for p in _folder_files(stdlib_root(), "**/*.py"))
        elif is_injected(spec):
            root, pattern, _ = injected_folder(spec, data)
            out.update(str(p) for p in _folder_files(root, pattern))
        elif os.path.isdir(spec):
            out.update(str(p) for p in _folder_files(Path(spec), data.file_glob))
        else:
            out.update(str(p) for p in record_files(spec))
    if data.max_documents is not None:
        return None  # a truncated plan names only the files it needs
    return out


def load_or_make_plan(data: DataConfig, folder: Path) -> CorpusPlan:
    """The plan pinned in `folder/plan.json` (checked against the sources), else a new one from metadata."""
    pinned = Path(folder) / "plan.json"
    if pinned.is_file():
        plan = CorpusPlan.from_json(pinned.read_text())
        try:
            check_sources(plan, Path(folder), list_sources(data))
        except ValueError as err:
            if (Path(folder) / "manifest.json").is_file():
                raise  # a completed scoring never mixes with new text
            # Scoring stopped before it finished (a bad record, a kill) and the corpus changed
            # since, e.g. the bad record was fixed: nothing was published, so plan it again;
            # `pin_job` clears the unfinished job's files.
            log.info("%s; scoring had not finished, so the corpus is planned again", _first(err))
            return make_plan(data)
        return plan
    return make_plan(data)


def _first(err: Exception) -> str:
    return str(err).split(" since the corpus", 1)[0]
