"""Living with a launch: signals to the `deepspeed` command, one run per folder, Ctrl-C, and a
console that says each thing once. Two CPU ranks under the real `deepspeed` launcher, each launch
in a session of its own so that nothing of it can outlive the test unnoticed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.launch import (
    ROOT,
    check,
    deepspeed_cmd,
    deepspeed_run,
    env,
    read_metrics,
    tiny_config,
)

pytestmark = pytest.mark.slow


def long_config(tmp_path: Path, **sections) -> Path:
    """A run that would take minutes: it only ends when told to."""
    return tiny_config(
        tmp_path,
        train={"max_steps": 100_000},
        checkpoint={"every_steps": 100_000, "keep_last": 2},
        logging={"every_steps": 5, "wandb": "disabled", "progress_bar": False},
        **sections,
    )


def start(args: list[str], log: Path) -> subprocess.Popen:
    """`deepspeed --num_gpus 2 scripts/train.py args` in a new session, output to `log`."""
    return subprocess.Popen(
        deepspeed_cmd("train.py", args),
        cwd=ROOT,
        env=env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: signals reach it as a terminal's would
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    """Ctrl-C's default action, as in a terminal's foreground job. A test session started in the
    background (`pytest ... &` from a script) inherits SIGINT ignored, and then the `deepspeed`
    command would ignore it too (exit 1 instead of dying of it) while the ranks still stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def launched(args: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """`start` it; whatever happens in the block, nothing of the launch outlives it."""
    proc = start(args, log)
    try:
        yield proc
    finally:
        for pid in session_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)


def session_pids(sid: int) -> list[int]:
    """Live processes of session `sid` (the launch and everything it started)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        if fields[0] != b"Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def wait_until(predicate, timeout: float, what: str) -> None:
    """Poll `predicate` every 0.2 s; fail naming `what` after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def steps_logged(run_dir: Path) -> list[int]:
    """Steps with a training record in metrics.jsonl."""
    if not (run_dir / "metrics.jsonl").is_file():
        return []
    return [r["step"] for r in read_metrics(run_dir) if "loss" in r]


def saved_steps(run_dir: Path) -> list[int]:
    """Steps of the published checkpoints."""
    folder = run_dir / "checkpoints"
    return (
        sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*")) if folder.is_dir() else []
    )


