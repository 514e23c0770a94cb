"""Reliability: resume at another world size, signals, corrupt/partial checkpoints, disk full,
non-finite steps, two-node launches and DeepSpeed's own zero_to_fp32 on our checkpoints."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import torch

from tests.integration.launch import (
    ROOT,
    check,
    deepspeed_popen,
    deepspeed_run,
    env,
    python_run,
    read_metrics,
    tiny_config,
)

pytestmark = pytest.mark.slow


def losses(run_dir):
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if "loss" in r}


def latest(run_dir):
    return (run_dir / "checkpoints" / "latest").read_text()


@pytest.mark.parametrize(
    ("first", "second", "stage", "objective"),
    [(2, 1, 2, "mle"), (1, 2, 2, "mle"), (2, 1, 3, "awr"), (1, 2, 1, "awr")],
)
def test_resume_at_another_world_size(tmp_path, first, second, stage, objective):
    """A run checkpointed at step 4 on `first` ranks resumes on `second` ranks (ZeRO 1, 2 and 3;
    AWR's value head among the states carried over) and continues as the uninterrupted run."""
    objectives = {"mle": {"name": "mle"}, "awr": {"name": "awr", "alpha": 0.5, "beta": 1.0}}
    ref = tiny_config(
        tmp_path,
        checkpoint={"every_steps": 4, "keep_last": 2},
        train={"max_steps": 8},
        objective=objectives[objective],
        deepspeed={"config": f"ds_configs/zero{stage}.json"},
    )
    check(deepspeed_run("train.py", ["--config", str(ref)], num_procs=first))
    a = losses(tmp_path / "run")
    # The same run as if it had been stopped after step 4: its last checkpoint unpublished (the
    # resumed run removes it and drops the metrics of steps 5..8), then resumed on `second` ranks.
    split = tmp_path / "split"
    shutil.copytree(tmp_path / "run", split)
    (split / "checkpoints" / "latest").write_text("step-00000004")
    proc = deepspeed_run(
        "train.py", ["--config", str(ref), "--run.output_dir", str(split)], num_procs=second
    )
    check(proc)
    assert f"written by {first} ranks, resuming on {second}" in proc.stdout + proc.stderr
    state = json.loads((split / "checkpoints" / "step-00000008" / "harness_state.json").read_text())
    assert state["loader"]["blocks_consumed"] == 8 * 8 and state["world_size"] == second
    b = losses(split)
    assert sorted(b) == list(range(1, 9))
    assert [a[s] for s in range(1, 5)] == [b[s] for s in range(1, 5)]
    # Same data, weights and optimizer state; only the reduction order differs.
    for s in range(5, 9):
        assert b[s] == pytest.approx(a[s], rel=1e-6), (s, a[s], b[s])
    if objective == "awr":  # the value head came back: its loss goes on from where it was
        va, vb = (
            {r["step"]: r["awr_value_loss"] for r in read_metrics(run) if "awr_value_loss" in r}
            for run in (tmp_path / "run", split)
        )
        for s in range(5, 9):
            assert vb[s] == pytest.approx(va[s], rel=1e-6), (s, va[s], vb[s])


def _wait_for_step(run_dir, step, proc, timeout=300):
    deadline = time.time() + timeout
    metrics = run_dir / "metrics.jsonl"
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early with exit code {proc.returncode}")
        if metrics.is_file() and any(r.get("step", 0) >= step for r in read_metrics(run_dir)):
            return
        time.sleep(0.1)
    raise AssertionError("the run did not reach the step in time")


def test_sigterm_to_one_rank_saves_on_all_ranks_and_exits_0(tmp_path):
    cfg = tiny_config(tmp_path, train={"max_steps": 2000}, checkpoint={"every_steps": 0})
    proc = deepspeed_popen(
        "train.py", ["--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    run = tmp_path / "run"
    _wait_for_step(run, 3, proc)
    ranks = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        if "train.py" in " ".join(p.cmdline()) and "deepspeed.launcher" not in " ".join(p.cmdline())
    ]
    assert len(ranks) == 2
    ranks[-1].send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "received SIGTERM" in out or "stop signal on another rank" in out
    step = max(losses(run))
    assert latest(run) == f"step-{step:08d}" and 3 <= step < 2000
    proc = python_run("train.py", ["--config", str(cfg), "--train.max_steps", str(step + 2)])
    check(proc)
    assert sorted(losses(run))[-2:] == [step + 1, step + 2]


def test_a_dying_wandb_service_does_not_stop_training(tmp_path):
    cfg = tiny_config(
        tmp_path,
        train={"max_steps": 30},
        checkpoint={"every_steps": 0},
        logging={"every_steps": 1, "wandb": "offline", "progress_bar": False},
    )
    proc = deepspeed_popen(
        "train.py",
        ["--config", str(cfg)],
        extra_env={"WANDB_MODE": "offline"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    run = tmp_path / "run"
    _wait_for_step(run, 3, proc)
    service = [
        p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "wandb-core"
    ]
    assert len(service) == 1  # a child of rank 0
    service[0].send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert out.count("wandb log failed (ConnectionResetError") == 1 and "Traceback" not in out
    assert sorted(losses(run)) == list(range(1, 31))
    assert latest(run) == "step-00000030"


def test_sigusr1_without_launcher(tmp_path):
    cfg = tiny_config(tmp_path, train={"max_steps": 2000}, checkpoint={"every_steps": 0})
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--config", str(cfg)],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for_step(tmp_path / "run", 2, proc)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "received SIGUSR1" in out
    assert latest(tmp_path / "run") == f"step-{max(losses(tmp_path / 'run')):08d}"


def test_corrupt_or_partial_latest_checkpoint_is_skipped(tmp_path):
    cfg = tiny_config(
        tmp_path, train={"max_steps": 6}, checkpoint={"every_steps": 3, "keep_last": 3}
    )
    check(python_run("train.py", ["--config", str(cfg)]))
    ckpts = tmp_path / "run" / "checkpoints"
    victim = next((ckpts / "step-00000006").glob("*optim_states.pt"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit: the size checks out, the checksum does not
    victim.write_bytes(bytes(data))
    (ckpts / "step-00000009").mkdir()  # an unpublished, partial save
    proc = python_run("train.py", ["--config", str(cfg), "--train.max_steps", "8"])
    check(proc)
    log = proc.stdout + proc.stderr
    assert "step-00000006 is incomplete or corrupt" in log and victim.name in log
    assert "another checksum than when it was saved" in log
    assert "resumed from" in log and "step-00000003 at step 3" in log
    assert sorted(losses(tmp_path / "run"))[-5:] == [4, 5, 6, 7, 8]


def test_disk_full_during_save_fails_loudly_and_keeps_previous_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, train={"max_steps": 4}, checkpoint={"every_steps": 2})
    check(python_run("train.py", ["--config", str(cfg)]))

    def small_files():  # writes past 256 KiB fail with EFBIG (Python ignores SIGXFSZ), like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "--config",
        str(cfg),
        "--train.max_steps",
        "8",
    ]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        preexec_fn=small_files,
        timeout=600,
    )
    assert proc.returncode != 0
    assert (
        "checkpoint save to" in proc.stderr and "still names the previous checkpoint" in proc.stderr
    )
    assert latest(tmp_path / "run") == "step-00000004"
    proc = python_run("train.py", ["--config", str(cfg), "--train.max_steps", "8"])
    check(proc)
    assert (
        "step-00000004 at step 4" in proc.stdout + proc.stderr
        and latest(tmp_path / "run") == "step-00000008"
    )


def _nan_config(tmp_path, bad_steps, max_bad):
    return tiny_config(
        tmp_path,
        objective={
            "name": "tests.integration.nan_objective.NaNAtSteps",
            "options": {"bad_steps": bad_steps, "micro_per_step": 4},
        },
        train={"max_steps": 6, "max_bad_steps": max_bad},
        checkpoint={"every_steps": 2},
    )


def test_non_finite_step_is_skipped_and_weights_stay_finite(tmp_path):
    proc = python_run("train.py", ["--config", str(_nan_config(tmp_path, [3], 3))])
    check(proc)
    assert "step 3: non-finite loss" in proc.stdout + proc.stderr
    lo = losses(tmp_path / "run")
    assert lo[3] != lo[3] and all(v == v for s, v in lo.items() if s != 3)  # NaN only at step 3
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    sd = get_fp32_state_dict_from_zero_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert all(torch.isfinite(t).all() for t in sd.values())


def test_too_many_non_finite_steps_stop_without_a_nan_checkpoint(tmp_path):
    proc = python_run("train.py", ["--config", str(_nan_config(tmp_path, [3, 4, 5, 6], 2))])
    assert proc.returncode != 0
    assert "2 consecutive non-finite steps (3..4)" in proc.stderr and "blocks [" in proc.stderr
    assert latest(tmp_path / "run") == "step-00000002"


def _wait_for_nodes(procs, timeout):
    """Every node's output; when one node fails (or time runs out) the others are killed, so a
    node left waiting for a dead peer's rendezvous does not hang the test."""
    outs = [""] * len(procs)
    readers = [
        threading.Thread(target=lambda i=i, p=p: outs.__setitem__(i, p.stdout.read()), daemon=True)
        for i, p in enumerate(procs)
    ]
    for r in readers:
        r.start()
    deadline = time.time() + timeout
    while time.time() < deadline and any(p.poll() is None for p in procs):
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    for r in readers:
        r.join(timeout=30)
    return outs


def test_two_node_launch_trains_checkpoints_and_resumes(tmp_path):
    cfg = tiny_config(tmp_path, train={"max_steps": 4}, checkpoint={"every_steps": 2})
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=1\n127.0.0.1 slots=1\n")

    def launch_two_nodes(extra):
        from harness.distributed import free_port

        port = str(free_port())
        cmds = [
            [
                "deepspeed",
                "--hostfile",
                str(hostfile),
                "--no_ssh",
                "--node_rank",
                str(n),
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                port,
                str(ROOT / "scripts" / "train.py"),
                "--config",
                str(cfg),
                *extra,
            ]
            for n in (0, 1)
        ]
        procs = [
            subprocess.Popen(
                c, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for c in cmds
        ]
        outs = _wait_for_nodes(procs, timeout=420)
        for n, (p, out) in enumerate(zip(procs, outs, strict=True)):
            assert p.returncode == 0, f"node {n} exit {p.returncode}:\n{out[-3000:]}\n" + "\n".join(
                f"--- node {m} ---\n{o[-2000:]}" for m, o in enumerate(outs) if m != n
            )
        return outs[0]

    out = launch_two_nodes([])
    assert "world 2" in out
    assert latest(tmp_path / "run") == "step-00000004"
    out = launch_two_nodes(["--train.max_steps", "6"])
    assert "resumed from" in out
    assert sorted(losses(tmp_path / "run")) == [1, 2, 3, 4, 5, 6]
    assert (
        json.loads(
            (tmp_path / "run" / "checkpoints" / "step-00000006" / "harness_state.json").read_text()
        )["world_size"]
        == 2
    )


def test_deepspeed_zero_to_fp32_script_consolidates_zero3_with_tied_weights(tmp_path):
    cfg = tiny_config(
        tmp_path, train={"max_steps": 2}, deepspeed={"config": "ds_configs/zero3.json"}
    )
    check(deepspeed_run("train.py", ["--config", str(cfg)]))
    ckpts = tmp_path / "run" / "checkpoints"
    out = tmp_path / "fp32"
    script = ckpts / "zero_to_fp32.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(ckpts), str(out)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(out.glob("*.bin")) + list(out.glob("*.safetensors"))
    assert files
    if files[0].suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(files[0])
    else:
        sd = torch.load(files[0], weights_only=True)
    from harness.config import ModelConfig
    from harness.model import build_model

    sd = {k.removeprefix("lm."): v for k, v in sd.items() if k.startswith("lm.")}
    lm = build_model(
        ModelConfig(n_layer=2, n_head=2, n_embd=64, dropout=0.0),
        sd["transformer.wte.weight"].shape[0],
        64,
        0,
    )
    missing, unexpected = lm.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    assert lm.lm_head.weight is lm.transformer.wte.weight
    assert torch.equal(lm.lm_head.weight, sd["transformer.wte.weight"])
    assert os.path.getsize(files[0]) > 0


def test_resuming_with_another_model_or_tokenizer_fails_before_touching_outputs(tmp_path):
    cfg = tiny_config(tmp_path, train={"max_steps": 2})
    check(python_run("train.py", ["--config", str(cfg)]))
    run = tmp_path / "run"
    # Every output as it was (the lock is the live run's: each launch takes it over).
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    proc = python_run(
        "train.py", ["--config", str(cfg), "--train.max_steps", "4", "--model.n_embd", "32"]
    )
    assert proc.returncode == 2
    assert "model.n_embd: checkpoint 64, config 32" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot resume")
    proc = python_run(
        "train.py", ["--config", str(cfg), "--train.max_steps", "4", "--data.vocab_size", "600"]
    )
    assert proc.returncode == 2 and "another tokenizer" in proc.stderr.strip().splitlines()[-1]
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before


def test_bad_data_fails_with_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"texts": ["a", "b"], "scores": [0.1]}\n')
    cfg = tiny_config(tmp_path, data={"corpus": str(bad), "max_documents": None})
    proc = python_run("train.py", ["--config", str(cfg)])
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: data.corpus:") and "bad.jsonl:1" in last
    assert not (tmp_path / "run").exists()
