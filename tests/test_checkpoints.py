"""Checkpoints: one verified resolution for resume and inference, the resume guard, atomic writes."""

import json

import pytest
import yaml

from harness.checkpoints.atomic import atomic_write_text
from harness.checkpoints.inference import resolve_checkpoint
from harness.checkpoints.layout import eval_dir, find_eval_dir, step_of, tag_for
from harness.checkpoints.resume import check_resumable, check_tokenizer
from harness.config import config_to_yaml
from harness.config.parse import parse_config as parse


def fake_checkpoint(root, step, payload=b"0123456789"):
    """A checkpoint folder as save_checkpoint publishes it: files listed with their sizes."""
    folder = root / tag_for(step)
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(payload)
    state = {"step": step, "files": {"model.pt": len(payload)}}
    (folder / "harness_state.json").write_text(json.dumps(state))
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


def parse_config(argv):
    return parse(["--train.max_steps", "10", *argv])


def state_of(*argv):
    cfg = parse_config(list(argv))
    return {"tag": "step-00000010", "config": config_to_yaml(cfg), "corpus_fingerprint": "abc"}


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
        check_tokenizer({**state, "tokenizer_fingerprint": "t1"}, "t2")


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
