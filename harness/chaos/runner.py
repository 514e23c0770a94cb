"""Run a command, kill it as planned, rerun it until it completes; then compare with a clean run.

One attempt is one launch of the same command (a fresh master port each time: a killed
launcher's port can stay in TIME_WAIT). Its output goes to `<out>/logs/attempt-NNN.log` and
is read line by line for the phase markers (`harness.chaos.markers`). Kills are SIGKILL: to the
whole process group (the launcher started in its own session), to one rank (found by the `RANK`
in its environment), or to a side process (`wandb-core`), which the run must survive. Whatever
a kill leaves running is killed before the next attempt, so no orphan writes behind its back.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from harness.chaos.markers import Marker, landing, parse_marker
from harness.chaos.plan import KillEvent

SIDE_PROCESSES = ("wandb-core",)


@dataclass
class KillRecord:
    """What one planned kill did."""

    attempt: int
    event: dict[str, Any]
    landed: str
    """The phase the kill landed in, by the attempt's last marker before it."""
    at_s: float
    """Seconds since the attempt's launch."""
    last_marker: str | None
    killed: list[str] = field(default_factory=list)
    exit_code: int | None = None
    note: str = ""
    survived: bool | None = None
    """For a side kill: whether the run logged another marker after it (it went on)."""


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Attempt:
    """One launch, its output read on a thread for markers."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path, stage: str, cwd: Path):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.stage = stage
        self.markers: list[tuple[float, Marker]] = []
        self._changed = threading.Condition()
        self._log = log_path.open("w")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        last_step = 0
        for line in self.proc.stdout:
            self._log.write(line)
            marker = parse_marker(line, self.stage, last_step)
            if marker is not None:
                last_step = marker.position[0]
                with self._changed:
                    self.markers.append((time.monotonic() - self.t0, marker))
                    self._changed.notify_all()
        self._log.close()
        with self._changed:
            self._changed.notify_all()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def wait_for_anchor(
        self, anchor: tuple[int, int] | None, deadline: float
    ) -> tuple[float, Marker | None] | None:
        """(seconds since launch, marker) of the first marker at or past `anchor` ((0, None) for
        None: the launch); None if the process ended (or the deadline passed) first."""
        if anchor is None:
            return 0.0, None
        with self._changed:
            while True:
                for t, marker in self.markers:
                    if marker.position >= anchor:
                        return t, marker
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    return None
                self._changed.wait(0.05)

    def wait_for_marker_after(self, at_s: float, deadline: float) -> bool:
        """Whether the attempt logs a marker later than `at_s` s after launch (before it ends)."""
        with self._changed:
            while not any(t > at_s for t, _ in self.markers):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    return any(t > at_s for t, _ in self.markers)
                self._changed.wait(0.05)
        return True

    def sleep_until(self, at_s: float) -> bool:
        """Sleep until `at_s` seconds after launch; False if the process ended first."""
        while self.elapsed() < at_s:
            if self.proc.poll() is not None:
                return False
            time.sleep(min(0.01, max(at_s - self.elapsed(), 0)))
        return self.proc.poll() is None

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def rank_process(self, rank: int) -> psutil.Process | None:
        for p in self.descendants():
            try:
                if p.environ().get("RANK") == str(rank) and "python" in p.name():
                    return p
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return None

    def _wait_for(self, find, timeout_s: float = 60.0) -> psutil.Process | None:
        """What `find()` returns once it is there: a kill aimed at startup may come before the
        launcher started the ranks, or between two pools of the data stage."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            found = find()
            if found is not None:
                return found
            time.sleep(0.02)
        return None

    def worker_process(self, index: int) -> psutil.Process | None:
        """Worker `index` (modulo their number) of the data stage's running pool: the children of
        the fork server that datatrove's pool starts its workers from (see worker_watch)."""
        workers = []
        for child in self._children(self.proc.pid):
            workers += [p for p in self._children(child.pid) if _alive(p)]
        workers.sort(key=lambda p: p.pid)
        return workers[index % len(workers)] if workers else None

    @staticmethod
    def _children(pid: int) -> list[psutil.Process]:
        try:
            return psutil.Process(pid).children()
        except psutil.NoSuchProcess:
            return []

    def side_processes(self) -> list[psutil.Process]:
        out = []
        for p in self.descendants():
            try:
                if p.name() in SIDE_PROCESSES and _alive(p):
                    out.append(p)
            except psutil.NoSuchProcess:
                continue
        return out

    def _targets(self, event: KillEvent) -> list[psutil.Process]:
        if event.mode == "rank":
            found = self._wait_for(lambda: self.rank_process(event.rank))
        elif event.mode == "worker":
            found = self._wait_for(lambda: self.worker_process(event.rank))
        else:  # wandb's service starts with the run's logger, after DeepSpeed's setup
            return self._wait_for(lambda: self.side_processes() or None, timeout_s=20.0) or []
        return [found] if found is not None else []

    def kill(self, event: KillEvent) -> tuple[list[str], float, list[Marker]]:
        """SIGKILL as `event` says: (what it went to, seconds since launch, markers before it)."""
        targets = [] if event.mode == "group" else self._targets(event)
        at, markers = self.elapsed(), [m for _, m in self.markers]
        if event.mode == "group":
            os.killpg(self.proc.pid, signal.SIGKILL)
            return [f"process group {self.proc.pid}"], at, markers
        killed = []
        for p in targets:
            try:
                name = p.name()
                p.kill()
            except psutil.NoSuchProcess:
                continue
            killed.append(
                f"{name} {p.pid}" + (f" (rank {event.rank})" if event.mode == "rank" else "")
            )
        return killed, at, markers

    def finish(self, timeout_s: float) -> tuple[int | None, str]:
        """Wait for the exit; kill whatever is left of the attempt. (exit code, note)."""
        stragglers = self.descendants()
        note = ""
        try:
            code: int | None = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code, note = None, f"still running {timeout_s:.0f} s after the kill: killed"
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for p in stragglers:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                continue
        self.proc.wait()
        self._reader.join(timeout=10)
        return code, note