def test_a_second_launch_is_refused_and_sigterm_to_deepspeed_stops_every_rank(tmp_path):
    cfg = long_config(tmp_path)
    run_dir = tmp_path / "run"
    with launched(["--config", str(cfg)], tmp_path / "first.log") as first:
        wait_until(lambda: len(steps_logged(run_dir)) >= 2, 300, "the first launch to train")
        before = (run_dir / "metrics.jsonl").read_bytes()
        # A second launch into the same folder: refused in seconds, naming the live run, and
        # leaving the folder as it was.
        started = time.time()
        second = deepspeed_run("train.py", ["--config", str(cfg)], timeout=120)
        assert second.returncode != 0
        out = second.stdout + second.stderr
        errors = [line for line in out.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, out[-3000:]
        assert "in use by a live run" in errors[0] and f"pid {first.pid}" not in errors[0]
        assert "on host" in errors[0], errors[0]
        assert time.time() - started < 60
        assert (run_dir / "metrics.jsonl").read_bytes().startswith(before)  # not trimmed
        assert saved_steps(run_dir) == []
        # SIGTERM to the outer `deepspeed` command: every rank saves at a step boundary and
        # nothing of the launch is left running.
        first.send_signal(signal.SIGTERM)
        wait_until(lambda: not session_pids(first.pid), 120, "every process of the launch to end")
    log = (tmp_path / "first.log").read_text()
    saved = saved_steps(run_dir)
    assert len(saved) == 1 and saved[0] >= 2, log[-3000:]
    # Whichever rank noticed first, rank 0 says why it stops (its own watch, or the other rank's).
    assert "stopping after step" in log, log[-3000:]
    assert "the launcher exited" in log or "a stop signal on another rank" in log
    assert "Traceback" not in log, log[-4000:]
    # The rerun continues from that checkpoint.
    rerun = deepspeed_run(
        "train.py", ["--config", str(cfg), "--train.max_steps", str(saved[0] + 2)], timeout=300
    )
    check(rerun)
    assert steps_logged(run_dir)[-1] == saved[0] + 2


def test_ctrl_c_saves_once_and_exits_130_and_a_second_aborts(tmp_path):
    cfg = long_config(tmp_path)
    run_dir = tmp_path / "run"
    with launched(["--config", str(cfg)], tmp_path / "ctrl_c.log") as launch:
        wait_until(lambda: len(steps_logged(run_dir)) >= 2, 300, "the launch to train")
        os.killpg(launch.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        wait_until(lambda: not session_pids(launch.pid), 120, "every process of the launch to end")
    log = (tmp_path / "ctrl_c.log").read_text()
    # The shell's 130: the `deepspeed` command dies of the SIGINT itself (-2 here).
    assert launch.wait() in (130, -signal.SIGINT), log[-3000:]
    lines = [line for line in log.splitlines() if "Ctrl-C again to abort" in line]
    assert len(lines) == 1 and lines[0].startswith("stopping after step "), log[-3000:]
    assert len(saved_steps(run_dir)) == 1, log[-3000:]
    assert "socket.send()" not in log and "Error" not in log.replace("KeyboardInterrupt", ""), log
    after = log[log.index("Ctrl-C again to abort") :].splitlines()
    assert len(after) < 30, log[-4000:]  # the stop itself: a few lines, not hundreds
    # No rank prints a traceback. DeepSpeed's own runner (the `deepspeed` process) prints its
    # KeyboardInterrupt's: it is not ours to change from inside the ranks.
    assert not our_tracebacks(log), log[-4000:]
    # A second Ctrl-C aborts at once: two presses within a step of at least 1 s (2 micro
    # batches of 0.5 s), so the first one's checkpoint never comes.
    slow = ["--objective.name", "tests.integration.slow_objective.SlowStepMLE"]
    slow += ["--checkpoint.allow_resume_with_changes", "true"]
    resumed_at = saved_steps(run_dir)[0]
    with launched(["--config", str(cfg), *slow], tmp_path / "abort.log") as again:
        wait_until(
            lambda: len(steps_logged(run_dir)) >= 4 and steps_logged(run_dir)[-1] > resumed_at,
            300,
            "the relaunch to train",
        )
        os.killpg(again.pid, signal.SIGINT)
        time.sleep(0.3)  # two presses, not one coalesced signal
        os.killpg(again.pid, signal.SIGINT)
        wait_until(lambda: not session_pids(again.pid), 60, "the launch to abort")
    aborted = (tmp_path / "abort.log").read_text()
    assert not our_tracebacks(aborted), aborted[-4000:]
    assert saved_steps(run_dir) == [saved_steps(run_dir)[0]]  # aborted: no second checkpoint


def our_tracebacks(log: str) -> list[str]:
    """Tracebacks that are not DeepSpeed's runner's KeyboardInterrupt (the `deepspeed` command
    dies of the SIGINT in `subprocess.wait`: not ours to change from inside the ranks)."""
    blocks = log.split("Traceback (most recent call last):")[1:]
    return [
        b
        for b in blocks
        if not ("KeyboardInterrupt" in b and "/bin/deepspeed" in b and "harness/" not in b)
    ]


def test_errors_once_warnings_once_and_a_last_line_saying_where(tmp_path):
    cfg = tiny_config(
        tmp_path,
        eval={"every_steps": 6, "batches": 1, "scenarios": ["unconditional"], "num_samples": 4,
              "max_new_tokens": 8, "export_hf": True, "api_kl_model": "gpt-x"},
    )  # fmt: skip
    bad = deepspeed_run("train.py", ["--config", str(cfg), "--train.lr", "-1"], timeout=300)
    errors = [line for line in (bad.stdout + bad.stderr).splitlines() if "error:" in line]
    assert bad.returncode == 2 and len(errors) == 1, bad.stderr[-3000:]
    proc = deepspeed_run("train.py", ["--config", str(cfg)], timeout=600)
    check(proc)
    out = proc.stdout + proc.stderr
    assert "all_gather_into_tensor is deprecated" not in out
    assert "Attempting to get learning rate from scheduler" not in out
    assert out.count("eval/kl_api skipped") == 1, out[-4000:]  # 2 evaluations x 2 ranks
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert f"done: step 12, outputs in {tmp_path / 'run'} (checkpoints/, eval/, hf/)" in last, last
