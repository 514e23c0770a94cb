"""End-to-end CPU DeepSpeed runs: 2 ranks, ZeRO-2 and ZeRO-3 (tied embeddings), checkpoint and resume."""

import json
import subprocess
import sys

import pytest
import torch

from tests.integration.launch import (
    ROOT,
    check,
    deepspeed_run,
    env,
    python_run,
    read_metrics,
    tiny_config,
)

pytestmark = pytest.mark.slow


def train_losses(records):
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.mark.parametrize("stage", [2, 3])
def test_two_rank_run_learns_checkpoints_and_resumes(tmp_path, stage):
    cfg = tiny_config(tmp_path, deepspeed={"config": f"ds_configs/zero{stage}.json"})
    run = tmp_path / "run"
    check(deepspeed_run("train.py", ["--config", str(cfg)]))
    losses = train_losses(read_metrics(run))
    assert sorted(losses) == list(range(1, 13))
    assert losses[12] < 0.95 * losses[1], losses  # it learns (about 6.25 -> 5.8 in 12 tiny steps)
    assert (run / "config.yaml").is_file()
    ckpts = run / "checkpoints"
    assert (ckpts / "latest").read_text() == "step-00000012"
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-00000006", "step-00000012"]
    state = json.loads((ckpts / "step-00000012" / "harness_state.json").read_text())
    assert (
        state["step"] == 12
        and state["loader"]["blocks_consumed"] == 12 * 8
        and state["world_size"] == 2
    )
    assert state["tokens"] == 12 * 8 * 64

    # Rerunning the same command with a longer budget continues from step 12.
    proc = deepspeed_run("train.py", ["--config", str(cfg), "--train.max_steps", "16"])
    check(proc)
    assert "resumed from" in proc.stdout + proc.stderr
    records = read_metrics(run)
    resumed = [r["step"] for r in records if "loss" in r][12:]
    assert resumed == [13, 14, 15, 16]
    assert (ckpts / "latest").read_text() == "step-00000016"
    assert sorted(p.name for p in ckpts.glob("step-*")) == [
        "step-00000012",
        "step-00000016",
    ]  # keep_last 2

    if stage == 3:
        # Tied lm_head/embeddings survive ZeRO-3 partitioning: the consolidated weights load into GPT-2.
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        from harness.config import ModelConfig
        from harness.model import build_model

        sd = get_fp32_state_dict_from_zero_checkpoint(str(ckpts))
        sd = {k.removeprefix("lm."): v for k, v in sd.items() if k.startswith("lm.")}
        lm = build_model(
            ModelConfig(n_layer=2, n_head=2, n_embd=64, dropout=0.0),
            vocab_size=sd["transformer.wte.weight"].shape[0],
            seq_len=64,
            seed=0,
        )
        missing, unexpected = lm.load_state_dict(sd, strict=False)
        assert not unexpected and set(missing) <= {"lm_head.weight"}
        assert lm.lm_head.weight is lm.transformer.wte.weight
        assert torch.equal(lm.lm_head.weight, sd["transformer.wte.weight"])


def test_plain_python_without_launcher_runs_one_process(tmp_path):
    cfg = tiny_config(tmp_path, train={"max_steps": 3}, checkpoint={"every_steps": 0})
    check(python_run("train.py", ["--config", str(cfg)]))
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert all(
        k in records[0]
        for k in ("step", "loss", "lr", "tokens", "tokens_per_s", "mfu", "grad_norm")
    )
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step-00000003"


def test_train_main_destroys_the_process_group_when_done(tmp_path):
    # A rank that exits with the group alive can abort in Gloo's teardown (SIGABRT, "terminate
    # called without an active exception") after its work is done, failing the whole launch.
    cfg = tiny_config(tmp_path, train={"max_steps": 2}, checkpoint={"every_steps": 0})
    code = (
        "import sys, torch.distributed as d\n"
        "from harness.cli import train_main\n"
        f"assert train_main(['--config', {str(cfg)!r}]) == 0\n"
        "print('group alive after train_main:', d.is_initialized())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True
    )
    check(proc)
    assert "group alive after train_main: False" in proc.stdout


def test_bad_config_fails_before_any_work(tmp_path):
    cfg = tiny_config(tmp_path, train={"micro_batch_size": 3})
    proc = deepspeed_run("train.py", ["--config", str(cfg)])
    assert proc.returncode != 0
    assert "train.micro_batch_size=3" in proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_stopped_and_resumed_run_matches_uninterrupted_run_exactly(tmp_path, stage):
    common = {
        "model": {"dropout": 0.1},  # dropout RNG of every rank must come back too
        "deepspeed": {"config": f"ds_configs/zero{stage}.json"},
        "checkpoint": {"every_steps": 0},
    }
    straight = tiny_config(tmp_path / "a", **common, data={"cache_dir": str(tmp_path / "cache")})
    split = tiny_config(tmp_path / "b", **common, data={"cache_dir": str(tmp_path / "cache")})
    check(deepspeed_run("train.py", ["--config", str(straight)]))
    check(deepspeed_run("train.py", ["--config", str(split), "--train.stop_at_step", "5"]))
    assert train_losses(read_metrics(tmp_path / "b" / "run")).keys() == set(range(1, 6))
    check(deepspeed_run("train.py", ["--config", str(split)]))
    a = train_losses(read_metrics(tmp_path / "a" / "run"))
    b = train_losses(read_metrics(tmp_path / "b" / "run"))
    assert a == b  # fp32 on CPU: identical at every step, before and after the resume


def test_cpu_runs_leave_no_deepspeed_shm_segments(tmp_path):
    from pathlib import Path

    def segments():
        return set(Path("/dev/shm").glob("deepspeed_allreduce_buffer_*"))

    before = segments()
    cfg = tiny_config(tmp_path, train={"max_steps": 2}, checkpoint={"every_steps": 0})
    check(deepspeed_run("train.py", ["--config", str(cfg)]))
    check(python_run("train.py", ["--config", str(cfg), "--train.max_steps", "3"]))
    assert segments() - before == set()  # DeepSpeed itself never unlinks them
