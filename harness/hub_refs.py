"""A run's Hub references (`data.tokenizer: hf:...`, `model.path: hf:...`), resolved once.

`resolve_run_refs(cfg)` runs in every entry point right after the config checks and turns each
`hf:<name>[@revision]` into a local folder before any other work:

- the revision is resolved to a commit once and recorded in `<run.output_dir>/hub.json`
  (`{key: {spec, repo, commit, path}}`); a relaunch with the same spec reads the record and
  contacts no Hub;
- the tokenizer's files are copied into `<run.output_dir>/tokenizer/`: it lives with the run;
- a model is downloaded at that commit into the Hugging Face cache (`HF_HOME`), where a relaunch
  finds it without a request.

Rank 0 of a launch resolves and writes the record; the other ranks wait for it and then read the
same commit (from the shared cache, or downloaded at that commit on a node with its own cache).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write_text
from harness.hub import hub_error, offline, resolve_commit, retry_seconds, split_ref, with_retries
from harness.run_folder import launch_rank

log = logging.getLogger(__name__)

RECORD = "hub.json"
TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "*.model",
    "config.json",
]
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]
TOKENIZER_HINT = (
    "save it with tokenizer.save_pretrained(folder) and set data.tokenizer to that folder "
    "(or data.tokenizer: null to train a BPE on the corpus)"
)
MODEL_HINT = "save it with model.save_pretrained(folder) and set model.path to that folder"


def read_record(out_dir: str | Path) -> dict[str, Any]:
    """The run's recorded Hub references ({} before the first launch)."""
    path = Path(out_dir) / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_record(out_dir: Path, key: str, entry: dict[str, Any]) -> None:
    record = read_record(out_dir)
    record[key] = entry
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")


def _wait_for_entry(out_dir: Path, key: str, spec: str) -> dict[str, Any]:
    """Another rank's wait for rank 0's record of `key` (bounded: the Hub's retry time + 10 min)."""
    deadline = time.monotonic() + retry_seconds() + 600
    while time.monotonic() < deadline:
        entry = read_record(out_dir).get(key)
        if entry is not None and entry.get("spec") == spec:
            return entry
        time.sleep(0.5)
    raise ValueError(f"{key}={spec}: rank 0 did not record it in {out_dir / RECORD} in time")


def _local_snapshot(name: str, revision: str | None, repo_type: str, patterns) -> str | None:
    """The cached snapshot of `name` at `revision`, without a request (None when not cached)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(
            name,
            revision=revision,
            repo_type=repo_type,
            allow_patterns=patterns,
            local_files_only=True,
        )
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None


def _download(key: str, spec: str, commit: str, patterns, hint: str) -> str:
    from huggingface_hub import snapshot_download

    name, _ = split_ref(spec)
    try:
        return with_retries(
            f"{key}={spec}",
            lambda: snapshot_download(name, revision=commit, allow_patterns=patterns),
        )
    except Exception as err:
        raise hub_error(key, spec, err, hint) from None


def _snapshot(key: str, spec: str, out_dir: Path, patterns, hint: str) -> tuple[str, str]:
    """(commit, local snapshot folder) of a model repo reference, resolved once per run."""
    name, revision = split_ref(spec)
    entry = read_record(out_dir).get(key)
    if launch_rank() != 0 and (entry is None or entry.get("spec") != spec):
        entry = _wait_for_entry(out_dir, key, spec)
    if entry is not None and entry.get("spec") == spec:
        commit = entry["commit"]
        local = _local_snapshot(name, commit, "model", patterns)
        return commit, local or _download(key, spec, commit, patterns, hint)
    if offline():
        local = _local_snapshot(name, revision, "model", patterns)
        if local is None:
            raise hub_error(key, spec, RuntimeError("offline"), hint)
        return Path(local).name, local
    commit = resolve_commit(key, spec, "model", hint)
    return commit, _download(key, spec, commit, patterns, hint)


def _has_weights(folder: str) -> bool:
    return any(Path(folder).glob("*.safetensors")) or any(Path(folder).glob("*.bin"))


def model_folder(spec: str, out_dir: Path) -> str:
    """`model.path: hf:...` as a local folder at the recorded commit (safetensors, else .bin)."""
    commit, folder = _snapshot("model.path", spec, out_dir, MODEL_FILES, MODEL_HINT)
    if not _has_weights(folder):  # an older repo with only pytorch_model.bin
        folder = _download("model.path", spec, commit, [*MODEL_FILES, "*.bin"], MODEL_HINT)
    if not (Path(folder) / "config.json").is_file():
        raise ValueError(
            f"model.path={spec}: the repo has no config.json (not a transformers model)"
        )
    if launch_rank() == 0:
        entry = {"spec": spec, "repo": split_ref(spec)[0], "commit": commit, "path": folder}
        if read_record(out_dir).get("model.path") != entry:
            _write_record(out_dir, "model.path", entry)
            log.info("model.path=%s: commit %s, in %s", spec, commit, folder)
    return folder


def tokenizer_folder(spec: str, out_dir: Path) -> str:
    """`data.tokenizer: hf:...` as `<run.output_dir>/tokenizer/`, copied once at the recorded commit."""
    target = out_dir / "tokenizer"
    entry = read_record(out_dir).get("data.tokenizer")
    if entry is not None and entry.get("spec") == spec and target.is_dir():
        return str(target)  # a relaunch: no Hub
    if launch_rank() != 0:
        _wait_for_entry(out_dir, "data.tokenizer", spec)
        return str(target)
    commit, folder = _snapshot("data.tokenizer", spec, out_dir, TOKENIZER_FILES, TOKENIZER_HINT)
    if (
        not (Path(folder) / "tokenizer_config.json").is_file()
        and not (Path(folder) / "tokenizer.json").is_file()
    ):
        raise ValueError(f"data.tokenizer={spec}: the repo has no tokenizer files")
    tmp = out_dir / f".tokenizer.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)  # the cache's symlinks become files: the run owns its copy
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    _write_record(
        out_dir,
        "data.tokenizer",
        {"spec": spec, "repo": split_ref(spec)[0], "commit": commit, "path": str(target)},
    )
    log.info("data.tokenizer=%s: commit %s, copied to %s", spec, commit, target)
    return str(target)


def resolve_run_refs(cfg) -> None:
    """Replace `hf:` references in `data.tokenizer` and `model.path` by local folders (see
    module); a pretrained `model.path` with a tokenizer of its own is the run's tokenizer when
    `data.tokenizer` is unset."""
    out_dir = Path(cfg.run.output_dir)
    if cfg.data.tokenizer is not None and cfg.data.tokenizer.startswith("hf:"):
        cfg.data.tokenizer = tokenizer_folder(cfg.data.tokenizer, out_dir)
    if cfg.model.path is not None and cfg.model.path.startswith("hf:"):
        cfg.model.path = model_folder(cfg.model.path, out_dir)
    path = cfg.model.path
    if path is not None and not cfg.model.from_scratch and cfg.data.tokenizer is None:
        if any(
            (Path(path) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")
        ):
            cfg.data.tokenizer = path
            if launch_rank() == 0:
                log.info("data.tokenizer is unset: using model.path's tokenizer (%s)", path)


def record_corpus(cfg, commits: dict[str, str]) -> None:
    """Note the commits the corpus plan pinned (`hf:` specs -> commit) in the run's record."""
    if not commits or launch_rank() != 0:
        return
    out_dir = Path(cfg.run.output_dir)
    entry = {spec: commit for spec, commit in sorted(commits.items())}
    if read_record(out_dir).get("data.corpus") != entry:
        _write_record(out_dir, "data.corpus", entry)
