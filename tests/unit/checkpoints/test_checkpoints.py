"""Checkpoints: one verified resolution for resume and inference, the resume guard, atomic writes."""

import json
from dataclasses import replace

import pytest
import yaml

from harness.atomic import atomic_write_text, remove_leftovers, temp_path
from harness.checkpoints.inference import resolve_checkpoint
from harness.checkpoints.layout import eval_dir, find_eval_dir, step_of, tag_for
from harness.checkpoints.resume import check_resumable, check_tokenizer
from harness.checkpoints.state import RunState
from harness.checkpoints.training import (
    describe_files,
    find_resumable,
    remove_unpublished,
    verify_checkpoint,
)
from harness.config import config_to_yaml
from harness.run_config import parse_config as parse


def fake_checkpoint(root, step, payload=b"0123456789"):
    """A checkpoint folder as save_checkpoint publishes it: files listed with sizes and checksums."""
    folder = root / tag_for(step)
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(payload)
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.json").write_text("{}")
    RunState(step=step, files=describe_files(folder)).write(folder)
    (root / "latest").write_text(folder.name)
    return folder


def test_layout_names_steps_one_way(tmp_path):
    assert tag_for(12) == "step-00000012" and step_of("step-00000012") == 12
    assert eval_dir(tmp_path, 12) == tmp_path / "eval" / "step-00000012"
    with pytest.raises(ValueError, match="not a step tag"):
        step_of("final")
    with pytest.raises(FileNotFoundError, match="has the run been evaluated"):
        find_eval_dir(tmp_path)


def test_inference_skips_a_truncated_checkpoint_as_resume_does(tmp_path):
    root = tmp_path / "run" / "checkpoints"
    fake_checkpoint(root, 2)
    newest = fake_checkpoint(root, 4)
    assert resolve_checkpoint(tmp_path / "run") == (root, "step-00000004")
    (newest / "model.pt").write_bytes(b"01234")  # truncated: present, but short
    assert resolve_checkpoint(tmp_path / "run") == (root, "step-00000002")
    assert resolve_checkpoint(root) == (root, "step-00000002")
    with pytest.raises(FileNotFoundError, match="model.pt has 5 bytes, expected 10"):
        resolve_checkpoint(newest)
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        resolve_checkpoint(tmp_path)


def test_a_flipped_byte_is_caught_by_the_checksum_and_the_previous_checkpoint_used(tmp_path):
    root = tmp_path / "checkpoints"
    fake_checkpoint(root, 2)
    newest = fake_checkpoint(root, 4, payload=bytes(range(200)))
    state = json.loads((newest / "harness_state.json").read_text())
    assert set(state["files"]) == {"model.pt", "tokenizer/vocab.json"}
    assert (
        state["files"]["model.pt"]["bytes"] == 200
        and len(state["files"]["model.pt"]["xxh3_128"]) == 32
    )
    assert verify_checkpoint(newest) is None
    data = bytearray((newest / "model.pt").read_bytes())
    data[117] ^= 0x10  # one bit, same size: a size check alone passes it
    (newest / "model.pt").write_bytes(bytes(data))
    assert "model.pt has the right size but another checksum" in verify_checkpoint(newest)
    assert find_resumable(root) == "step-00000002"


def test_checkpoints_listing_sizes_only_still_verify_by_size(tmp_path):
    folder = fake_checkpoint(tmp_path, 3)
    (folder / "harness_state.json").write_text(json.dumps({"step": 3, "files": {"model.pt": 10}}))
    assert verify_checkpoint(folder) is None
    (folder / "model.pt").write_bytes(b"0123")
    assert "model.pt has 4 bytes, expected 10" in verify_checkpoint(folder)


def test_leftovers_of_a_killed_attempt_are_cleared_and_a_half_swapped_folder_restored(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000004").mkdir(parents=True)
    temp_path(run / "checkpoints" / "step-00000004" / "rng_state_rank1.pt").write_bytes(b"x")
    temp_path(run / "metrics.jsonl").write_text("{}")
    (run / ".hf.tmp123").mkdir()  # the new export, killed before it was renamed into place
    (run / ".eval.old77").mkdir()  # killed between the two renames: the target is missing
    (run / ".eval.old77" / "metrics.json").write_text("{}")
    (run / "config.yaml").write_text("a: 1\n")
    (run / ".config.yaml.old5").write_text("stale")  # target present: the old copy goes
    (run / "wandb").mkdir()
    (run / "wandb" / ".x.tmp1").write_text("wandb's own")
    done = remove_leftovers(run)
    assert len(done) == 5 and any("restored" in d for d in done)
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert left == [
        "checkpoints",
        "checkpoints/step-00000004",
        "config.yaml",
        "eval",
        "eval/metrics.json",
        "wandb",
        "wandb/.x.tmp1",
    ]


def test_unpublished_checkpoint_folders_are_removed(tmp_path):
    root = tmp_path / "checkpoints"
    fake_checkpoint(root, 2)
    fake_checkpoint(root, 4)
    (root / "step-00000006").mkdir()  # a save killed before `latest` named it
    (root / "step-00000002.universal").mkdir()  # a conversion of a checkpoint that is still there
    (root / "step-00000001.universal").mkdir()  # of a pruned one
    removed = remove_unpublished(root)
    assert len(removed) == 2
    assert sorted(p.name for p in root.iterdir()) == [
        "latest",
        "step-00000002",
        "step-00000002.universal",
        "step-00000004",
    ]


def parse_config(argv):
    return parse(["--train.max_steps", "10", *argv])


def state_of(*argv):
    cfg = parse_config(list(argv))
    return RunState(
        step=10, tag="step-00000010", config=config_to_yaml(cfg), corpus_fingerprint="abc"
    )


def test_resume_guard_names_both_values():
    state = state_of("--objective.name", "mle")
    check_resumable(parse_config([]), state, "abc")  # the same run: fine
    with pytest.raises(ValueError, match="corpus fingerprint .* checkpoint abc, now def"):
        check_resumable(parse_config([]), state, "def")
    with pytest.raises(ValueError, match="data.scorer: checkpoint 'pep8', config 'pii'"):
        check_resumable(parse_config(["--data.scorer", "pii"]), state, "abc")
    awr = parse_config(["--objective.name", "awr"])
    with pytest.raises(ValueError, match="objective.name: checkpoint 'mle', config 'awr'"):
        check_resumable(awr, state, "abc")
    allowed = ["--objective.name", "awr", "--checkpoint.allow_resume_with_changes", "true"]
    check_resumable(parse_config(allowed), state, "def")
    # The model shape can never change under a run, allowed or not.
    bigger = parse_config([*allowed, "--model.n_layer", "24"])
    with pytest.raises(ValueError, match="the model differs .*model.n_layer"):
        check_resumable(bigger, state, "abc")
    with pytest.raises(ValueError, match="another tokenizer"):
        check_tokenizer(replace(state, tokenizer_fingerprint="t1"), "t2")


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "out.yaml"
    atomic_write_text(path, yaml.safe_dump({"a": 1}))
    assert yaml.safe_load(path.read_text()) == {"a": 1}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "b: 2\n")
    assert yaml.safe_load(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]  # no temporary left
