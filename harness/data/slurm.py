"""What `scripts/prepare.py --executor slurm` needs of SLURM itself, before and after submitting.

Before any work: the SLURM commands are on PATH, `--partition` names a partition that exists (or,
without it, the cluster's default partition is used), and `--mem_per_cpu_gb` becomes a value
`sbatch` accepts: whole gigabytes as `<N>G`, anything else as whole megabytes `<N>M` (rounded
up; sbatch rejects `4.0G`).

After: datatrove's `SlurmPipelineExecutor` submits one job array per stage, each depending on
the one before (`afterok`). A failed task makes the dependents' dependency unsatisfiable: a
cluster with `DependencyParameters=kill_invalid_depend` cancels them, any other leaves them
pending forever. `--wait` polls `squeue` until the submitted jobs have left the queue (cancelling
dependents that can never run), then reads the completion markers and, for the first stage with
unfinished tasks, the error line datatrove logged for the failed task: one line, exit 1.
Without `--wait` the command returns after submitting; a rerun reports (as a warning) a task
whose last attempt failed, and resubmits what is unfinished.
"""

from __future__ import annotations

import getpass
import logging
import math
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.worker_watch import WorkerDied

log = logging.getLogger(__name__)

POLL_S = 2.0
MAX_POLL_S = 30.0


class SlurmTaskFailed(WorkerDied):
    """A task of a submitted preparation failed, or never ran, on SLURM."""


