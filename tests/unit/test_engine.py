"""The training loop in this process (one rank, no launcher): a change to `fit` is checked in seconds.

The multi-rank runs (tests/integration/) check the same loop across processes and ZeRO stages.
"""

from __future__ import annotations

import json

import pytest

from harness import distributed as dist
from harness.distributed import free_port
from harness.engine import train
from harness.hub_refs import resolve_run_refs
from harness.run_config import parse_config
from tests.integration.launch import read_metrics, tiny_config


@pytest.fixture(scope="module")
def one_rank():
    """A world of one in this process for the module's tests, torn down at its end.

    One group for all of them: DeepSpeed caches its process groups, so a second group in the
    same process after `destroy_process_group` would meet stale ones.
    """
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key, value in {
            "RANK": "0",
            "WORLD_SIZE": "1",
            "LOCAL_RANK": "0",
            "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
        }.items():
            monkeypatch.setenv(key, value)
        yield
        dist.shutdown_distributed()


def run_config(tmp_path, name, *overrides):
    """The tiny config with its own run folder; the data cache is shared between runs."""
    path = tiny_config(
        tmp_path,
        run={"name": name, "output_dir": str(tmp_path / name), "seed": 7},
        train={"max_steps": 4, "global_batch_size": 4, "micro_batch_size": 2, "lr": 3e-3},
        checkpoint={"every_steps": 2, "keep_last": 3},
        eval={"every_steps": 2, "batches": 2, "scenarios": [], "export_hf": False},
    )
    return parse_config(["--config", str(path), *overrides], world_size=1)


def losses(folder):
    return {r["step"]: r["loss"] for r in read_metrics(folder) if "loss" in r}


def test_fit_logs_evaluates_checkpoints_and_resumes_exactly(tmp_path, one_rank):
    whole = run_config(tmp_path, "whole")
    last = train(whole)
    assert sorted(losses(tmp_path / "whole")) == [1, 2, 3, 4]
    evals = [r for r in read_metrics(tmp_path / "whole") if "eval/lm_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]  # the one held-out loss, every eval.every_steps
    assert not any("eval_loss" in r for r in read_metrics(tmp_path / "whole"))
    assert last["eval/lm_loss"] == evals[-1]["eval/lm_loss"]
    ckpts = tmp_path / "whole" / "checkpoints"
    assert (ckpts / "latest").read_text() == "step-00000004"
    state = json.loads((ckpts / "step-00000004" / "harness_state.json").read_text())
    assert state["step"] == 4 and state["tokens"] == 4 * 4 * 64

    # Stopped after step 2 and rerun: the same losses as the uninterrupted run, bit for bit.
    train(run_config(tmp_path, "split", "--train.stop_at_step", "2"))
    assert sorted(losses(tmp_path / "split")) == [1, 2]
    train(run_config(tmp_path, "split"))
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")


def test_resume_refuses_another_objective_unless_allowed(tmp_path, one_rank):
    train(run_config(tmp_path, "run", "--train.max_steps", "2"))
    changed = run_config(tmp_path, "run", "--train.max_steps", "2", "--objective.name", "ul")
    with pytest.raises(ValueError, match="objective.name: checkpoint 'mle', config 'ul'") as err:
        train(changed)
    assert "checkpoint.allow_resume_with_changes" in str(err.value)
    allowed = run_config(
        tmp_path,
        "run",
        *("--train.max_steps", "3", "--objective.name", "ul"),
        *("--checkpoint.allow_resume_with_changes", "true"),
    )
    train(allowed)
    assert sorted(losses(tmp_path / "run")) == [1, 2, 3]


def test_a_scorer_that_cannot_be_built_fails_before_training(tmp_path, one_rank):
    cfg = run_config(
        tmp_path,
        "bad",
        *("--eval.scenarios", "[unconditional]", "--eval.scorer_options", '{"bogus": 1}'),
    )
    with pytest.raises(ValueError, match="eval: the scorer of the samples"):
        train(cfg)
    assert not (tmp_path / "bad" / "checkpoints").exists()
    assert not (tmp_path / "cache").exists()  # no data work either


def test_finetuning_a_pretrained_run_adds_control_tokens_and_counts_tokens_from_where_it_left(
    tmp_path, one_rank
):
    import torch

    from harness.model import build_model, pretrained_rows
    from harness.objectives import build_objective
    from harness.tokenizer import load_tokenizer

    pre = run_config(tmp_path, "pre", "--train.max_steps", "2", "--eval.export_hf", "true")
    train(pre)
    hf = tmp_path / "pre" / "hf"
    finetune = [
        *("--model.path", str(hf), "--model.from_scratch", "false", "--data.tokenizer", str(hf)),
        *("--objective.name", "conditional", "--objective.threshold", "0.0"),
        *("--train.max_steps", "null", "--train.max_tokens", str(5 * 256)),
        *("--train.tokens_already_seen", str(2 * 256)),  # 2 steps of 4 x 64 tokens seen
    ]
    cfg = run_config(tmp_path, "ft", *finetune)

    # The model before training: pretrained rows as they were, two new control-token rows.
    rows = pretrained_rows(cfg.model)
    tok = load_tokenizer(hf, control_tokens=True)
    assert len(tok) == rows + 2
    pretrained = build_model(cfg.model, rows, 64, 0)  # the export, as it was saved
    lm = build_model(cfg.model, len(tok), 64, cfg.run.seed)
    build_objective(cfg.objective, cfg.run.seed).prepare_model(lm, tok, rows)
    old, new = pretrained.get_input_embeddings().weight, lm.get_input_embeddings().weight
    assert torch.equal(new[:rows], old)
    assert torch.allclose(new[rows:], old.mean(dim=0).expand(2, -1), atol=0.05)
    assert not torch.equal(new[rows], new[rows + 1])  # mean plus noise

    train(cfg)
    records = [r for r in read_metrics(tmp_path / "ft") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3]  # (5 - 2) x 256 tokens left: 3 steps
    assert [r["tokens"] for r in records] == [3 * 256, 4 * 256, 5 * 256]

    # data.tokenizer unset: the model folder's own tokenizer is the run's (it has one).
    unset = run_config(tmp_path, "ft2", *finetune, "--data.tokenizer", "null")
    resolve_run_refs(unset)
    assert unset.data.tokenizer == cfg.model.path
    with pytest.raises(ValueError, match="data.seq_len 128 exceeds model.path"):
        train(run_config(tmp_path, "ft3", *finetune, "--data.seq_len", "128"))
