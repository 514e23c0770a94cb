"""The run state a checkpoint records (`harness_state.json`): one typed record, versioned.

Written by rank 0 once every rank's files of a checkpoint are on disk (`save_checkpoint`), read
on resume, by evaluation, export, red teaming and the analyses. Version 1 is every file written
before the record had a `version` key (some list a file as its bare size, from before checksums);
they are still read. A file of a newer version than this harness knows is refused with a line
that says so, rather than resumed from half-understood.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write_text
from harness.data.loader import LoaderState

STATE_FILE = "harness_state.json"
RUN_STATE_VERSION = 2


@dataclass(frozen=True)
class FileRecord:
    """One file of a checkpoint: its size and, since version 1's later files, its xxh3-128."""

    bytes: int
    xxh3_128: str | None = None

    @classmethod
    def from_json(cls, value: Any) -> FileRecord:
        """A `{"bytes", "xxh3_128"}` entry, or a bare size (the oldest checkpoints)."""
        if isinstance(value, int):
            return cls(value)
        return cls(int(value["bytes"]), value.get("xxh3_128"))

    def to_json(self) -> dict[str, Any]:
        """The JSON entry (no checksum key when there is none)."""
        out: dict[str, Any] = {"bytes": self.bytes}
        if self.xxh3_128 is not None:
            out["xxh3_128"] = self.xxh3_128
        return out


@dataclass
class RunState:
    """Where a run stands at a checkpoint, and what it was trained on."""

    step: int
    """Optimizer steps done."""
    tokens: int = 0
    """Training tokens seen (including `train.tokens_already_seen`)."""
    seed: int = 0
    """`run.seed`: reseeds the ranks when a checkpoint is resumed at another world size."""
    loader: LoaderState = field(default_factory=LoaderState)
    """The data stream's position (blocks consumed and its seed)."""
    config: str = ""
    """The resolved run config, as YAML."""
    corpus_fingerprint: str | None = None
    """The corpus plan's fingerprint (data.corpus and its files) the run trained on."""
    scored_dir: str | None = None
    """The scored shards the run read."""
    packed_dir: str | None = None
    """The packed blocks the run read (evaluation takes its held-out split from here)."""
    tokenizer_fingerprint: str | None = None
    """The tokenizer's fingerprint: a resume with another tokenizer is refused."""
    world_size: int | None = None
    """Ranks that wrote the checkpoint (another world size resumes through the universal format)."""
    files: dict[str, FileRecord] = field(default_factory=dict)
    """Every file of the checkpoint (relative path) with its size and checksum."""
    version: int = RUN_STATE_VERSION
    """Format version of the record (1: files written before this key existed)."""
    tag: str | None = field(default=None, compare=False)
    """The checkpoint folder's name (`step-XXXXXXXX`); set when read, never written."""

    def to_json(self) -> str:
        """The JSON text of `harness_state.json` (no `tag`: the folder's name is the tag)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tag"}
        out["loader"] = asdict(self.loader)
        out["files"] = {rel: entry.to_json() for rel, entry in self.files.items()}
        return json.dumps(out, indent=2)

    @classmethod
    def from_json(cls, text: str, tag: str | None = None) -> RunState:
        """Parse `harness_state.json` of any version this harness knows.

        ValueError (json.JSONDecodeError included) names what is wrong: not JSON, no step, or a
        version newer than this harness reads. Keys it does not know are ignored.
        """
        raw = json.loads(text)
        if not isinstance(raw, dict) or "step" not in raw:
            raise ValueError("it has no `step` (not a harness state)")
        version = int(raw.get("version", 1))
        if version > RUN_STATE_VERSION:
            raise ValueError(
                f"format version {version} is newer than this harness reads ({RUN_STATE_VERSION}): "
                "upgrade phf-harness"
            )
        known = {f.name for f in fields(cls)} - {"tag", "loader", "files", "version"}
        values = {k: v for k, v in raw.items() if k in known}
        return cls(
            **values,
            loader=LoaderState(**raw.get("loader", {})),
            files={rel: FileRecord.from_json(v) for rel, v in raw.get("files", {}).items()},
            version=version,
            tag=tag,
        )

    @classmethod
    def read(cls, folder: str | Path) -> RunState:
        """The state of the checkpoint folder `folder` (its name is the tag)."""
        folder = Path(folder)
        return cls.from_json((folder / STATE_FILE).read_text(), tag=folder.name)

    def write(self, folder: str | Path) -> None:
        """Write `folder/harness_state.json` atomically, as the current version."""
        atomic_write_text(
            Path(folder) / STATE_FILE, replace(self, version=RUN_STATE_VERSION).to_json()
        )