def slurm_output(args: list[str]) -> str:
    """stdout of a SLURM command; a missing command or a failed query is one line of bad input."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ValueError(
            f"--executor slurm: `{args[0]}` is not on PATH (no SLURM client here): run on a "
            "SLURM login node, or use --executor local"
        ) from None
    if proc.returncode != 0:
        why = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
        raise ValueError(f"--executor slurm: `{' '.join(args)}` failed: {why.splitlines()[0]}")
    return proc.stdout


def partitions() -> tuple[list[str], str | None]:
    """(names of the cluster's partitions, the default one or None), from `scontrol`."""
    out = slurm_output(["scontrol", "--all", "--oneliner", "show", "partition"])
    names, default = [], None
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "PartitionName" not in fields:
            continue
        names.append(fields["PartitionName"])
        if fields.get("Default") == "YES" and default is None:
            default = fields["PartitionName"]
    return names, default


def choose_partition(requested: str | None) -> str:
    """`requested` if the cluster has it, else the cluster's default; ValueError naming the key."""
    names, default = partitions()
    have = ", ".join(names) or "none"
    if requested:
        if requested not in names:
            raise ValueError(f"--partition={requested}: no such SLURM partition (have: {have})")
        return requested
    if default is None:
        raise ValueError(f"--partition: the SLURM cluster has no default partition (have: {have})")
    log.info("--partition not given: using the cluster's default partition %s", default)
    return default


def mem_per_cpu(gb: float) -> str:
    """`--mem_per_cpu_gb` as sbatch writes it: `<N>G` when whole, else `<N>M` rounded up."""
    if not gb > 0:
        raise ValueError(f"--mem_per_cpu_gb={gb}: must be positive (gigabytes per CPU)")
    if float(gb).is_integer():
        return f"{int(gb)}G"
    return f"{math.ceil(gb * 1024)}M"


def check_slurm_options(opts: Any) -> None:
    """Resolve `opts.partition` and put sbatch's `--mem-per-cpu` into `opts.sbatch_args`.

    Runs before any stage is planned, so bad input fails before any work.
    """
    slurm_output(["sbatch", "--version"])
    if not opts.env_command and shutil.which("launch_pickled_pipeline") is None:
        raise ValueError(
            "--executor slurm: datatrove's `launch_pickled_pipeline` is not on PATH, and the jobs "
            "inherit PATH: activate the environment first, or pass --env_command "
            '"source .venv/bin/activate"'
        )
    opts.partition = choose_partition(opts.partition)
    opts.sbatch_args = {"mem-per-cpu": mem_per_cpu(opts.mem_per_cpu_gb), **opts.sbatch_args}


@dataclass
class _Job:
    array_id: str
    name: str
    state: str
    reason: str


def _queued(ids: set[str], names: set[str]) -> list[_Job]:
    """Our jobs still in the queue: the stages' arrays and datatrove's stats-merging jobs."""
    out = slurm_output(["squeue", "-h", "-u", getpass.getuser(), "-o", "%F|%j|%T|%r"])
    first = min(int(i) for i in ids)
    jobs = []
    for line in out.splitlines():
        array_id, name, state, reason = (line.split("|") + ["", "", ""])[:4]
        if array_id in ids or (name in names and array_id.isdigit() and int(array_id) >= first):
            jobs.append(_Job(array_id, name, state, reason))
    return jobs


def _error_line(task_log: Path) -> str | None:
    """The error datatrove logged for a failed task (first line of the message), if any."""
    if not task_log.is_file():
        return None
    lines = task_log.read_text(errors="replace").splitlines()
    for line in lines:
        if re.search(r"\|\s*ERROR\s*\|", line) and " - " in line:
            message = line.split(" - ", 1)[1].strip()
            if message:
                return message
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b.*: ", line):
            return line.strip()
    return None


class SlurmSubmission:
    """The stages' SLURM executors: submit them, and with `wait`, report how they ended."""

    def __init__(self, stage_names: list[str], last: Any, wait: bool = False):
        self.stage_names, self.wait = stage_names, wait
        self.executors: list[Any] = []
        # Before submitting, each stage's executor `depends` on the one before.
        while last is not None:
            self.executors.insert(0, last)
            last = last.depends
        if len(self.executors) != len(stage_names):
            raise RuntimeError(f"{len(self.executors)} SLURM executors for stages {stage_names}")

    def failure(self) -> str | None:
        """One line on the first stage with unfinished tasks, or None when all finished."""
        for name, ex in zip(self.stage_names, self.executors, strict=True):
            ranks = ex.get_incomplete_ranks()
            if not ranks:
                continue
            logs = Path(ex.logging_dir.resolve_paths("logs"))
            for rank in ranks:
                task_log = logs / f"task_{rank:05d}.log"
                error = _error_line(task_log)
                if error:
                    return f"SLURM stage {name}, task {rank} failed: {error} (log: {task_log})"
            return (
                f"SLURM stage {name}: {len(ranks)} of {ex.tasks} tasks did not finish (cancelled, "
                f"preempted or out of time; see {ex.slurm_logs_folder}); rerun to resubmit them"
            )
        return None

    def run(self) -> None:
        """Submit what is unfinished; with `wait`, raise SlurmTaskFailed when a task failed."""
        earlier = self.failure()
        if earlier and " failed: " in earlier:
            log.warning("the last attempt failed: %s; resubmitting the unfinished tasks", earlier)
        self.executors[-1].run()
        if self.wait:
            self._wait()
            failed = self.failure()
            if failed:
                raise SlurmTaskFailed(failed)
            log.info("all %d SLURM stages finished", len(self.executors))

    def _wait(self) -> None:
        ids = {str(ex.job_id) for ex in self.executors if ex.job_id not in (None, -1, "-1")}
        if not ids:
            return
        names = {ex.job_name for ex in self.executors}
        delay = POLL_S
        while jobs := _queued(ids, names):
            stuck = [int(j.array_id) for j in jobs if "DependencyNeverSatisfied" in j.reason]
            if stuck:  # without kill_invalid_depend they would wait forever
                # The stages form a chain: every job submitted after a stuck one depends on it.
                doomed = sorted(
                    {j.array_id for j in jobs if int(j.array_id) >= min(stuck)}, key=int
                )
                log.warning("cancelling jobs %s: a stage they depend on failed", ", ".join(doomed))
                slurm_output(["scancel", *doomed])
            time.sleep(delay)
            delay = min(MAX_POLL_S, delay * 1.25)
