"""Data preparation and training on a real SLURM cluster (`bash .ci/slurm_cluster.sh up`).

Two slurmd "nodes" on this machine (phf-node1, phf-node2), jobs run as the submitting user with
its environment, so the test's Python, tmp paths and files are the jobs' too. CI always starts
the cluster; elsewhere these tests are skipped unless `sinfo` answers. Each test names its runs
uniquely and waits for its own jobs, with a bound.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.distributed import free_port
from tests.integration.launch import ROOT, check, env, python_run, read_metrics, tiny_config
from tests.integration.test_scoring_distributed import file_digests


def _cluster_state() -> str | None:
    """Why the cluster cannot be used, or None when both nodes answer."""
    if shutil.which("sinfo") is None:
        return "no `sinfo` on PATH: start a test cluster with `bash .ci/slurm_cluster.sh up` (root)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "the SLURM controller does not answer (sinfo timed out)"
    usable = [line for line in out.stdout.splitlines() if re.search(r" (idle|mix|alloc)\*?$", line)]
    if out.returncode != 0 or len(usable) < 2:
        why = out.stderr.strip() or out.stdout.strip() or "no nodes"
        return f"SLURM cluster not up (sinfo: {why}); start it with `bash .ci/slurm_cluster.sh up`"
    return None


_WHY_NOT = _cluster_state()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")]


@pytest.fixture(autouse=True)
def _jobs_find_this_python(monkeypatch):
    """Jobs inherit PATH: `python` and datatrove's `launch_pickled_pipeline` must be this env's."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def queued(prefix: str) -> list[str]:
    """`jobid name state` of the queued jobs whose name starts with `prefix`."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %j %T %r"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if line.split()[1].startswith(prefix)]


def wait_queue_empty(prefix: str, timeout: float) -> float:
    """Seconds until no job named `prefix...` is queued; fails (cancelling them) after `timeout`."""
    start = time.time()
    while jobs := queued(prefix):
        if time.time() - start > timeout:
            subprocess.run(["scancel", "--name", ",".join({j.split()[1] for j in jobs})])
            raise AssertionError(f"still queued after {timeout} s: {jobs}")
        time.sleep(1)
    return time.time() - start


def run_job(args: list[str], out: Path, timeout: float, **extra_env: str) -> tuple[str, str]:
    """`sbatch args`, waited for (scancel after `timeout`): (JobState ExitCode, its output)."""
    cmd = ["sbatch", "--parsable", f"--output={out}", *args]
    sub = subprocess.run(cmd, cwd=ROOT, env=env(**extra_env), capture_output=True, text=True)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().split(";")[0]
    deadline = time.time() + timeout
    while True:
        info = subprocess.run(
            ["scontrol", "-o", "show", "job", job], capture_output=True, text=True
        ).stdout
        state = re.search(r"JobState=(\S+)", info)
        # SIGNALING and STAGE_OUT are passing states too: a job whose time-limit signal is being
        # delivered shows SIGNALING after its tasks ended (seen under load), then COMPLETED.
        waiting = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT")
        if state and state[1] not in waiting:
            text = out.read_text() if out.is_file() else ""
            code = re.search(r" ExitCode=(\S+)", info)
            return f"{state[1]} {code[1] if code else '?'}", text
        if time.time() > deadline:
            subprocess.run(["scancel", job])
            tail = out.read_text()[-4000:] if out.is_file() else ""
            raise AssertionError(f"job {job} not done after {timeout} s:\n{tail}")
        time.sleep(1)


def test_default_slurm_preparation_writes_what_a_local_one_does(tmp_path):
    """No --partition (the cluster's default), default --mem_per_cpu_gb: the local bytes."""
    data = {"num_shards": 3, "max_documents": 40}
    local = tiny_config(tmp_path / "local", data={**data, "cache_dir": str(tmp_path / "c1")})
    name = f"prep-{tmp_path.name}"
    slurm = tiny_config(
        tmp_path / "slurm", run={"name": name}, data={**data, "cache_dir": str(tmp_path / "c2")}
    )
    check(python_run("prepare.py", ["--config", str(local), "--workers", "1"]))
    proc = python_run("prepare.py", ["--config", str(slurm), "--executor", "slurm"])
    check(proc)
    assert "using the cluster's default partition cpu" in proc.stderr
    assert "submitted 4 dependent SLURM job arrays" in proc.stdout
    wait_queue_empty(name, timeout=180)
    for stage in ("scored", "tokenizers", "packed"):
        assert file_digests(tmp_path / "c2" / stage) == file_digests(tmp_path / "c1" / stage)
    # All done: --wait has nothing to submit and nothing to wait for.
    again = python_run("prepare.py", ["--config", str(slurm), "--executor", "slurm", "--wait"])
    check(again)
    assert "Skipping launch" in again.stderr and "all 4 SLURM stages finished" in again.stderr


def test_a_failing_task_empties_the_queue_and_is_reported(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        lines = [f'{{"text": "def f{i}_{j}(x):\\n    return x + {j}\\n"}}' for j in range(8)]
        if i == 1:
            lines[2] = '{"text": "def broken(:'  # line 3 of b1.jsonl is not JSON
        (corpus / f"b{i}.jsonl").write_text("\n".join(lines) + "\n")
    name = f"fail-{tmp_path.name}"
    cfg = tiny_config(
        tmp_path,
        run={"name": name},
        data={"corpus": str(corpus / "*.jsonl"), "num_shards": 3, "max_documents": None},
    )
    args = ["--config", str(cfg), "--executor", "slurm"]
    check(python_run("prepare.py", args))
    # kill_invalid_depend: the stages after the failed array are cancelled, not left pending.
    waited = wait_queue_empty(name, timeout=120)
    print(f"queue empty {waited:.0f} s after submission")
    # --wait resubmits the unfinished tasks, waits for them, and names the failure in one line.
    proc = python_run("prepare.py", [*args, "--wait"], timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "the last attempt failed: SLURM stage score, task 1 failed" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: SLURM stage score, task 1 failed: data.corpus: "), last
    assert f"{corpus / 'b1.jsonl'}:3: invalid JSON" in last
    assert not queued(name)


def _train_config(tmp_path: Path, every_steps: int = 6, **train) -> Path:
    return tiny_config(tmp_path, train=train, checkpoint={"every_steps": every_steps})


SBATCH_2_NODES = [
    "--nodes=2",
    "--ntasks-per-node=1",
    "--gpus-per-node=0",
    "--cpus-per-task=1",
]


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run) if "loss" in r}


def test_slurm_train_sbatch_on_two_nodes(tmp_path):
    cfg = _train_config(tmp_path)
    state, out = run_job(
        [*SBATCH_2_NODES, "--time=5", "scripts/slurm_train.sbatch", str(cfg)],
        tmp_path / "train.out",
        timeout=240,
        MASTER_PORT=str(free_port()),
    )
    assert state == "COMPLETED 0:0", out[-4000:]
    run = tmp_path / "run"
    assert (run / "checkpoints" / "latest").read_text() == "step-00000012"
    assert sorted(losses(run)) == list(range(1, 13))
    assert "world 2, micro batch 2" in out  # one process group over both nodes
    assert (run / "checkpoints" / "step-00000012" / "rng_state_rank1.pt").is_file()


def test_time_limit_signal_saves_and_a_resubmission_continues(tmp_path):
    """`--signal=USR1@40` with `--time=2`: SLURM signals every task 50-80 s after the start
    (its time-limit check runs every 30 s); each rank saves and the job ends with exit 0."""
    cfg = _train_config(tmp_path, every_steps=0, max_steps=100_000)  # saves only on the signal
    run = tmp_path / "run"
    state, out = run_job(
        [*SBATCH_2_NODES, "--time=2", "--signal=USR1@40", "scripts/slurm_train.sbatch", str(cfg)],
        tmp_path / "first.out",
        timeout=200,
        MASTER_PORT=str(free_port()),
    )
    assert state == "COMPLETED 0:0", out[-4000:]
    assert "received SIGUSR1" in out, out[-4000:]
    saved = int((run / "checkpoints" / "latest").read_text().split("-")[1])
    assert saved == max(losses(run)) > 0
    end = saved + 3
    state, out = run_job(
        [*SBATCH_2_NODES, "--time=5", "scripts/slurm_train.sbatch", str(cfg)]
        + ["--train.max_steps", str(end)],
        tmp_path / "second.out",
        timeout=200,
        MASTER_PORT=str(free_port()),
    )
    assert state == "COMPLETED 0:0", out[-4000:]
    assert f"at step {saved}" in out and "resumed from" in out, out[-4000:]
    assert (run / "checkpoints" / "latest").read_text() == f"step-{end:08d}"
    assert sorted(losses(run))[-4:] == [saved, saved + 1, saved + 2, end]
