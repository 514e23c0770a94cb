"""The run state a checkpoint records: one typed, versioned record; old files still read."""

import json

import pytest

from harness.checkpoints.state import RUN_STATE_VERSION, FileRecord, RunState
from harness.checkpoints.training import verify_checkpoint
from harness.data.loader import LoaderState


def full_state():
    return RunState(
        step=12,
        tokens=3072,
        seed=7,
        loader=LoaderState(blocks_consumed=96, seed=7),
        config="run:\n  seed: 7\n",
        corpus_fingerprint="c0ffee",
        scored_dir="/cache/scored/x",
        packed_dir="/cache/packed/y",
        tokenizer_fingerprint="t1",
        world_size=2,
        files={
            "model.pt": FileRecord(10, "ab" * 16),
            "tokenizer/vocab.json": FileRecord(2, "cd" * 16),
        },
    )


def test_a_state_written_reads_back_equal_and_names_its_folder_as_tag(tmp_path):
    folder = tmp_path / "step-00000012"
    folder.mkdir()
    full_state().write(folder)
    raw = json.loads((folder / "harness_state.json").read_text())
    assert raw["version"] == RUN_STATE_VERSION and "tag" not in raw
    assert raw["loader"] == {"blocks_consumed": 96, "seed": 7}
    assert raw["files"]["model.pt"] == {"bytes": 10, "xxh3_128": "ab" * 16}
    back = RunState.read(folder)
    assert back == full_state() and back.tag == "step-00000012"
    assert isinstance(back.loader, LoaderState) and back.loader.blocks_consumed == 96


def test_a_version_1_file_is_read_with_the_defaults_the_old_readers_used():
    # As the harness wrote it before the record had a version: no seed, no world size, a file
    # listed by its bare size (before checksums), and a key this harness no longer knows.
    old = {
        "step": 3,
        "tokens": 96,
        "loader": {"blocks_consumed": 24, "seed": 0},
        "config": "",
        "files": {"model.pt": 10},
        "retired_key": 1,
    }
    state = RunState.from_json(json.dumps(old), tag="step-00000003")
    assert (state.version, state.step, state.tokens, state.seed) == (1, 3, 96, 0)
    assert state.world_size is None and state.tokenizer_fingerprint is None
    assert state.files == {"model.pt": FileRecord(10)}
    assert state.loader == LoaderState(blocks_consumed=24, seed=0)


def test_a_newer_version_is_refused_naming_the_versions(tmp_path):
    folder = tmp_path / "step-00000005"
    folder.mkdir()
    (folder / "harness_state.json").write_text(json.dumps({"step": 5, "version": 99}))
    with pytest.raises(
        ValueError, match=f"version 99 is newer than this harness reads \\({RUN_STATE_VERSION}\\)"
    ):
        RunState.read(folder)
    assert "version 99 is newer" in verify_checkpoint(folder)


def test_a_file_that_is_not_a_state_is_named_as_such(tmp_path):
    folder = tmp_path / "step-00000005"
    folder.mkdir()
    (folder / "harness_state.json").write_text("[]")
    assert "has no `step`" in verify_checkpoint(folder)
    (folder / "harness_state.json").write_text("{")
    assert "not valid JSON" in verify_checkpoint(folder)