@dataclass
class Soak:
    """One stage's soak: `command(folder)` writes its results into `folder`."""

    stage: str
    command: Callable[[Path], list[str]]
    result_of: Callable[[Path], Path]
    """The folder compared (the run folder, or the data cache) for the folder passed to `command`."""
    compare: Callable[[Path, Path], list[str]]
    out: Path
    env: dict[str, str]
    cwd: Path
    attempt_timeout_s: float = 1800.0
    after_kill_timeout_s: float = 120.0
    log: Callable[[str], None] = print
    attempts: int = 0

    def launch(self, folder: Path, name: str | None = None) -> Attempt:
        if name is None:
            self.attempts += 1
            name = f"attempt-{self.attempts:03d}"
        log_path = self.out / "logs" / f"{self.stage}-{name}.log"
        return Attempt(self.command(folder), self.env, log_path, self.stage, self.cwd)

    def reference(self, warm_up: bool = False) -> tuple[list[tuple[float, Marker]], float]:
        """Run uninterrupted into `<out>/<stage>-reference`; its markers and wall time.

        With `warm_up`, a first uninterrupted launch (into a scratch folder, removed after) pays
        the one-time costs (DeepSpeed builds its CPU communication op on the first launch, ~30 s
        here), so that the reference's startup lasts as long as a rerun's and a kill aimed at
        startup lands in a rerun's startup.
        """
        if warm_up:
            scratch = self.out / f"{self.stage}-warmup"
            self._uninterrupted(scratch, "warmup")
            shutil.rmtree(scratch, ignore_errors=True)
        attempt = self._uninterrupted(self.out / f"{self.stage}-reference", "reference")
        self.log(f"{self.stage}: uninterrupted run took {attempt.elapsed():.1f} s")
        return attempt.markers, attempt.elapsed()

    def _uninterrupted(self, folder: Path, name: str) -> Attempt:
        attempt = self.launch(folder, name)
        code, note = attempt.finish(self.attempt_timeout_s)
        if code != 0:
            raise RuntimeError(
                f"the uninterrupted {self.stage} run ({name}) failed (exit {code}"
                f"{'; ' + note if note else ''}); see {self.out / 'logs'}"
            )
        return attempt

    def run(self, events: list[KillEvent]) -> dict[str, Any]:
        """Fire `events` over reruns of the command, then compare every completed trial.

        A trial is one output folder, rerun after every kill until an attempt exits 0; then it is
        compared with the reference. Kills the trial's run ended before (its last marker came
        first) go to a fresh trial.
        """
        ref = self.result_of(self.out / f"{self.stage}-reference")
        pending = list(events)
        records: list[KillRecord] = []
        trials: list[dict[str, Any]] = []
        failures: list[str] = []
        trial, trial_start_pending = 1, len(pending)
        while True:
            folder = self.out / f"{self.stage}-chaos-{trial}"
            attempt = self.launch(folder)
            killed_process = self._fire(attempt, pending, records, len(events))
            code, note = attempt.finish(
                self.after_kill_timeout_s if killed_process else self.attempt_timeout_s
            )
            if killed_process:
                records[-1].exit_code, records[-1].note = code, note
            if note:
                failures.append(f"attempt {self.attempts}: {note}")
            if code != 0:
                if not killed_process:
                    failures.append(f"attempt {self.attempts} exited {code} without a kill")
                    if len(failures) >= 3:
                        break
                continue  # rerun the same command, as a user would
            mismatches = self.compare(ref, self.result_of(folder))
            trials.append({"folder": str(folder), "mismatches": mismatches})
            self.log(f"{self.stage}: trial {trial} completed; {len(mismatches)} mismatches")
            for line in mismatches:
                self.log(f"  {line}")
            if not pending:
                break
            if len(pending) == trial_start_pending:
                failures.append(f"trial {trial} completed without reaching the next planned kill")
                break
            # The run completed before the remaining kills: a fresh trial (folder) takes them.
            trial, trial_start_pending = trial + 1, len(pending)
        return {
            "stage": self.stage,
            "kills_planned": len(events),
            "kills": [asdict(r) for r in records],
            "attempts": self.attempts,
            "trials": trials,
            "failures": failures,
        }

    def _fire(
        self, attempt: Attempt, pending: list[KillEvent], records: list[KillRecord], total: int
    ) -> bool:
        """Fire the pending kills this attempt reaches, in order, until one kills a process of the
        run (True) or the run reaches its last marker or ends first (False)."""
        deadline = time.monotonic() + self.attempt_timeout_s
        while pending:
            event = pending[0]
            reached = attempt.wait_for_anchor(event.anchor, deadline)
            if reached is None or (reached[1] is not None and reached[1].phase == "shutdown"):
                return False  # the run ended (or finished its work) before this kill
            if not attempt.sleep_until(reached[0] + event.offset_s):
                return False
            killed, at, markers = attempt.kill(event)
            record = KillRecord(
                self.attempts,
                event.to_dict(),
                landing(markers),
                round(at, 3),
                markers[-1].name if markers else None,
                killed,
            )
            if not killed:
                record.note = "nothing to kill (no such process at that moment)"
            pending.pop(0)
            records.append(record)
            self.log(
                f"{self.stage}: kill {len(records)}/{total} ({event.mode}) at {at:.2f} s "
                f"of attempt {self.attempts}, landed in {record.landed} "
                f"(after {record.last_marker or 'launch'}): {', '.join(killed) or 'nothing'}"
            )
            if event.mode != "side" and killed:
                return True
            if killed:  # the run must go on without its side process before the next kill
                record.survived = attempt.wait_for_marker_after(at, deadline)
        return False
